"""Peak RSS of the whole exporter process under the loads of issue 26, this tree beside a baseline commit.

Run on demand:  .venv/bin/python -m benchmarks.process_memory [--baseline abbedd0] [--only idle,jobs,series,answer]
Each scenario runs `bedrock-batch-exporter run` as its own process (the baseline's from a git worktree, see
benchmarks/run.py) against a simulated AWS in another process (moto and our job API; a fault proxy in front for the
oversized answer), waits until the exporter has finished 3 cycles of every task (bounded: 600 s), scrapes `/metrics`
once, and reads the process's VmHWM (peak RSS) from /proc. 127.0.0.1 only.

Scenarios: idle (one model, no jobs), jobs (100,000 jobs in one region, 10 % running), series (10,000 series:
2,500 models x 4 metrics), answer (every GetMetricData answer padded to 50 MB of valid JSON, with its
Content-Length), answer_unsized (the same without a Content-Length: the end is the close).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCENARIOS = ("idle", "jobs", "series", "answer", "answer_unsized")
METRICS = (
    "NumberOfRecordsPendingProcessing",
    "NumberOfTokensPendingProcessing",
    "NumberOfInputTokensProcessedPerMinute",
    "NumberOfOutputTokensProcessedPerMinute",
)


def _aws_child(scenario: str) -> None:
    """Serve the scenario's AWS: print the URL, then wait until stdin closes."""
    import boto3

    from exporter.demo.server import SimulatedAws

    aws = SimulatedAws().start()
    url = aws.url
    cloudwatch = boto3.client(
        "cloudwatch", region_name="us-east-1", endpoint_url=url, aws_access_key_id="b", aws_secret_access_key="b"
    )
    models = 2500 if scenario == "series" else 1
    metrics = METRICS if scenario == "series" else METRICS[:1]
    data = [
        {"MetricName": m, "Dimensions": [{"Name": "ModelId", "Value": f"model-{i:04d}"}], "Value": 1.0}
        for i in range(models)
        for m in metrics
    ]
    stamp = datetime.now(UTC)
    for first in range(0, len(data), 500):
        cloudwatch.put_metric_data(
            Namespace="AWS/Bedrock/Batch", MetricData=[dict(d, Timestamp=stamp) for d in data[first : first + 500]]
        )
    if scenario == "jobs":
        now = time.time()
        for i in range(100_000):
            arn = aws.jobs.submit(f"job-{i:06d}", "model-0000", 1000, "us-east-1", now=now - 3600 + i * 0.01)["jobArn"]
            if i % 10:
                aws.jobs.update(arn, status="Completed", endTime=now - 60)
            else:
                aws.jobs.update(arn, status="InProgress")
    proxy = None
    if scenario.startswith("answer"):
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from tests.integration.fault_proxy import FaultProxy, oversized

        proxy = FaultProxy(url).start()
        proxy.set(oversized("GetMetricData", 50 * 1024 * 1024, chunked=scenario == "answer_unsized"))
        url = proxy.url
    print(url, flush=True)
    sys.stdin.read()
    if proxy is not None:
        proxy.stop()
    aws.stop()


def _config(url: str, scenario: str) -> str:
    jobs = "{enabled: true, interval: 5s}" if scenario == "jobs" else "{enabled: false}"
    return f"""
aws: {{max_attempts: 1, read_timeout: 60s}}
jobs: {jobs}
targets:
  - endpoint_url: {url}
    regions: [us-east-1]
    account_id: "000000000000"
namespaces:
  - namespace: AWS/Bedrock/Batch
    interval: 5s
    period: 1m
    length: 5m
    delay: 0s
"""


def _get(port: int, path: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", path)
    body = conn.getresponse().read()
    conn.close()
    return body


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure(python: str, scenario: str) -> dict[str, Any]:
    aws = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--aws-child", scenario],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert aws.stdout is not None and aws.stdin is not None
    url = aws.stdout.readline().strip()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(_config(url, scenario))
        port = _free_port()
        # the allocator settings of the image (Dockerfile), which older builds made themselves through mallopt
        env = dict(
            os.environ,
            AWS_ACCESS_KEY_ID="b",
            AWS_SECRET_ACCESS_KEY="b",
            MALLOC_ARENA_MAX="2",
            MALLOC_MMAP_THRESHOLD_="131072",
        )
        exporter = subprocess.Popen(
            [python, "-m", "exporter", "run", "--config", str(config), "--listen-address", f"127.0.0.1:{port}"],
            cwd=tmp,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        result: dict[str, Any] = {"scenario": scenario}
        tasks: list[dict[str, Any]] = []
        try:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                time.sleep(1)
                if exporter.poll() is not None:
                    raise RuntimeError(f"exporter exited: {exporter.stderr.read()[-2000:] if exporter.stderr else ''}")
                try:
                    status = json.loads(_get(port, "/api/status"))
                    tasks = [task for region in status["regions"]["items"] for task in region["tasks"]]
                except (OSError, ValueError, KeyError):
                    continue
                expected = 2 if scenario == "jobs" else 1  # a task shows once its first cycle ended
                if len(tasks) >= expected and all(sum(t["cycles"].values()) >= 3 for t in tasks):
                    break
            body = _get(port, "/metrics")
            result["peak_mb"] = round(_peak_mb(exporter.pid), 1)
            result["metrics_mb"] = round(len(body) / 1e6, 2)
            result["series"] = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
            result["tasks"] = "; ".join(
                f"{t['namespace']} up={t['up']}" + (f" dropped={t['jobs_dropped']}" if t.get("jobs_dropped") else "")
                for t in tasks
            )
        finally:
            exporter.terminate()
            try:
                exporter.wait(10)
            except subprocess.TimeoutExpired:
                exporter.kill()
            aws.stdin.close()
            aws.wait(30)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--baseline", default="abbedd0", help="commit to measure beside this tree ('' for none)")
    parser.add_argument("--only", default=",".join(SCENARIOS))
    parser.add_argument("--aws-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.aws_child:
        _aws_child(args.aws_child)
        return
    from benchmarks.run import baseline_python

    builds = {"this tree": sys.executable}
    if args.baseline:
        builds[args.baseline] = baseline_python(args.baseline)
    print("| scenario | build | peak RSS MB | /metrics MB | series on /metrics | tasks |")
    print("|---|---|---|---|---|---|")
    for scenario in args.only.split(","):
        for name, python in builds.items():
            row = measure(python, scenario)
            cells = (scenario, name, row["peak_mb"], row["metrics_mb"], f"{row['series']:,}", row["tasks"])
            print("| " + " | ".join(str(cell) for cell in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
