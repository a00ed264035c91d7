"""Scrapes first: polling and rendering step aside, within a budget, while HTTP requests are being served.

The exporter serves and polls in one process, so a scrape shares the GIL with the poll cycle's Python work. The call
gate (exporter.aws.gate) already keeps that work to one thread at a time; still, measured at full pace on 2 cores
(10,000 series, a cycle a second, docs/performance.md), a scrape that lands in a cycle waits for the GIL after each of
its own system calls and /metrics p99 stayed at ~10-13 ms, against ~6 ms with the polling moved into another process.
Here the HTTP server counts the requests in flight (from the moment a connection has a request to read until its
answer is sent), and the polling threads and the renderer call `checkpoint()` between steps of their work (before a
GetMetricData call's Python work, between batches of the results step, between parts of a render). A checkpoint
returns at once when no request is in flight; otherwise it waits for them to finish, at most `max_wait` seconds.

The budget, so that a flood of requests (hostile or not) can slow polling but never stop it: waiting spends from a
bucket that fills at half a second per second, up to `BUDGET_CAPACITY`; with the bucket empty a checkpoint does not
wait. Scrapes spread over time (Prometheus') are all given way; under any flood the checkpoints wait at most half of
the wall time, so a cycle takes at most about twice as long. The time waited is counted
(`bedrock_batch_exporter_scrape_priority_wait_seconds`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

MAX_WAIT = 0.02  # seconds one checkpoint may wait: about four times a /metrics answer at 20,000 series on 2 cores
BUDGET_RATE = 0.5  # seconds of waiting the bucket gains per second
BUDGET_CAPACITY = 0.1  # seconds of waiting it holds at most


class ScrapesFirst:
    """Requests in flight, and the checkpoint where other work waits for them (see the module text)."""

    def __init__(self, on_wait: Callable[[float], None] | None = None, max_wait: float = MAX_WAIT) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0
        self._idle = threading.Event()
        self._idle.set()
        self._budget = BUDGET_CAPACITY  # seconds of waiting left in the bucket, as of `_budget_at`
        self._budget_at = time.monotonic()
        self._on_wait = on_wait
        self._max_wait = max_wait

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def begin(self) -> None:
        """A request is being served (its connection has bytes to read)."""
        with self._lock:
            self._in_flight += 1
            self._idle.clear()

    def end(self) -> None:
        """Its answer is sent (or the connection failed)."""
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            if self._in_flight == 0:
                self._idle.set()

    def reset(self) -> None:
        """No request in flight any more (the server stopped; requests it had queued will never end)."""
        with self._lock:
            self._in_flight = 0
            self._idle.set()

    def checkpoint(self) -> None:
        """Wait while requests are in flight, within the budget; returns at once when none is."""
        if self._idle.is_set():
            return
        started = time.monotonic()
        with self._lock:
            budget = min(BUDGET_CAPACITY, self._budget + (started - self._budget_at) * BUDGET_RATE)
            self._budget, self._budget_at = budget, started
        if budget <= 0:
            return
        self._idle.wait(min(self._max_wait, budget))
        waited = time.monotonic() - started
        with self._lock:
            self._budget -= waited
        if self._on_wait is not None:
            self._on_wait(waited)
