"""Peak RSS of one region's job listing: N summaries parsed, kept within jobs.max_jobs, turned into samples.

Run on demand: .venv/bin/python -m benchmarks.jobs_memory [N ...]. Each N runs in its own process (ru_maxrss is a
process's peak); figures are in docs/reliability.md.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time

import orjson


def _one(n: int, budget: int) -> float:
    from exporter.aws.bedrock import parse_job
    from exporter.families import job_samples
    from exporter.jobs import within_budget
    from exporter.model import TaskKey, TaskState

    now = time.time()
    jobs = []
    for first in range(0, n, 1000):  # pages of 1,000 (the largest maxResults), read and parsed one at a time
        body = orjson.dumps(
            {
                "invocationJobSummaries": [
                    {
                        "jobArn": f"arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/{i:012d}",
                        "jobName": f"nightly-batch-{i}",
                        "modelId": "anthropic.claude-3-5-sonnet-20240620-v1:0",
                        "status": "Completed" if i % 10 else "InProgress",
                        "submitTime": "2026-11-30T12:00:00Z",
                        "endTime": "2026-11-30T13:00:00Z",
                        "jobExpirationTime": "2026-12-03T12:00:00Z",
                        "totalRecordCount": 1000,
                        "processedRecordCount": 1000,
                        "successRecordCount": 990,
                        "errorRecordCount": 10,
                        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": "s3://bucket/out/"}},
                    }
                    for i in range(first, min(n, first + 1000))
                ]
            }
        )
        summaries = orjson.loads(body)["invocationJobSummaries"]
        jobs.extend(j for s in summaries if (j := parse_job(s, now)) is not None)
        del body, summaries
    kept, _, _ = within_budget(jobs, budget)
    del jobs
    state = TaskState(TaskKey("t", "us-east-1", "bedrock:jobs"), "123456789012", jobs=tuple(kept))
    samples = list(job_samples(state))
    assert samples or not n
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(sizes: list[int]) -> None:
    if sizes and sizes[0] == -1:  # child: -1 N budget
        print(_one(sizes[1], sizes[2]))
        return
    for n in sizes or [0, 1000, 10_000, 100_000]:
        for budget in (n or 1, 20_000):
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks.jobs_memory", "-1", str(n), str(budget)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            print(f"jobs={n:>7} max_jobs={budget:>7}: peak RSS {float(out):7.1f} MB")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]])
