"""The schedule's bookkeeping: a wake-up that arrives while a cycle runs survives the cycle's end."""

from __future__ import annotations

import math
import threading

from exporter.model import TaskKey, TaskState
from exporter.poller import ActivityBoard, _Slot


class BlockingTask:
    """A task whose cycle waits until released, so a test can act while it runs."""

    key = TaskKey("t", "us-east-1", "AWS/Bedrock/Batch")
    target = None
    region = "us-east-1"
    interval = 60.0

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def run(self, now: float, previous: TaskState | None) -> TaskState:
        self.started.set()
        assert self.release.wait(5)
        return TaskState(self.key, "1")


def test_a_wake_up_during_a_cycle_makes_the_next_cycle_due_at_once() -> None:
    task = BlockingTask()
    slot = _Slot(task)  # type: ignore[arg-type]
    assert slot.claim(now=0.0)

    def cycle() -> None:
        task.run(0.0, None)
        slot.finish(next_due=1_000.0)  # what the cycle computes: one interval later

    runner = threading.Thread(target=cycle)
    runner.start()
    assert task.started.wait(5)
    assert not slot.claim(now=0.0)  # running: never twice at once
    slot.wake()  # a job appeared while the cycle runs
    task.release.set()
    runner.join(5)
    assert slot.next_due == 0.0 and not slot.running and not slot.wake_pending
    assert slot.claim(now=0.0)


def test_without_a_wake_up_the_cycle_sets_the_next_due_time() -> None:
    slot = _Slot(BlockingTask())  # type: ignore[arg-type]
    assert slot.claim(now=0.0)
    slot.finish(next_due=1_000.0)
    assert slot.next_due == 1_000.0 and not slot.claim(now=999.0) and slot.claim(now=1_000.0)
    slot.finish(next_due=math.inf)
    assert not slot.claim(now=1e18)


def test_the_activity_board_wakes_once_when_a_paused_region_gets_work() -> None:
    woken: list[tuple[str, str]] = []
    board = ActivityBoard(lambda target, region: woken.append((target, region)))
    board.report("t", "r", True)
    board.report("t", "r", False)
    assert board.paused("t", "r") and woken == []
    board.report("t", "r", None)  # the job API failed: fail open, poll
    assert not board.paused("t", "r") and woken == [("t", "r")]


def test_settle_returns_when_the_pool_cancels_what_it_had_queued() -> None:
    """A stop (shutdown with cancel_futures) during a cycle: the cycle's wait for its batches must end."""
    from concurrent.futures import ThreadPoolExecutor

    from exporter.poller import settle

    release = threading.Event()
    pool = ThreadPoolExecutor(1)
    running = pool.submit(release.wait, 30)
    queued = [pool.submit(math.sqrt, 4.0) for _ in range(3)]  # behind the running call: still in the pool's queue
    done = threading.Event()
    waiter = threading.Thread(target=lambda: (settle([running, *queued]), done.set()), daemon=True)
    waiter.start()
    pool.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in queued)
    release.set()  # the call in flight finishes by itself
    assert done.wait(10), "settle() still waiting for futures the pool cancelled"
    waiter.join(10)
    assert running.result() is True
