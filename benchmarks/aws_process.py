"""The simulated AWS in its own process, so the benchmark process holds only the exporter (honest RSS and CPU).

Child: `python -m benchmarks.aws_process` prints its URL, then answers one line per command on stdin:
`delay SECONDS`, `count OPERATION`, `reset`; it exits when stdin closes.
"""

from __future__ import annotations

import subprocess
import sys


class AwsProcess:
    """Parent-side handle of the child process."""

    def __init__(self, module: str = "benchmarks.aws_process") -> None:
        """`module`: benchmarks.aws_process (moto and our job API) or benchmarks.canned_aws (GetMetricData only)."""
        self._proc = subprocess.Popen(
            [sys.executable, "-m", module],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        self.url = self._proc.stdout.readline().strip()

    def _ask(self, line: str) -> str:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(line + "\n")
        self._proc.stdin.flush()
        return self._proc.stdout.readline().strip()

    def set_delay(self, seconds: float) -> None:
        self._ask(f"delay {seconds}")

    def count(self, operation: str) -> int:
        return int(self._ask(f"count {operation}"))

    def reset_counts(self) -> None:
        self._ask("reset")

    def stop(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()


def _serve() -> None:
    from exporter.demo.server import SimulatedAws

    aws = SimulatedAws().start()
    print(aws.url, flush=True)
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        if command == "delay":
            aws.delay = float(argument)
            print("ok", flush=True)
        elif command == "count":
            print(aws.count(argument), flush=True)
        elif command == "reset":
            aws.reset_counts()
            print("ok", flush=True)
        else:
            print(f"unknown command {command!r}", flush=True)
    aws.stop()


if __name__ == "__main__":
    _serve()
