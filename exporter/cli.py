"""Command line: run, once, check-config, demo, schema; exit codes 0 ok, 1 failed, 2 bad config or usage."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from exporter import __version__, logs
from exporter.config import Config, ConfigError, json_schema, load_config

log = logging.getLogger("exporter")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    common.add_argument("--log-format", default="text", choices=["text", "json"])
    parser = _Parser(
        prog="bedrock-batch-exporter",
        description="Export Amazon Bedrock batch-inference telemetry from CloudWatch to Prometheus.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", parents=[common], help="run the exporter daemon")
    run.add_argument("--config", required=True, help="path to the YAML config file")
    run.add_argument("--listen-address", help="HOST:PORT to serve on (overrides server.listen_address)")
    run.add_argument("--shard-index", type=int, default=0, help="this replica's shard, 0..shard-count-1")
    run.add_argument("--shard-count", type=int, default=1, help="replicas splitting the targets x regions (default 1)")
    once = sub.add_parser("once", parents=[common], help="poll once and print the metrics to stdout")
    once.add_argument("--config", required=True, help="path to the YAML config file")
    check = sub.add_parser("check-config", parents=[common], help="validate a config file")
    check.add_argument("config", help="path to the YAML config file")
    demo = sub.add_parser("demo", parents=[common], help="run against an embedded simulated AWS")
    demo.add_argument("--listen-address", default="127.0.0.1:9816", help="HOST:PORT (default %(default)s)")
    demo.add_argument("--otlp-endpoint", metavar="URL", help="also push over OTLP/HTTP, e.g. http://127.0.0.1:4318")
    demo.add_argument("--duration", type=float, help=argparse.SUPPRESS)  # seconds; for tests
    sub.add_parser("schema", parents=[common], help="print the config file's JSON Schema")
    return parser


def _load(path: str) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config error: {problem}", file=sys.stderr)
        return None


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def _run(config: Config, config_path: str, listen_address: str | None, shard: tuple[int, int]) -> int:
    from exporter.app import Exporter

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
        for problem in exc.problems:
            print(f"config error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, ValueError) as exc:
        print(f"error: cannot listen on {listen_address or config.server.listen_address}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    while not stop.wait(0.2):
        if reload_requested.is_set():
            reload_requested.clear()
            log.info("received SIGHUP, reloading %s", config_path)
            exporter.reload_from_file()
    exporter.stop()
    return EXIT_OK


def _once(config: Config) -> int:
    from exporter.app import Exporter

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
        from exporter.demo import run_demo

        return run_demo(args.listen_address, _stop_on_signals(), args.duration, args.otlp_endpoint)
    if args.command == "run" and not (args.shard_count >= 1 and 0 <= args.shard_index < args.shard_count):
        print("error: --shard-index must be 0..--shard-count-1 and --shard-count at least 1", file=sys.stderr)
        return EXIT_USAGE
    config = _load(args.config)
    if config is None:
        return EXIT_USAGE
    if args.command == "check-config":
        print(f"{args.config}: ok ({len(config.targets)} targets, {len(config.namespaces)} namespaces)")
        return EXIT_OK
    if args.command == "once":
        return _once(config)
    return _run(config, args.config, args.listen_address, (args.shard_index, args.shard_count))


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
