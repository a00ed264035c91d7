"""CallGate: how many call threads run Python at once (exporter.aws.gate), with threads and no AWS."""

from __future__ import annotations

import threading

import pytest

from exporter.aws import gate
from exporter.aws.gate import CallGate

WAIT = 10.0  # upper bound on every wait below: a broken gate fails the test, it never hangs it


def _free(g: CallGate) -> bool:
    """True when a slot is free right now (taken and given back at once)."""
    if g._slots.acquire(blocking=False):
        g._slots.release()
        return True
    return False


def test_one_slot_admits_one_thread_until_it_pauses() -> None:
    g = CallGate(1)
    first_in, first_paused, first_done = threading.Event(), threading.Event(), threading.Event()
    second_in, second_may_leave = threading.Event(), threading.Event()
    resumed = threading.Event()

    def first_worker() -> None:
        with g.working():
            first_in.set()
            first_paused.wait(WAIT)
            gate.pause()  # what the before-send hook does: the network wait is outside the gate
            second_in.wait(WAIT)
            second_may_leave.set()
            gate.resume()  # back to Python work: waits until the second thread has left
            resumed.set()
        first_done.set()

    def second_worker() -> None:
        with g.working():
            second_in.set()
            second_may_leave.wait(WAIT)

    a = threading.Thread(target=first_worker)
    a.start()
    assert first_in.wait(WAIT)
    b = threading.Thread(target=second_worker)
    b.start()
    # The second thread is held at the gate while the first holds the only slot.
    assert not second_in.wait(0.2)
    assert not _free(g)
    first_paused.set()
    assert second_in.wait(WAIT)  # the first paused: the second got the slot
    a.join(WAIT)
    b.join(WAIT)
    assert resumed.is_set() and first_done.is_set()
    assert _free(g)  # both left: the slot is back


def test_pause_and_resume_outside_a_gate_do_nothing_and_nesting_keeps_the_outer_gate() -> None:
    gate.pause()
    gate.resume()
    outer, inner = CallGate(1), CallGate(1)
    with outer.working():
        assert not _free(outer)
        with inner.working():  # a nested gate does not take a second slot (it would deadlock on width 1)
            assert _free(inner)
            gate.pause()
            assert _free(outer)
            gate.resume()
        assert not _free(outer)
    assert _free(outer)


def test_a_failing_body_gives_the_slot_back() -> None:
    g = CallGate(1)
    with pytest.raises(RuntimeError), g.working():
        raise RuntimeError("the call failed")
    assert _free(g)
    with g.working():  # and the thread can work under it again
        assert not _free(g)


def test_width_is_at_least_one() -> None:
    with pytest.raises(ValueError, match="at least one"):
        CallGate(0)
