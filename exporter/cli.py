"""Command line: run, once, plan, doctor, check-config, demo, schema; exit codes 0 ok, 1 failed, 2 bad config/usage."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from exporter import __version__, logs
from exporter.app import Exporter
from exporter.aws.region import find_region
from exporter.config import Config, ConfigError, json_schema, load_config, load_config_text
from exporter.demo import run_demo
from exporter.demo.policies import POLICIES
from exporter.doctor import run_doctor
from exporter.model import BEDROCK_BATCH_NAMESPACE
from exporter.plan import run_plan
from exporter.preflight import config_problems, preflight

log = logging.getLogger("exporter")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


CONFIG_ENV = "BEDROCK_BATCH_EXPORTER_CONFIG"
_CONFIG_HELP = (
    f"path to the YAML config file (default: ${CONFIG_ENV}, else one target in the AWS region found as the SDKs do)"
)


def _global_flags(parser: argparse.ArgumentParser, with_defaults: bool) -> None:
    """--log-level and --log-format, accepted before and after the subcommand.

    The subcommand's copies default to SUPPRESS: argparse would otherwise overwrite a value given before the
    subcommand with the subparser's default.
    """
    level: object = "info" if with_defaults else argparse.SUPPRESS
    fmt: object = "text" if with_defaults else argparse.SUPPRESS
    parser.add_argument("--log-level", default=level, choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", default=fmt, choices=["text", "json"])


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    _global_flags(common, with_defaults=False)
    configured = _Parser(add_help=False, parents=[common])
    configured.add_argument("--config", help=_CONFIG_HELP)
    parser = _Parser(
        prog="bedrock-batch-exporter",
        description="Export Amazon Bedrock batch-inference telemetry from CloudWatch to Prometheus.",
    )
    _global_flags(parser, with_defaults=True)
    parser.add_argument("-V", "--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", parents=[configured], help="run the exporter daemon")
    run.add_argument("--listen-address", help="HOST:PORT to serve on (overrides server.listen_address)")
    run.add_argument("--shard-index", type=int, default=0, help="this replica's shard, 0..shard-count-1")
    run.add_argument("--shard-count", type=int, default=1, help="replicas splitting the targets x regions (default 1)")
    sub.add_parser("once", parents=[configured], help="poll once and print the metrics to stdout")
    plan = sub.add_parser(
        "plan", parents=[configured], help="show what a config polls and what it costs, per cycle and month"
    )
    plan.add_argument(
        "--offline", action="store_true", help="estimate from the config alone: no AWS call (series are guessed)"
    )
    plan.add_argument(
        "--series-per-metric",
        type=int,
        default=1,
        metavar="N",
        help="with --offline: dimension sets assumed per ListMetrics-discovered metric (default %(default)s)",
    )
    plan.add_argument("--output", choices=["text", "json"], default="text", help="default %(default)s")
    doctor = sub.add_parser("doctor", parents=[configured], help="check credentials, permissions and data, per region")
    doctor.add_argument(
        "--output", choices=["text", "json"], default="text", help="json: one document (docs/plan-and-doctor.md)"
    )
    check = sub.add_parser("check-config", parents=[common], help="validate a config file")
    check.add_argument("file", nargs="?", metavar="FILE", help="path to the YAML config file (or --config FILE)")
    check.add_argument("--config", help="path to the YAML config file, as the other commands take it")
    demo = sub.add_parser("demo", parents=[common], help="run against an embedded simulated AWS")
    demo.add_argument("--listen-address", default="127.0.0.1:9816", help="HOST:PORT (default %(default)s)")
    demo.add_argument("--otlp-endpoint", metavar="URL", help="also push over OTLP/HTTP, e.g. http://127.0.0.1:4318")
    demo.add_argument("--duration", type=float, help=argparse.SUPPRESS)  # seconds; for tests
    demo.add_argument(
        "--policy",
        choices=POLICIES,
        default="fifo",
        help="how the simulation shares a model's throughput among its running jobs, which AWS does not document "
        "(docs/insight.md; default %(default)s)",
    )
    demo.add_argument(
        "--unreadable-region",
        action="append",
        default=[],
        metavar="REGION",
        help="a fault: the exporter's calls to this simulated region fail (503) while the simulation goes on",
    )
    sub.add_parser("schema", parents=[common], help="print the config file's JSON Schema")
    return parser


def _load(path: str) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        hidden = config_problems(exc.partial) if exc.partial is not None else []  # the checks of a whole config
        _refused([*exc.problems, *hidden])
        return None


def _config_for(command: str, path: str | None) -> tuple[Config | None, str | None]:
    """The config and its file: --config, else $BEDROCK_BATCH_EXPORTER_CONFIG, else zero config (file None)."""
    path = path or os.environ.get(CONFIG_ENV) or None
    if path is not None:
        return _load(path), path
    region = find_region()
    if region is None:
        print(
            "error: no config file and no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, or a region in the "
            f"AWS profile), or pass --config FILE (or set {CONFIG_ENV})",
            file=sys.stderr,
        )
        return None, None
    try:
        config = load_config_text(json.dumps({"targets": [{"regions": [region.name]}]}), f"{region.source}")
    except ConfigError as exc:
        print(f"config error: {region.source}: {'; '.join(exc.problems)}", file=sys.stderr)
        return None, None
    listening = f", listening on {config.server.listen_address}" if command == "run" else ""
    log.info(
        "no config file: polling %s in %s (region from %s) with the built-in defaults, jobs on%s; "
        "pass --config FILE or set %s to change that",
        BEDROCK_BATCH_NAMESPACE,
        region.name,
        region.source,
        listening,
        CONFIG_ENV,
    )
    return config, None


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def _run(config: Config, config_path: str | None, listen_address: str | None, shard: tuple[int, int]) -> int:
    stop = _stop_on_signals()
    reload_requested = threading.Event()

    def on_hup(_signum: int, _frame: FrameType | None) -> None:
        reload_requested.set()

    signal.signal(signal.SIGHUP, on_hup)
    try:
        exporter = Exporter(config, shard=shard, config_path=config_path)
    except ValueError as exc:  # e.g. otlp.protocol grpc without its package
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        exporter.start(listen_address)
    except ConfigError as exc:
        _refused(exc.problems)
        return EXIT_USAGE
    except (OSError, ValueError) as exc:
        print(f"error: cannot listen on {listen_address or config.server.listen_address}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    while not stop.wait(0.2):
        if reload_requested.is_set():
            reload_requested.clear()
            if config_path is None:
                log.warning("received SIGHUP, but there is no config file to reload (zero config)")
            else:
                log.info("received SIGHUP, reloading %s", config_path)
                exporter.reload_from_file()
    exporter.stop()
    return EXIT_OK


def _once(config: Config) -> int:
    try:
        exporter = Exporter(config)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    succeeded = exporter.run_once()
    sys.stdout.buffer.write(exporter.exposition.body())
    sys.stdout.flush()
    if not succeeded:
        print("error: no target answered; see the log above", file=sys.stderr)
    return EXIT_OK if succeeded else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.setup(args.log_level, args.log_format)
    if args.command == "schema":
        sys.stdout.write(json_schema())
        return EXIT_OK
    if args.command == "demo":
        return run_demo(
            args.listen_address,
            _stop_on_signals(),
            args.duration,
            args.otlp_endpoint,
            policy=args.policy,
            unreadable_regions=tuple(args.unreadable_region),
        )
    if args.command == "run" and not (args.shard_count >= 1 and 0 <= args.shard_index < args.shard_count):
        print("error: --shard-index must be 0..--shard-count-1 and --shard-count at least 1", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "check-config":
        if args.file and args.config and args.file != args.config:
            print("error: check-config got two files (FILE and --config); give one", file=sys.stderr)
            return EXIT_USAGE
        args.config = args.config or args.file
        if not args.config:
            print("error: check-config needs a file: check-config FILE or check-config --config FILE", file=sys.stderr)
            return EXIT_USAGE
        config = _load(args.config)
        if config is None or _refused(preflight(config)):
            return EXIT_USAGE
        print(f"{args.config}: ok ({len(config.targets)} targets, {len(config.namespaces)} namespaces)")
        return EXIT_OK
    config, path = _config_for(args.command, args.config)
    if config is None:
        return EXIT_USAGE
    if args.command == "plan":
        if args.series_per_metric < 0:
            print("error: --series-per-metric must be 0 or more", file=sys.stderr)
            return EXIT_USAGE
        return run_plan(config, args.offline, args.output, args.series_per_metric)
    if args.command == "doctor":
        return run_doctor(config, args.output)
    if args.command == "once":
        return _once(config)
    if _refused(preflight(config, args.listen_address)):
        return EXIT_USAGE
    return _run(config, path, args.listen_address, (args.shard_index, args.shard_count))


def _refused(problems: Sequence[str]) -> bool:
    for problem in problems:
        print(f"config error: {problem}", file=sys.stderr)
    return bool(problems)


def entrypoint() -> None:
    """The console script: run main(), then leave at once.

    AWS calls still in flight must not hold up shutdown: their worker threads are not daemons, and the interpreter
    would otherwise wait up to the read timeout for them.
    """
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
