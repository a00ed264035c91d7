"""The latest poll results: one immutable Snapshot, swapped atomically on every publish."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal


@dataclass(frozen=True)
class TaskKey:
    """One unit of polling: a namespace in one region of one target."""

    target: str
    region: str
    namespace: str


@dataclass(frozen=True, slots=True)
class Sample:
    """One exported value; `timestamp` is the CloudWatch datapoint time (epoch seconds) when there was one.

    `name` is the family name; a counter's sample is exposed as `<name>_total`.
    """

    name: str
    documentation: str
    labels: tuple[tuple[str, str], ...]
    value: float
    timestamp: float | None = None
    kind: Literal["gauge", "counter"] = "gauge"


@dataclass(frozen=True)
class TaskState:
    """What one task last produced, and how its polling is going."""

    key: TaskKey
    account_id: str
    samples: tuple[Sample, ...] = ()
    up: bool = False
    last_attempt: float | None = None
    last_success: float | None = None
    newest_datapoint: float | None = None
    last_error: str | None = None
    last_error_time: float | None = None
    consecutive_failures: int = 0
    polling_active: bool = True

    def failed(self, error: str, now: float) -> TaskState:
        """The same samples (last good data stays served), marked down with the error."""
        return replace(
            self,
            up=False,
            last_attempt=now,
            last_error=error,
            last_error_time=now,
            consecutive_failures=self.consecutive_failures + 1,
        )


@dataclass(frozen=True)
class Snapshot:
    """Everything the sinks show, at one instant; `version` grows with every publish."""

    version: int
    created: float
    tasks: Mapping[TaskKey, TaskState] = field(default_factory=lambda: MappingProxyType({}))
    static: tuple[Sample, ...] = ()  # samples that come from the config, e.g. prices

    @property
    def ready(self) -> bool:
        return any(state.last_success is not None for state in self.tasks.values())

    def samples(self) -> list[Sample]:
        return [*self.static, *(sample for state in self.tasks.values() for sample in state.samples)]


Listener = Callable[[Snapshot], None]


class Store:
    """Holds the current Snapshot; writers publish task states, readers take `snapshot` without locking."""

    def __init__(self, clock: Callable[[], float], static: tuple[Sample, ...] = ()) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tasks: dict[TaskKey, TaskState] = {}
        self._static = static
        self._snapshot = Snapshot(version=0, created=clock(), static=static)
        self._listeners: list[Listener] = []

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def state(self, key: TaskKey) -> TaskState | None:
        return self._tasks.get(key)

    def add_listener(self, listener: Listener) -> None:
        """Call `listener` with every new Snapshot (in the publishing thread), and once now."""
        with self._lock:
            self._listeners.append(listener)
            snapshot = self._snapshot
        listener(snapshot)

    def set_static(self, static: tuple[Sample, ...]) -> None:
        """Replace the config-derived samples (after a reload); takes effect with the next publish."""
        with self._lock:
            self._static = static

    def retain(self, keys: set[TaskKey]) -> None:
        """Forget the states of tasks no longer configured (after a reload), so their series disappear."""
        with self._lock:
            for key in [k for k in self._tasks if k not in keys]:
                del self._tasks[key]
        self._swap()

    def publish(self, state: TaskState) -> Snapshot:
        with self._lock:
            self._tasks[state.key] = state
        return self._swap()

    def _swap(self) -> Snapshot:
        with self._lock:
            snapshot = Snapshot(
                version=self._snapshot.version + 1,
                created=self._clock(),
                tasks=MappingProxyType(dict(self._tasks)),
                static=self._static,
            )
            self._snapshot = snapshot
            listeners = list(self._listeners)
        for listener in listeners:
            listener(snapshot)
        return snapshot
