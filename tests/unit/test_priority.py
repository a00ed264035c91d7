"""ScrapesFirst: requests in flight, the checkpoint that waits for them, and its budget (exporter/priority.py)."""

from __future__ import annotations

import threading
import time

import pytest

from exporter import priority
from exporter.priority import BUDGET_CAPACITY, BUDGET_RATE, ScrapesFirst

WAIT = 10.0  # upper bound on every wait below


def test_no_request_in_flight_no_wait() -> None:
    waits: list[float] = []
    first = ScrapesFirst(waits.append)
    for _ in range(1000):
        first.checkpoint()
    assert waits == []
    assert first.in_flight == 0


def test_a_checkpoint_waits_until_the_requests_in_flight_end(monkeypatch: pytest.MonkeyPatch) -> None:
    # A bucket as large as WAIT: the checkpoint can only return because the requests ended (with the default
    # 0.1 s bucket it returned when the budget ran out, racing the 0.1 s wait below on a busy machine).
    monkeypatch.setattr(priority, "BUDGET_CAPACITY", WAIT)
    waits: list[float] = []
    first = ScrapesFirst(waits.append, max_wait=WAIT)
    first.begin()
    first.begin()
    passed = threading.Event()

    def work() -> None:
        first.checkpoint()
        passed.set()

    worker = threading.Thread(target=work)
    worker.start()
    first.end()
    assert not passed.wait(0.1)  # one request still in flight: nothing but its end lets the checkpoint go
    first.end()
    assert passed.wait(WAIT)
    worker.join(WAIT)
    assert first.in_flight == 0
    assert len(waits) == 1 and waits[0] > 0
    first.end()  # an extra end never makes the count negative
    assert first.in_flight == 0


def test_a_request_that_never_ends_holds_a_checkpoint_at_most_max_wait_then_the_budget_runs_out() -> None:
    waits: list[float] = []
    first = ScrapesFirst(waits.append, max_wait=0.02)
    first.begin()  # never ends: a stuck or hostile client
    started = time.monotonic()
    rounds = 0
    while time.monotonic() - started < 0.5:
        first.checkpoint()
        rounds += 1
    elapsed = time.monotonic() - started
    # Waiting spends a bucket that fills at BUDGET_RATE: the work kept going, and waited at most what the bucket
    # held (plus slack for waits that overshoot their timeout by a scheduling delay).
    assert rounds > len(waits)
    assert sum(waits) <= BUDGET_CAPACITY + BUDGET_RATE * elapsed + 0.05
    assert all(w < 1.0 for w in waits)


def test_reset_forgets_requests_that_will_never_end() -> None:
    waits: list[float] = []
    first = ScrapesFirst(waits.append)
    first.begin()
    first.reset()
    first.checkpoint()
    assert first.in_flight == 0 and waits == []
