"""The garbage collector on a schedule (exporter.gcschedule): automatic collection off while serving, a collection
every period after the checkpoint, the objects frozen at start collected too every so many collections, and the
process as it was once the last schedule stops."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Iterator

import pytest

from exporter.gcschedule import CollectionSchedule


class Node:
    """Something that can be part of a reference cycle and be watched through a weak reference."""

    def __init__(self) -> None:
        self.other: object = None


def cycle() -> weakref.ref[Node]:
    """A reference cycle nobody holds: only the cyclic collector frees it."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.fixture(autouse=True)
def collector_back() -> Iterator[None]:
    # a schedule left running (an exporter some test started and never stopped) would show here, not pass unseen
    assert gc.isenabled() and gc.get_freeze_count() == 0, "a collection schedule of another test is still running"
    yield
    gc.unfreeze()
    gc.enable()


def test_serving_turns_automatic_collection_off_and_stopping_puts_the_process_back() -> None:
    schedule = CollectionSchedule(period=3600)
    schedule.start()
    try:
        assert not gc.isenabled() and gc.get_freeze_count() > 0  # what lived at start is frozen
        garbage = cycle()
        for _ in range(3 * 700):  # enough allocations for an automatic collection, were it on
            Node()
        assert garbage() is not None  # nothing collected it: the automatic collector is off
        schedule.collect_now()
        assert garbage() is None and schedule.collections == 1
    finally:
        schedule.stop()
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_the_collector_stays_off_until_the_last_schedule_stops_and_as_it_was_before() -> None:
    first, second = CollectionSchedule(period=3600), CollectionSchedule(period=3600)
    first.start()
    second.start()
    first.stop()
    assert not gc.isenabled()  # the second still serves
    second.stop()
    assert gc.isenabled()
    gc.disable()  # an embedding program that runs without automatic collection keeps it that way
    try:
        first.start()
        first.stop()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_each_collection_waits_at_the_checkpoint_first() -> None:
    seen: list[bool] = []
    garbage: list[weakref.ref[Node]] = []
    schedule = CollectionSchedule(checkpoint=lambda: seen.append(garbage[0]() is not None), period=3600)
    schedule.start()
    try:
        garbage.append(cycle())
        schedule.collect_now()
    finally:
        schedule.stop()
    assert seen == [True]  # the checkpoint ran while the garbage was still there: before the collection


def test_garbage_among_the_objects_frozen_at_start_is_collected_every_refreeze() -> None:
    kept = [Node(), Node()]
    kept[0].other, kept[1].other = kept[1], kept[0]
    watch = weakref.ref(kept[0])
    schedule = CollectionSchedule(period=3600, refreeze_every=2)
    schedule.start()  # the cycle is alive now: frozen with the rest
    try:
        del kept  # garbage now, but in the permanent generation
        schedule.collect_now()
        assert watch() is not None  # an ordinary collection skips the permanent generation
        schedule.collect_now()  # the second: unfreeze, collect, freeze
        assert watch() is None and gc.get_freeze_count() > 0
    finally:
        schedule.stop()


def test_the_thread_collects_every_period_and_stops() -> None:
    schedule = CollectionSchedule(period=0.01)
    schedule.start()
    try:
        deadline = time.monotonic() + 10
        while schedule.collections < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert schedule.collections >= 3
    finally:
        schedule.stop()
    done = schedule.collections
    time.sleep(0.05)
    assert schedule.collections == done  # stopped: no more collections
    assert not [t for t in threading.enumerate() if t.name == "gc-schedule"]


def test_a_thaw_makes_frozen_garbage_collectable_at_once_and_the_next_collection_freezes_again() -> None:
    kept = [Node(), Node()]
    kept[0].other, kept[1].other = kept[1], kept[0]
    watch = weakref.ref(kept[0])
    schedule = CollectionSchedule(period=3600)
    schedule.thaw()  # not running: nothing to put back
    assert gc.get_freeze_count() == 0
    schedule.start()
    try:
        del kept
        assert gc.get_freeze_count() > 0
        schedule.thaw()  # a reload: what was frozen is ordinary again
        assert gc.get_freeze_count() == 0
        gc.collect()  # anyone's collection frees it now
        assert watch() is None
        schedule.collect_now()
        assert gc.get_freeze_count() > 0  # frozen again by the next scheduled collection
    finally:
        schedule.stop()
