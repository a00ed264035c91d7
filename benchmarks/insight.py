"""Are the exporter's conclusions true? ETAs, drain times and alerts scored against the simulation's own log.

Run on demand:  .venv/bin/python -m benchmarks.insight [--minutes 12] [--policies fifo,shared]
Per policy, in its own process (moto's backends are per process), in real time: the demo's simulated AWS and workload
(exporter.demo.DemoWorld) plus a written-down scenario, the exporter polling it, and Debian's Prometheus scraping it
every 5 s with the shipped rules. Midway one region becomes unreadable to the exporter for a while (the simulation
goes on). Afterwards Prometheus' answers are compared with the simulation's ground truth: its event log (every status
change) and its per-step backlog log. Prints a Markdown table (docs/alerts.md). Every loop is bounded; only
127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exporter.demo import PUBLISH_EVERY, DemoWorld, demo_config
from tests.conftest import free_port, wait_for
from tests.e2e.prom_server import Process, start_prometheus
from tests.e2e.prom_tools import RULES_FILE, binary

FAULT_REGION = "us-west-2"
SCRAPE = 5  # seconds: Prometheus' scrape and rule evaluation interval
FRACTIONS = (0.25, 0.5, 0.75)


def scenario(world: DemoWorld, start: float) -> dict[str, str]:
    """Jobs written down so each alert has a cause in every run: returns their names by role."""
    east = {m.model_id: m for m in world.models["us-east-1"]}
    nova, llama = east["amazon.nova-pro-v1:0"], east["meta.llama3-1-70b-instruct-v1:0"]
    day = 24 * 3600
    # Runs out of time 9 minutes in with far more records left than its model can do: PartiallyCompleted.
    world.workload.submit(nova, start - day + 9 * 60, 60000, 24)
    # Two big jobs submitted before it (waiting jobs start in submission order) hold both of llama's slots
    # (concurrency 2) for the whole run ...
    world.workload.submit(llama, start - 30 * 3600, 80000, 72)
    world.workload.submit(llama, start - 30 * 3600 + 60, 80000, 72)
    # ... so this one waits in Scheduled until its timeout, 10 minutes in: Expired, never started.
    world.workload.submit(llama, start - day + 10 * 60, 500, 24)
    return {"partial": f"{nova.job_prefix}-0001", "expired": f"{llama.job_prefix}-0003"}


def query_range(prom: str, query: str, start: float, end: float) -> list[dict[str, Any]]:
    params = urllib.parse.urlencode({"query": query, "start": start, "end": end, "step": SCRAPE})
    with urllib.request.urlopen(f"{prom}/api/v1/query_range?{params}", timeout=60) as answer:
        result: list[dict[str, Any]] = json.load(answer)["data"]["result"]
    return result


def child(policy: str, minutes: float, out: Path, job_scale: int) -> None:
    """One policy's run: simulate, export, scrape, then score and write the figures to `out`."""
    world = DemoWorld(policy)
    workdir = Path(tempfile.mkdtemp(prefix=f"insight-{policy}-"))
    prom: Process | None = None
    try:
        start = time.time()
        # Jobs of minutes to tens of minutes: at a 10 s simulation step, 5 s polls and 5 s scrapes, the demo's
        # shortest jobs (seconds) would measure the quantization, not the estimator.
        world.workload.job_scale = job_scale
        roles = scenario(world, start)
        world.history(expiring_job=False, full_quota=False)  # the scenario holds llama's slots itself
        port = free_port()
        world.start_exporter(f"127.0.0.1:{port}", demo_config(world.aws.url))
        prom, prom_url = start_prometheus(
            binary("prometheus"), workdir, f"127.0.0.1:{port}", [RULES_FILE], interval=SCRAPE
        )
        wait_for(lambda: _ready(prom_url), timeout=60, interval=0.5, what="prometheus")
        begin = time.time()
        length = minutes * 60
        fault = (begin + 0.35 * length, begin + 0.8 * length)
        while time.time() < begin + length:
            now = time.time()
            if fault[0] <= now < fault[1]:
                world.aws.broken_regions.add(FAULT_REGION)
            else:
                world.aws.broken_regions.discard(FAULT_REGION)
            world.step()
            time.sleep(max(0.0, PUBLISH_EVERY - (time.time() - now)))
        end = time.time()
        time.sleep(2 * SCRAPE)  # the last scrapes and evaluations land
        figures = score(world, prom_url, roles, begin, end, fault)
        figures.update(policy=policy, minutes=minutes, fault=[fault[0] - begin, fault[1] - begin])
        out.write_text(json.dumps(figures, indent=1))
    finally:
        if prom is not None:
            prom.stop()
        world.stop()


def _ready(prom: str) -> bool:
    try:
        with urllib.request.urlopen(f"{prom}/-/ready", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _at(points: list[tuple[float, float]], t: float, slack: float = 3 * SCRAPE) -> float | None:
    """The newest value at or before `t` (within `slack`)."""
    found = None
    for when, value in points:
        if when > t:
            break
        if t - when <= slack:
            found = value
    return found


def _series(result: list[dict[str, Any]], label: str) -> dict[str, list[tuple[float, float]]]:
    return {r["metric"].get(label, ""): [(float(t), float(v)) for t, v in r["values"]] for r in result}


def score(
    world: DemoWorld, prom: str, roles: dict[str, str], begin: float, end: float, fault: tuple[float, float]
) -> dict[str, Any]:
    events = list(world.workload.simulator.events)
    started: dict[str, float] = {}
    ended: dict[str, tuple[float, str, int, int]] = {}
    for e in events:
        if e.status == "InProgress":
            started.setdefault(e.job_arn, e.time)
        elif e.status in ("Completed", "PartiallyCompleted", "Expired", "Failed", "Stopped"):
            ended[e.job_arn] = (e.time, e.status, e.processed, e.total)
    names = {job["jobArn"]: job["jobName"] for job in world.aws.jobs.all()}
    region = {job["jobArn"]: job["jobArn"].split(":")[3] for job in world.aws.jobs.all()}

    def faulted(arn: str, a: float, b: float) -> bool:  # the exporter could not see this job then
        return region.get(arn) == FAULT_REGION and a < fault[1] + 30 and b > fault[0]

    eta = _series(query_range(prom, "bedrock_batch_job_eta_seconds", begin, end), "job_arn")
    errors: list[float] = []
    present = total = after_end = 0
    scored_jobs = 0
    for arn, s in started.items():
        if arn not in ended or ended[arn][1] != "Completed":
            continue
        e = ended[arn][0]
        # Points the exporter could judge: a minute after the run began (its first polls), before the end.
        if e > end or e < begin + 120 or faulted(arn, s, e):
            continue
        scored_jobs += 1
        points = eta.get(arn, [])
        for f in FRACTIONS:
            t = s + f * (e - s)
            est = _at(points, t)
            if est is not None and e - t > 0 and t >= begin + 60:
                errors.append(abs(est - (e - t)) / (e - t))
        grid = range(int(max(s + 3 * SCRAPE, begin + 60)), int(e - SCRAPE), SCRAPE)
        total += len(grid)
        present += sum(1 for t in grid if _at(points, t, 2 * SCRAPE) is not None)
    for arn, (e, _, _, _) in ended.items():
        if not faulted(arn, e - 60, e):
            after_end += sum(1 for t, _ in eta.get(arn, []) if t > e + 3 * SCRAPE)

    drain = _series(query_range(prom, "bedrock_batch_model_drain_eta_seconds", begin, end), "model_id")
    backlog = list(world.workload.backlog)
    drain_errors: list[float] = []
    for model, points in drain.items():
        log = [(t, pending, done) for t, m, pending, done in backlog if m == model]
        model_region = next((r for r, ms in world.models.items() if any(x.model_id == model for x in ms)), "")
        for t0, pending, done in log:
            if t0 < begin + 60 or pending <= 0 or (model_region == FAULT_REGION and fault[0] - 60 < t0 < fault[1]):
                continue
            drained = next((t for t, _, d in log if t > t0 and d >= done + pending), None)
            est = _at(points, t0)
            if drained is not None and est is not None:
                drain_errors.append(abs(est - (drained - t0)) / (drained - t0))

    alerts = query_range(prom, 'ALERTS{alertstate="firing"}', begin, end + 2 * SCRAPE)
    firing: dict[str, list[tuple[dict[str, str], float]]] = {}
    for r in alerts:
        firing.setdefault(r["metric"]["alertname"], []).append((r["metric"], float(r["values"][0][0])))

    def first(alert: str, **labels: str) -> float | None:
        times = [t for m, t in firing.get(alert, []) if all(m.get(k) == v for k, v in labels.items())]
        return min(times) if times else None

    out: dict[str, Any] = {
        "eta_jobs_scored": scored_jobs,
        "eta_median_error": statistics.median(errors) if errors else None,
        "eta_points": len(errors),
        "eta_present": present / total if total else None,
        "eta_after_end_points": after_end,
        "drain_median_error": statistics.median(drain_errors) if drain_errors else None,
        "drain_points": len(drain_errors),
    }
    for alert in ("BedrockBatchExporterDataStale", "BedrockBatchAwsApiErrors"):
        hit = first(alert, region=FAULT_REGION)
        out[f"{alert}_delay"] = None if hit is None or hit < fault[0] else hit - fault[0]
        out[f"{alert}_false"] = sum(
            1
            for m, t in firing.get(alert, [])
            if m.get("region") != FAULT_REGION or not fault[0] <= t <= fault[1] + 360
        )
    by_name = {v: k for k, v in names.items()}
    partial = by_name.get(roles["partial"], "")
    expired = by_name.get(roles["expired"], "")
    out["partial_status"] = ended.get(partial, (0, "unfinished"))[1]
    hit = first("BedrockBatchJobAtRiskOfExpiring", job_arn=partial)
    out["at_risk_lead"] = None if hit is None or partial not in ended else ended[partial][0] - hit
    out["expired_status"] = ended.get(expired, (0, "unfinished"))[1]
    hit = first("BedrockBatchJobQueuedTooLong", job_arn=expired)
    out["queued_lead"] = None if hit is None or expired not in ended else ended[expired][0] - hit
    timed_out = {a for a, (_, st, p, n) in ended.items() if st == "PartiallyCompleted" and p < n}
    # A warned job still running at the end may yet time out: only jobs that ended otherwise are false warnings.
    out["at_risk_false"] = len(
        {
            m["job_arn"]
            for m, _ in firing.get("BedrockBatchJobAtRiskOfExpiring", [])
            if m["job_arn"] in ended and m["job_arn"] not in timed_out
        }
    )
    out["queued_false"] = len(
        {m["job_arn"] for m, _ in firing.get("BedrockBatchJobQueuedTooLong", []) if m["job_arn"] in started}
    )
    out["throughput_false"] = len(firing.get("BedrockBatchHighInputTokenThroughput", []))
    out.update(_quota_truth(world, prom, events, begin, end, fault, firing.get("BedrockBatchQuotaSaturated", [])))
    out["finished_jobs"] = sum(1 for a, (t, *_rest) in ended.items() if begin <= t <= end)
    return out


HOLDING, WAITING = ("InProgress", "Stopping"), ("Scheduled",)
LAG = 20  # seconds the exporter's view may trail the simulation: a 5 s job listing, a 5 s scrape, a step


def _quota_truth(
    world: DemoWorld,
    prom: str,
    events: list[Any],
    begin: float,
    end: float,
    fault: tuple[float, float],
    fired: list[tuple[dict[str, str], float]],
) -> dict[str, Any]:
    """The quota gauges against the simulation's own job statuses, and BedrockBatchQuotaSaturated against the spans
    in which the simulation held every slot of a model with jobs waiting for 10 minutes."""
    changes: dict[str, list[tuple[float, str]]] = {}
    scope: dict[str, tuple[str, str]] = {}
    for e in events:
        changes.setdefault(e.job_arn, []).append((e.time, e.status))
        scope[e.job_arn] = (e.job_arn.split(":")[3], e.model_id)
    limits = {(r, m.model_id): m.concurrency for r, ms in world.models.items() for m in ms}

    def truth(key: tuple[str, str], t: float) -> tuple[int, int]:
        held = waiting = 0
        for arn, log in changes.items():
            if scope[arn] != key:
                continue
            status = next((st for when, st in reversed(log) if when <= t), None)
            held += status in HOLDING
            waiting += status in WAITING
        return held, waiting

    def saturated(key: tuple[str, str], t: float) -> bool:
        held, waiting = truth(key, t)
        return held >= limits[key] and waiting > 0

    gauges = {
        name: {
            (r["metric"]["region"], r["metric"]["model_id"]): [(float(t), float(v)) for t, v in r["values"]]
            for r in query_range(prom, f"bedrock_batch_quota_{name}", begin, end)
        }
        for name in ("concurrent_jobs", "waiting_jobs")
    }
    agree = points = 0
    for key in limits:
        for t in range(int(begin + 60), int(end), SCRAPE):
            if key[0] == FAULT_REGION and fault[0] - LAG < t < fault[1] + 60:
                continue
            held, waiting = (_at(gauges[n].get(key, []), t, 2 * SCRAPE) for n in ("concurrent_jobs", "waiting_jobs"))
            if held is None or waiting is None:
                continue
            points += 1
            agree += any(truth(key, t - lag) == (held, waiting) for lag in range(LAG + 1))
    # the alert: first firing per model against the first moment the simulation had been saturated for 10 minutes
    # (and the exporter up for as long: it cannot know what happened before it started)
    delays, false = [], 0
    for key in limits:
        grid = [t for t in range(int(begin - 600), int(end), SCRAPE) if saturated(key, t)]
        run = [t for t in grid if all(saturated(key, u) for u in range(t - 600, t + 1, 30))]
        hits = sorted(t for m, t in fired if (m.get("region"), m.get("model_id")) == key)
        if run and hits:
            delays.append(hits[0] - max(run[0], begin + 600))
        for t in hits:  # a firing needs the simulation saturated over the 10 minutes before it (within the lag)
            false += not all(saturated(key, u) for u in range(int(t - 600 + LAG), int(t - LAG), 30))
    return {
        "quota_points": points,
        "quota_agreement": agree / points if points else None,
        "quota_saturated_delay": max(delays) if delays else None,
        "quota_saturated_models": len(delays),
        "quota_saturated_false": false,
    }


def _pct(x: Any) -> str:
    return "-" if x is None else f"{100 * x:.0f} %"


def _secs(x: Any) -> str:
    return "never" if x is None else f"{x:.0f} s"


def table(results: list[dict[str, Any]], commit: str) -> str:
    rows = [
        ("jobs scored (Completed in the run, region readable)", lambda r: str(r["eta_jobs_scored"])),
        (
            "per-job ETA: median abs. error at 25/50/75 % of the run (goal <= 15 %)",
            lambda r: _pct(r["eta_median_error"]),
        ),
        ("per-job ETA present while running (goal >= 90 %)", lambda r: _pct(r["eta_present"])),
        ("ETA points on finished jobs (goal 0)", lambda r: str(r["eta_after_end_points"])),
        ("model drain ETA: median abs. error (goal <= 20 %)", lambda r: _pct(r["drain_median_error"])),
        (
            "DataStale: delay after the region became unreadable (goal <= 300 s)",
            lambda r: _secs(r["BedrockBatchExporterDataStale_delay"]),
        ),
        ("DataStale: false firings", lambda r: str(r["BedrockBatchExporterDataStale_false"])),
        ("AwsApiErrors: delay (goal <= 300 s)", lambda r: _secs(r["BedrockBatchAwsApiErrors_delay"])),
        (
            "AwsApiErrors: false firings (manifests included; goal 0)",
            lambda r: str(r["BedrockBatchAwsApiErrors_false"]),
        ),
        (
            "timed-out job: its end / AtRiskOfExpiring lead before it (goal >= 300 s)",
            lambda r: f"{r['partial_status']} / {_secs(r['at_risk_lead'])}",
        ),
        ("AtRiskOfExpiring: jobs warned that did not time out", lambda r: str(r["at_risk_false"])),
        (
            "never-started job: its end / QueuedTooLong lead",
            lambda r: f"{r['expired_status']} / {_secs(r['queued_lead'])}",
        ),
        ("QueuedTooLong: jobs warned that started", lambda r: str(r["queued_false"])),
        ("HighInputTokenThroughput firings (run < 6 h: goal 0)", lambda r: str(r["throughput_false"])),
        (
            "quota gauges (held, waiting) equal to the simulation's within 20 s (goal 100 %)",
            lambda r: f"{_pct(r['quota_agreement'])} of {r['quota_points']}",
        ),
        (
            "QuotaSaturated: models / delay after 10 min saturated (goal <= 60 s)",
            lambda r: f"{r['quota_saturated_models']} / {_secs(r['quota_saturated_delay'])}",
        ),
        ("QuotaSaturated: firings without 10 min of saturation (goal 0)", lambda r: str(r["quota_saturated_false"])),
    ]
    head = "| measured at " + commit + " | " + " | ".join(f"`{r['policy']}`" for r in results) + " |"
    lines = [head, "|---|" + "---|" * len(results)]
    lines += [f"| {name} | " + " | ".join(fn(r) for r in results) + " |" for name, fn in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--policies", default="fifo,shared")
    parser.add_argument("--job-scale", type=int, default=2, help="multiply the demo's job sizes (default 2)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.minutes, Path(args.out), args.job_scale)
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="insight-"))
    procs = []
    for policy in args.policies.split(","):
        out = workdir / f"{policy}.json"
        cmd = [sys.executable, "-m", "benchmarks.insight", "--child", policy, "--minutes", str(args.minutes)]
        cmd += ["--job-scale", str(args.job_scale)]
        procs.append((out, subprocess.Popen([*cmd, "--out", str(out)])))
    for _, proc in procs:
        proc.wait(timeout=args.minutes * 60 + 600)
    results = [json.loads(out.read_text()) for out, _ in procs if out.exists()]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    print(f"{args.minutes:g}-minute runs, {when}, jobs x{args.job_scale}, fault on {FAULT_REGION} from 35 % to 80 %\n")
    print(table(results, commit or "?"))
    print("\n" + json.dumps(results, indent=1))
    return 0 if len(results) == len(procs) else 1


if __name__ == "__main__":
    sys.exit(main())
