"""The simulated AWS in its own process, so the benchmark process holds only the exporter (honest RSS and CPU).

Child: `python -m benchmarks.aws_process` prints its URL, then answers one line per command on stdin:
`delay SECONDS`, `count OPERATION`, `reset`; it exits when stdin closes.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Protocol


class AwsProcess:
    """Parent-side handle of the child process."""

    def __init__(self, module: str = "benchmarks.aws_process", *args: str) -> None:
        """`module`: benchmarks.aws_process (moto and our job API) or benchmarks.canned_aws (GetMetricData only);
        `args` go to the child's command line."""
        self._proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
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


class Controlled(Protocol):
    """What a child's server offers to the parent's commands."""

    def set_delay(self, seconds: float) -> None: ...

    def count(self, operation: str) -> int: ...

    def reset_counts(self) -> None: ...


def answer_commands(url: str, server: Controlled) -> None:
    """The child's side: print the URL, then answer one line per command until stdin closes."""
    print(url, flush=True)
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        if command == "delay":
            server.set_delay(float(argument))
            print("ok", flush=True)
        elif command == "count":
            print(server.count(argument), flush=True)
        elif command == "reset":
            server.reset_counts()
            print("ok", flush=True)
        else:
            print(f"unknown command {command!r}", flush=True)


class _Moto:
    def __init__(self) -> None:
        from exporter.demo.server import SimulatedAws

        self.aws = SimulatedAws().start()

    def set_delay(self, seconds: float) -> None:
        self.aws.delay = seconds

    def count(self, operation: str) -> int:
        return int(self.aws.count(operation))

    def reset_counts(self) -> None:
        self.aws.reset_counts()


def _serve() -> None:
    moto = _Moto()
    answer_commands(moto.aws.url, moto)
    moto.aws.stop()


if __name__ == "__main__":
    _serve()
