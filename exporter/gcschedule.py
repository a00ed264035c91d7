"""The cyclic garbage collector on a schedule of ours, not on allocation counts (docs/performance.md, session 5).

CPython collects when tracked allocations outnumber deallocations by a threshold, and each collection holds the GIL.
At 10,000 series with values that move every cycle, a cycle made ~5.5 young collections (~2.5 ms each) and half a
middle one (11-22 ms): every scrape that met one waited for it. Measured side by side, /metrics p99 was 15.4 ms with
the automatic collector and 9.6 ms without it (CPU share of the exporter 0.39 -> 0.35). The exporter's records are
freed by reference counting, not by the collector: a cycle leaves ~120 objects of cyclic garbage (botocore's;
2,400 found after 20 cycles with the collector off).

So, while an exporter serves:
- everything alive when serving starts (modules, botocore's models, the configuration, the clients, the planned
  queries) is moved to the permanent generation (`gc.freeze`), which a collection skips;
- automatic collection is off, and a thread collects once every PERIOD seconds, after giving way to the HTTP requests
  in flight (exporter.priority): ~9 ms at 10,000 series, against ~48 ms for a collection that walks everything;
- a reload puts the permanent generation back at once (`gc.unfreeze`: the replaced configuration, clients and poller
  may be frozen, and are garbage now), and the next collection collects everything and freezes what is left again;
  every REFREEZE_EVERY collections the same is done anyway, so any garbage among frozen objects is freed within
  REFREEZE_EVERY x PERIOD seconds.

On stop, automatic collection comes back and the permanent generation is put back, once the last exporter of the
process stops (tests run several in one process). Collections made show as `python_gc_collections_total`
(generation 2) with the rest of prometheus-client's process metrics.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

PERIOD = 10.0  # seconds between two collections
REFREEZE_EVERY = 60  # collections: every 10 minutes, the objects frozen at start are collected too

_lock = threading.Lock()
# schedules running in this process; the automatic collector's state before the first of them started
_process = {"users": 0, "was_enabled": True}


def _take() -> None:
    """The first schedule of the process turns automatic collection off, after one full collection and a freeze."""
    with _lock:
        _process["users"] += 1
        if _process["users"] == 1:
            _process["was_enabled"] = gc.isenabled()
            gc.disable()
            gc.collect()
            gc.freeze()


def _give_back() -> None:
    """The last schedule of the process puts the permanent generation back and the automatic collector as it was."""
    with _lock:
        _process["users"] = max(0, _process["users"] - 1)
        if _process["users"] == 0:
            gc.unfreeze()
            if _process["was_enabled"]:
                gc.enable()


class CollectionSchedule:
    """A thread that collects every `period` seconds, after `checkpoint` (requests in flight first)."""

    def __init__(
        self,
        checkpoint: Callable[[], None] | None = None,
        period: float = PERIOD,
        refreeze_every: int = REFREEZE_EVERY,
    ) -> None:
        self._checkpoint = checkpoint
        self._period = period
        self._refreeze_every = max(1, refreeze_every)
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._refreeze = False  # the next collection unfreezes, collects everything and freezes again
        self.collections = 0  # made by this schedule

    def start(self) -> None:
        if self._thread is not None:
            return
        _take()
        self._stopped.clear()
        self._thread = threading.Thread(target=self._run, name="gc-schedule", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopped.set()
        thread.join(timeout=10)
        _give_back()

    def thaw(self) -> None:
        """Put the permanent generation back now (a reload replaced what was frozen); the next collection collects
        it and freezes what is left again. Nothing while the schedule is not running."""
        with _lock:
            if self._thread is not None:
                gc.unfreeze()
                self._refreeze = True

    def collect_now(self) -> None:
        """One scheduled collection (the thread's step): the permanent generation too, every refreeze_every-th and
        after a thaw."""
        if self._checkpoint is not None:
            self._checkpoint()
        self.collections += 1
        with _lock:  # not while another schedule of the process starts, stops or thaws
            if self._refreeze or self.collections % self._refreeze_every == 0:
                self._refreeze = False
                gc.unfreeze()
                gc.collect()
                gc.freeze()
                return
        gc.collect()

    def _run(self) -> None:
        while not self._stopped.wait(self._period):
            try:
                self.collect_now()
            except Exception:  # a finalizer that raises must not end the schedule
                log.exception("scheduled garbage collection failed")
