"""Side-by-side measurements: issue 16's goals for this tree beside two baseline commits, in one run.

Run on demand:  .venv/bin/python -m benchmarks.run [--quick] [--only scrape,cpu,soak,targets,calls]
Each build (this tree, and each baseline installed from a git worktree into .cache/bench/<sha>/venv) is measured by
benchmarks/measure.py in its own process with its own python, against one simulated AWS (moto over HTTP on
127.0.0.1, in another process). Every loop is bounded.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3

from benchmarks.aws_process import AwsProcess
from benchmarks.measure import METRICS, config_text
from exporter.app import Exporter
from exporter.config import load_config_text

os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
# Every build's child process runs under the allocator settings the image ships with (Dockerfile); builds before
# 2026-12-03 made the same ones themselves through mallopt and skip that when these are set.
os.environ.setdefault("MALLOC_ARENA_MAX", "2")
os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "131072")


def config(aws: AwsProcess, models: int, interval: str = "1s", read_timeout: str = "15s") -> str:
    return config_text(aws.url, models, interval, read_timeout)


def bench_calls(aws: AwsProcess, sizes: list[int]) -> list[tuple[str, ...]]:
    """GetMetricData batching vs one GetMetricStatistics request per metric, both counted by the server."""
    rows = []
    client = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=aws.url)
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    for series in sizes:
        models = series // len(METRICS)
        exporter = Exporter(load_config_text(config(aws, models), env={}))
        aws.reset_counts()
        exporter.run_once()
        ours = aws.count("GetMetricData")
        exporter.poller.stop()
        aws.reset_counts()
        for i in range(models):  # cloudwatch_exporter's default path: one request per metric and dimension set
            for metric in METRICS:
                client.get_metric_statistics(
                    Namespace="AWS/Bedrock/Batch",
                    MetricName=metric,
                    Dimensions=[{"Name": "ModelId", "Value": f"model-{i:05d}"}],
                    StartTime=end - timedelta(minutes=5),
                    EndTime=end,
                    Period=60,
                    Statistics=["Maximum", "Average", "Sum"],
                )
        theirs = aws.count("GetMetricStatistics")
        rows.append((f"{series:,}", f"{ours}", f"{theirs:,}", f"{theirs / ours:,.0f}x"))
    return rows


def scrape_latencies(url: str, scrapes: int, gzip: bool, gap: float) -> list[float]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    headers = {"Accept-Encoding": "gzip"} if gzip else {}
    out = []
    for _ in range(scrapes):
        started = time.perf_counter()
        conn.request("GET", "/metrics", headers=headers)
        body = conn.getresponse().read()
        out.append(time.perf_counter() - started)
        assert body
        time.sleep(gap)  # paced like a scraper, so the scrapes sample every phase of the polling cycles
    conn.close()
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


BASELINES = ("759234e", "a1376be")  # the old main; the commit issue 16's work started from
MEASURE = Path(__file__).with_name("measure.py")
REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache" / "bench"


def baseline_python(sha: str) -> str:
    """The python of a venv holding `sha`'s exporter (a git worktree installed with pip -e), made on first use.

    The venv borrows the project venv's third-party packages through a .pth line (same versions, no downloads) and
    gets only the baseline's own package installed editable, so `import exporter` finds the baseline's code.
    """
    home = CACHE / sha
    python = home / "venv" / "bin" / "python"
    if python.exists():
        return str(python)
    src = home / "src"
    if not src.exists():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(src), sha], check=True)
    subprocess.run([sys._base_executable, "-m", "venv", str(home / "venv")], check=True)  # type: ignore[attr-defined]
    site = next((home / "venv" / "lib").glob("python3.*")) / "site-packages"
    deps = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    (site / "_deps_from_project_venv.pth").write_text(deps + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "-e", str(src)], check=True)
    return str(python)


def measure(python: str, *args: str, script: Path = MEASURE) -> dict[str, Any]:
    """Run `script` (measure.py) under `python` from a neutral directory (so the build's own `exporter` is
    imported); its last line of output is a JSON object."""
    done = subprocess.run(
        [python, str(script), *args],
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
        timeout=3600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{python} measure.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def scrape_while_polling(
    python: str, aws: AwsProcess, series: int, interval: str, scrapes: int, gap: float
) -> dict[str, Any]:
    """p50/p99 of /metrics (plain, then gzip) from this process while the build polls every `interval`."""
    child = subprocess.Popen(
        [python, str(MEASURE), "scrape", aws.url, str(series), interval],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=tempfile.gettempdir(),
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        url = json.loads(child.stdout.readline())["url"]
        aws.set_delay(0.01)
        scrape_latencies(url, 5, False, 0.0)  # warm-up
        calls, began = aws.count("GetMetricData"), time.monotonic()
        plain = scrape_latencies(url, scrapes, False, gap)
        gzipped = scrape_latencies(url, scrapes, True, gap)
        calls_per_s = (aws.count("GetMetricData") - calls) / (time.monotonic() - began)
        aws.set_delay(0.0)
        child.stdin.write("stop\n")
        child.stdin.flush()
        result = dict(json.loads(child.stdout.readline()))
    finally:
        aws.set_delay(0.0)
        child.kill()
        child.wait(10)
    result.update(
        calls_per_s=calls_per_s,
        p50=pct(plain, 0.5) * 1e3,
        p99=pct(plain, 0.99) * 1e3,
        gz_p50=pct(gzipped, 0.5) * 1e3,
        gz_p99=pct(gzipped, 0.99) * 1e3,
    )
    return result


def goals_table(builds: list[tuple[str, str]], aws: AwsProcess, args: argparse.Namespace) -> str:
    """Each goal's figure for every build, measured one after the other against the same simulated AWS."""
    quick = args.quick
    series = 1000 if quick else 10000
    scrapes = 100 if quick else 500
    soak_cycles = 50 if quick else 1000
    target_count = 20 if quick else 200
    only = set(args.only.split(",")) if args.only else {"scrape", "default", "cpu", "soak", "targets", "reload"}
    rows: list[tuple[str, str, list[str]]] = []

    def add(name: str, goal: str, values: list[str]) -> None:
        rows.append((name, goal, values))

    if "scrape" in only:
        runs: list[tuple[str, str, AwsProcess]] = [("1s", "", aws)] if quick else [("1s", "", aws), ("2s", "", aws)]
        if not quick and "default" in only:
            # the default interval: scrapes spread over 130 s (two cycles of ~1.8 s each land among them), as
            # Prometheus' scrapes fall wherever they fall
            runs.insert(0, ("60s", " (the default)", aws))
        canned = [] if quick else [AwsProcess("benchmarks.canned_aws"), AwsProcess("benchmarks.canned_aws", "--moving")]
        if canned:
            # moto needs ~1.8 s for a 20,000-query cycle on these 2 cores, so "every 1 s" above runs a cycle about
            # every 1.8 s; a canned AWS answering at once (benchmarks/canned_aws.py) lets the cycles run at full pace,
            # first with no datapoint (every value the missing-data NaN: renders reused), then with every value
            # moving every cycle (a render each cycle, as in production when CloudWatch has new datapoints)
            runs.append(("1s", ", canned AWS at full pace", canned[0]))
            runs.append(("1s", ", canned AWS at full pace, values moving", canned[1]))
        for interval, where, server in runs:
            gap = 65.0 / scrapes if interval == "60s" else args.gap
            got = [scrape_while_polling(python, server, series, interval, scrapes, gap) for _, python in builds]
            add(
                f"/metrics p50 / p99 ms, {series:,} series, polled every {interval}{where}",
                "p99 <= 10",
                [f"{g['p50']:.2f} / {g['p99']:.2f}" for g in got],
            )
            add(
                f"/metrics gzip p50 / p99 ms, polled every {interval}{where}",
                "p99 <= 10",
                [f"{g['gz_p50']:.2f} / {g['gz_p99']:.2f}" for g in got],
            )
            add(
                f"CPU share of the exporter (cores); GetMetricData calls/s ({-(-2 * series // 500)} a cycle){where}",
                "",
                [f"{g['cpu_share']:.2f}; {g['calls_per_s']:.1f}" for g in got],
            )
            if interval == "1s":
                add(
                    f"peak RSS MB while serving and polling {series:,} series every 1s{where}",
                    "",
                    [f"{g['peak_rss_mb']:.0f}" for g in got],
                )
        for server in canned:
            server.stop()
    if "cpu" in only:
        got_cpu = [measure(python, "cpu", aws.url, str(series), "5") for _, python in builds]
        add(
            f"CPU per {2 * series:,}-query cycle, s (median of 5)",
            "<= 0.25" if series == 10000 else "",
            [f"{g['cpu_per_cycle_s']:.3f}" for g in got_cpu],
        )
        add(
            f"peak RSS MB at {series:,} series ({2 * series:,} exported)",
            "<= 90" if series == 10000 else "",
            [f"{g['peak_rss_mb']:.0f}" for g in got_cpu],
        )
    if "soak" in only:
        soak_series = args.soak_series
        got_soak = [measure(python, "soak", aws.url, str(soak_series), str(soak_cycles)) for _, python in builds]
        add(
            f"RSS MB over a soak of {soak_cycles:,} cycles at {soak_series:,} series (before -> after)",
            "flat",
            [f"{g['before_mb']:.1f} -> {g['after_mb']:.1f} ({g['after_mb'] - g['before_mb']:+.1f})" for g in got_soak],
        )
    if "targets" in only:
        one = [measure(python, "targets", aws.url, "1") for _, python in builds]
        many = [measure(python, "targets", aws.url, str(target_count)) for _, python in builds]
        add(
            f"MB per extra assume-role target (1 vs {target_count})",
            "<= 0.5",
            [
                f"{(m['peak_rss_mb'] - o['peak_rss_mb']) / (target_count - 1):.2f}"
                for o, m in zip(one, many, strict=True)
            ],
        )
        add(
            f"peak RSS MB with {target_count} assume-role targets (clients)",
            "<= 170" if target_count == 200 else "",
            [f"{m['peak_rss_mb']:.0f} ({m['clients']})" for m in many],
        )
    if "reload" in only:
        storm = [measure(python, "reload", aws.url, str(1000 if quick else 2000), "100") for _, python in builds]
        add(
            "RSS MB and threads around 100 concurrent POST /-/reload (before -> after; answers 200)",
            "+30 MB at most, threads back",
            [
                f"{g['before_mb']:.0f} -> {g['after_mb']:.0f} ({g['after_mb'] - g['before_mb']:+.0f}); "
                f"threads {g['threads_before']} -> {g['threads_after']}; {g['ok']} ok"
                for g in storm
            ],
        )
    header = ("goal", "target", *(label for label, _ in builds))
    return table(
        "Goals, side by side (each build measured in its own process, one after the other)",
        header,
        [(name, goal, *values) for name, goal, values in rows],
    )


def table(title: str, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 series, fewer scrapes and cycles: a smoke run")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated: calls, scrape, default (with scrape: also at the 60 s interval), cpu, soak, targets, "
        "reload (default all)",
    )
    parser.add_argument("--no-baselines", action="store_true", help="measure the working tree only")
    parser.add_argument("--baselines", default=",".join(BASELINES), help="commits to compare against")
    parser.add_argument("--gap", type=float, default=0.02, help="seconds between scrapes (spreads them over cycles)")
    parser.add_argument("--soak-series", type=int, default=1000, help="series polled in the soak")
    args = parser.parse_args()
    builds = [("this tree", sys.executable)]
    if not args.no_baselines:
        builds += [(sha, baseline_python(sha)) for sha in args.baselines.split(",") if sha]
    aws = AwsProcess()
    try:
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.platform()}\n",
            flush=True,
        )
        if not args.only or "calls" in args.only.split(","):
            print(
                table(
                    "AWS calls per cycle (server-side count, this tree)",
                    ("series", "GetMetricData (ours)", "GetMetricStatistics (one per metric)", "ratio"),
                    bench_calls(aws, [10, 100, 1000] if args.quick else [10, 100, 1000, 10000]),
                ),
                flush=True,
            )
        if not args.only or set(args.only.split(",")) - {"calls"}:
            print(goals_table(builds, aws, args), flush=True)
    finally:
        aws.stop()
    return 0


if __name__ == "__main__":
    threading.excepthook = lambda args: None  # abandoned calls at shutdown are expected
    code = main()
    sys.stdout.flush()
    os._exit(code)  # like the CLI: worker threads of stopped exporters must not hold up the exit
