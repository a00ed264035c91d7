"""How many AWS call threads run Python code at once: what keeps a poll cycle from crowding out scrapes.

A cycle runs up to `aws.max_concurrent_requests` GetMetricData calls in threads. Each call builds its request, waits
on the network, then decodes the answer and merges it: the waits overlap, the Python work holds the GIL. With eight
threads ready at once, a scrape thread that needs the GIL back after each of its own system calls queues behind them
all. Measured at full pace on 2 cores (10,000 series, a cycle a second, docs/performance.md): /metrics p99 ~20 ms
during polling against ~4.5 ms without. The gate gives `width` threads at a time the right to run a call's Python
work; the others sleep on a semaphore instead of competing for the GIL. The GIL serialises that work anyway, so a cycle
takes the same CPU and about the same time; what changes is how many threads a scrape competes with.

Outside the gate, so calls still overlap and one slow target cannot hold up the others: signing (which may refresh
credentials over the network), the HTTP exchange, the adaptive retry mode's rate limiter and retry back-off. The gate
is left and re-entered through botocore's client events for GetMetricData, registered once per client:
``before-sign`` and ``before-send`` leave it, ``before-parse`` enters it, ``needs-retry`` leaves it (back-off sleeps
follow the needs-retry handlers), and `resume` re-enters after the call returns. A thread working outside
`CallGate.working` finds no gate in these hooks: they do nothing for it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_local = threading.local()  # per thread: .gate (the CallGate it works under), .inside (it holds one of the slots)
_HOOKED = "_bedrock_batch_exporter_gated"
_EVENT_SUFFIX = "cloudwatch.GetMetricData"  # botocore's event names: <event>.<hyphenized service id>.<operation>


class CallGate:
    """`width` slots; a call thread holds one while it runs Python, and gives it back while it waits."""

    def __init__(self, width: int) -> None:
        if width < 1:
            raise ValueError("a call gate needs at least one slot")
        # one slot (the poller's CALL_GATE_WIDTH): a plain lock, taken and given back in C; a semaphore is Python code
        # around a Condition, run twice per call
        self._slots: threading.Lock | threading.BoundedSemaphore = (
            threading.Lock() if width == 1 else threading.BoundedSemaphore(width)
        )

    @contextmanager
    def working(self) -> Iterator[None]:
        """Run the body (calls through hooked clients, and the processing of their answers) under this gate."""
        if getattr(_local, "gate", None) is not None:  # nested: the outer gate stays in charge
            yield
            return
        _local.gate = self
        self._enter()
        try:
            yield
        finally:
            self._leave()
            _local.gate = None

    def _enter(self) -> None:
        if not getattr(_local, "inside", False):
            self._slots.acquire()
            _local.inside = True

    def _leave(self) -> None:
        if getattr(_local, "inside", False):
            _local.inside = False
            self._slots.release()


def resume(**_: Any) -> None:
    """Back to Python work: wait for a slot of this thread's gate (no gate: return at once)."""
    gate = getattr(_local, "gate", None)
    if gate is not None:
        gate._enter()


def pause(**_: Any) -> None:
    """About to wait (network, credentials, back-off): give this thread's slot back (no gate or none held: nothing)."""
    gate = getattr(_local, "gate", None)
    if gate is not None:
        gate._leave()


def hook(client: Any) -> None:
    """Make a botocore CloudWatch client's GetMetricData calls give the thread's slot back while they wait (once)."""
    if getattr(client, _HOOKED, False):
        return
    events = getattr(getattr(client, "meta", None), "events", None)
    if events is None:
        return
    # On GetMetricData's own event names, registered first: botocore runs the handlers of the most specific name first,
    # so the slot is given back before any other handler can wait (the adaptive mode's rate limiter sleeps in its
    # generic before-send handler).
    for event, handler in (("before-sign", pause), ("before-send", pause), ("needs-retry", pause)):
        events.register_first(f"{event}.{_EVENT_SUFFIX}", handler)
    events.register(f"before-parse.{_EVENT_SUFFIX}", resume)
    setattr(client, _HOOKED, True)
