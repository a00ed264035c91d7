"""Side-by-side measurements: AWS calls per cycle, /metrics latency vs AWS latency, memory, CPU per cycle.

Run on demand:  .venv/bin/python -m benchmarks.run [--quick]
Everything talks to a simulated AWS on 127.0.0.1 (moto over HTTP); every loop is bounded.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import boto3

from benchmarks.aws_process import AwsProcess
from exporter.app import Exporter
from exporter.config import load_config_text
from exporter.sinks.prometheus import SnapshotCollector

os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
METRICS = ("NumberOfRecordsPendingProcessing", "NumberOfInputTokensProcessedPerMinute")


def config(aws: AwsProcess, models: int, interval: str = "1s", read_timeout: str = "15s") -> str:
    """Static dimensions (no ListMetrics), two metrics x two statistics per model: 4 queries, 2 series each."""
    sets = ", ".join(f"{{ModelId: model-{i:05d}}}" for i in range(models))
    return f"""
aws: {{max_attempts: 1, read_timeout: {read_timeout}}}
jobs: {{enabled: false}}
targets:
  - endpoint_url: {aws.url}
    regions: [us-east-1]
    account_id: "000000000000"
namespaces:
  - namespace: AWS/Bedrock/Batch
    interval: {interval}
    metrics:
      - {{name: {METRICS[0]}, statistics: [Maximum, Average]}}
      - {{name: {METRICS[1]}, statistics: [Sum, Average]}}
    discovery: {{mode: static, static: [{sets}]}}
"""


def series_for(queries: int) -> int:
    return queries // 2  # two statistics per series


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


def scrape_latencies(url: str, scrapes: int, gzip: bool) -> list[float]:
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
    conn.close()
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def bench_scrape(aws: AwsProcess, sizes: list[int], scrapes: int) -> list[tuple[str, ...]]:
    """/metrics p50/p99 while polling runs and AWS answers in 10 ms vs 5 s; and a naive per-scrape render."""
    rows = []
    for series in sizes:
        results = {}
        for label, delay in (("10ms", 0.01), ("5s", 5.0)):
            exporter = Exporter(load_config_text(config(aws, series // len(METRICS)), env={}))
            exporter.run_once()  # fill the store, then slow AWS down for the measured period
            aws.set_delay(delay)
            url = exporter.start("127.0.0.1:0")
            scrape_latencies(url, 5, False)  # warm-up
            results[label] = scrape_latencies(url, scrapes, False)
            results[label + " gzip"] = scrape_latencies(url, scrapes, True)
            snapshot = exporter.store.snapshot
            aws.set_delay(0.0)
            exporter.stop()
        naive = []
        from prometheus_client import CollectorRegistry, generate_latest

        for _ in range(max(5, scrapes // 10)):
            started = time.perf_counter()
            registry = CollectorRegistry(auto_describe=False)
            registry.register(SnapshotCollector(snapshot))
            generate_latest(registry)
            naive.append(time.perf_counter() - started)
        fast, slow = results["10ms"], results["5s"]
        rows.append(
            (
                f"{series:,}",
                f"{pct(fast, 0.5) * 1e3:.2f} / {pct(fast, 0.99) * 1e3:.2f}",
                f"{pct(slow, 0.5) * 1e3:.2f} / {pct(slow, 0.99) * 1e3:.2f}",
                f"{pct(slow, 0.99) / pct(fast, 0.99):.2f}",
                f"{pct(results['10ms gzip'], 0.5) * 1e3:.2f} / {pct(results['10ms gzip'], 0.99) * 1e3:.2f}",
                f"{statistics.median(naive) * 1e3:.1f}",
                f"{statistics.median(naive) / pct(fast, 0.5):.0f}x",
            )
        )
    return rows


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def bench_memory_cpu(aws: AwsProcess, series: int, cycles: int, soak_series: int) -> list[tuple[str, ...]]:
    """Peak RSS and CPU per cycle at `series`; RSS growth over `cycles` cycles at `soak_series`."""
    exporter = Exporter(load_config_text(config(aws, series // len(METRICS)), env={}))
    cpu: list[float] = []
    for _ in range(5):
        started = time.process_time()
        exporter.run_once()
        cpu.append(time.process_time() - started)
    exporter.poller.stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the soak adds its own exporter
    soak = Exporter(load_config_text(config(aws, soak_series // len(METRICS)), env={}))
    for _ in range(20):
        soak.run_once()
    gc.collect()
    before = rss_mb()
    for _ in range(cycles):
        soak.run_once()
    gc.collect()
    after = rss_mb()
    soak.poller.stop()
    return [
        (
            f"{series:,}",
            f"{peak:.0f}",
            f"{statistics.median(cpu) * 1e3:.0f}",
            f"{soak_series:,} x {cycles:,}",
            f"{before:.1f} -> {after:.1f}",
            f"{after - before:+.1f}",
        )
    ]


def table(title: str, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--memory-only", action="store_true", help=argparse.SUPPRESS)  # the fresh child process
    args = parser.parse_args()
    aws = AwsProcess()
    memory_series = 1000 if args.quick else 10000
    memory_cycles = 50 if args.quick else 1000
    if args.memory_only:
        try:
            print("\t".join(bench_memory_cpu(aws, memory_series, memory_cycles, 1000)[0]))
        finally:
            aws.stop()
        return 0
    sections: list[Callable[[], str]] = []
    call_sizes = [10, 100, 1000] if args.quick else [10, 100, 1000, 10000]
    scrape_sizes = [1000] if args.quick else [1000, 10000]
    scrapes = 50 if args.quick else 300
    sections.append(
        lambda: table(
            "1. AWS calls per cycle (server-side count)",
            ("series", "GetMetricData (ours)", "GetMetricStatistics (one per metric)", "ratio"),
            bench_calls(aws, call_sizes),
        )
    )
    sections.append(
        lambda: table(
            "2. /metrics latency in ms (p50 / p99) while polling, AWS answering in 10 ms vs 5 s",
            (
                "series",
                "AWS 10 ms",
                "AWS 5 s",
                "p99 ratio 5s/10ms",
                "AWS 10 ms, gzip",
                "naive render per scrape (median)",
                "naive / ours (p50)",
            ),
            bench_scrape(aws, scrape_sizes, scrapes),
        )
    )

    def memory() -> str:
        # A fresh process: peak RSS must not include the other benchmarks' history.
        child = [sys.executable, "-m", "benchmarks.run", "--memory-only", *(["--quick"] if args.quick else [])]
        row = tuple(subprocess.run(child, capture_output=True, text=True, check=True).stdout.strip().split("\t"))
        return table(
            "3-4. Memory and CPU (exporter process only; the simulated AWS runs in another process)",
            (
                "series",
                "peak RSS MB",
                "CPU per cycle ms",
                "soak (series x cycles)",
                "RSS MB before -> after",
                "growth MB",
            ),
            [row],
        )

    sections.append(memory)
    try:
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.platform()}\n"
        )
        for section in sections:
            print(section(), flush=True)
    finally:
        aws.stop()
    return 0


if __name__ == "__main__":
    threading.excepthook = lambda args: None  # abandoned calls at shutdown are expected
    code = main()
    sys.stdout.flush()
    os._exit(code)  # like the CLI: worker threads of stopped exporters must not hold up the exit
