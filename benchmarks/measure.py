"""One measurement of one exporter build, run as a script by `benchmarks.run` with that build's own Python.

Standalone on purpose (stdlib + the `exporter` package only): `benchmarks.run` starts it with a baseline's venv
python, so `import exporter` finds that baseline's worktree and each build measures its own code. Prints one JSON line.

  measure.py scrape  AWS_URL SERIES INTERVAL   -> prints {"url": ...}, serves until stdin says "stop"
  measure.py cpu     AWS_URL SERIES CYCLES     -> {"cpu_per_cycle_s", "peak_rss_mb"}
  measure.py soak    AWS_URL SERIES CYCLES     -> {"before_mb", "after_mb"}
  measure.py targets AWS_URL COUNT             -> {"peak_rss_mb", "clients"} with COUNT assume-role targets

Talks only to the simulated AWS on 127.0.0.1; every loop is bounded.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import statistics
import sys
import threading
import time
from typing import Any

os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
METRICS = ("NumberOfRecordsPendingProcessing", "NumberOfInputTokensProcessedPerMinute")


def config_text(aws_url: str, models: int, interval: str = "1s", read_timeout: str = "15s") -> str:
    """Static dimensions (no ListMetrics), two metrics x two statistics per model: 4 queries, 2 series each."""
    sets = ", ".join(f"{{ModelId: model-{i:05d}}}" for i in range(models))
    return f"""
aws: {{max_attempts: 1, read_timeout: {read_timeout}}}
jobs: {{enabled: false}}
targets:
  - endpoint_url: {aws_url}
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


def targets_text(aws_url: str, count: int) -> str:
    """`count` assume-role targets (one account each, one region): STS, Bedrock and CloudWatch clients each."""
    targets = "\n".join(
        f"""  - endpoint_url: {aws_url}
    regions: [us-east-1]
    role_arn: arn:aws:iam::{100000000000 + i:012d}:role/bench"""
        for i in range(count)
    )
    return f"""
aws: {{max_attempts: 1, read_timeout: 15s}}
jobs: {{pause_idle_metrics: false}}
targets:
{targets}
namespaces:
  - namespace: AWS/Bedrock/Batch
    interval: 60s
    metrics:
      - {{name: {METRICS[0]}, statistics: [Maximum]}}
    discovery: {{mode: static, static: [{{ModelId: model-00000}}]}}
"""


def exporter_for(text: str) -> Any:
    from exporter.app import Exporter
    from exporter.config import load_config_text

    return Exporter(load_config_text(text, env={}))


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scrape(aws_url: str, series: int, interval: str) -> dict[str, Any]:
    exporter = exporter_for(config_text(aws_url, series // len(METRICS), interval))
    exporter.run_once()  # fill the store before serving
    url = exporter.start("127.0.0.1:0")
    print(json.dumps({"url": url}), flush=True)
    started = time.process_time()
    begun = time.monotonic()
    sys.stdin.readline()  # the parent scrapes, then writes "stop" (or closes stdin)
    cpu = time.process_time() - started
    wall = time.monotonic() - begun
    exporter.stop()
    return {"cpu_share": cpu / wall if wall > 0 else float("nan"), "peak_rss_mb": peak_rss_mb()}


def cpu(aws_url: str, series: int, cycles: int) -> dict[str, Any]:
    """CPU per cycle under the garbage-collection regime the build's serving daemon runs with, set up after the first
    cycle as serving would: builds of 2026-11-26 to 2026-12-02 have a collection schedule (exporter.gcschedule,
    started by Exporter.start); later ones collect automatically with what lives at start frozen (Exporter.start)."""
    exporter = exporter_for(config_text(aws_url, series // len(METRICS)))
    schedule = getattr(exporter, "gc_schedule", None)
    spent = []
    for cycle in range(cycles):
        if cycle == 1 and schedule is not None:
            schedule.start()
        elif cycle == 1:
            gc.collect()
            gc.freeze()
        started = time.process_time()
        exporter.run_once()
        spent.append(time.process_time() - started)
    if schedule is not None:
        schedule.stop()
    gc.unfreeze()
    exporter.poller.stop()
    return {"cpu_per_cycle_s": statistics.median(spent), "peak_rss_mb": peak_rss_mb()}


def soak(aws_url: str, series: int, cycles: int) -> dict[str, Any]:
    exporter = exporter_for(config_text(aws_url, series // len(METRICS)))
    for _ in range(min(20, cycles)):
        exporter.run_once()
    gc.collect()
    before = rss_mb()
    for _ in range(cycles):
        exporter.run_once()
    gc.collect()
    after = rss_mb()
    exporter.poller.stop()
    return {"before_mb": before, "after_mb": after, "peak_rss_mb": peak_rss_mb()}


def targets(aws_url: str, count: int) -> dict[str, Any]:
    exporter = exporter_for(targets_text(aws_url, count))
    exporter.run_once()
    gc.collect()
    clients = len(getattr(exporter.clients, "_clients", {}))
    exporter.poller.stop()
    return {"peak_rss_mb": peak_rss_mb(), "rss_mb": rss_mb(), "clients": clients}


def reload_storm(aws_url: str, series: int, requests: int) -> dict[str, Any]:
    """RSS and threads before and after `requests` concurrent POST /-/reload on a serving exporter."""
    import tempfile
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    from exporter.app import Exporter
    from exporter.config import load_config

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "config.yaml")
        with open(path, "w") as out:
            out.write("server: {enable_reload: true}\n" + config_text(aws_url, series // len(METRICS), "2s"))
        exporter = Exporter(load_config(path), config_path=path)
        url = exporter.start("127.0.0.1:0")
        for _ in range(3):
            time.sleep(1)
        gc.collect()
        before, threads_before = rss_mb(), threading.active_count()

        def reload(_: int) -> int:
            request = urllib.request.Request(url + "/-/reload", method="POST", data=b"")
            with urllib.request.urlopen(request, timeout=60) as answer:
                return int(answer.status)

        with ThreadPoolExecutor(20) as pool:
            statuses = list(pool.map(reload, range(requests)))
        time.sleep(3)  # let the last generation's first cycle run
        for _ in range(40):  # and the replaced generations' last calls end (slower on a busy machine): 20 s at most
            if threading.active_count() <= threads_before:
                break
            time.sleep(0.5)
        gc.collect()
        after, threads_after = rss_mb(), threading.active_count()
        exporter.stop()
    return {
        "before_mb": before,
        "after_mb": after,
        "threads_before": threads_before,
        "threads_after": threads_after,
        "ok": sum(1 for s in statuses if s == 200),
        "peak_rss_mb": peak_rss_mb(),
    }


def main(argv: list[str]) -> int:
    mode, aws_url, *rest = argv
    if mode == "scrape":
        result = scrape(aws_url, int(rest[0]), rest[1])
    elif mode == "cpu":
        result = cpu(aws_url, int(rest[0]), int(rest[1]))
    elif mode == "soak":
        result = soak(aws_url, int(rest[0]), int(rest[1]))
    elif mode == "targets":
        result = targets(aws_url, int(rest[0]))
    elif mode == "reload":
        result = reload_storm(aws_url, int(rest[0]), int(rest[1]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    threading.excepthook = lambda args: None  # abandoned calls at shutdown are expected
    code = main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(code)  # like the CLI: worker threads of stopped exporters must not hold up the exit
