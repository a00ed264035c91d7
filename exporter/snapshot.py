"""The latest poll results: one immutable Snapshot of typed records, swapped atomically on every publish.

Each configuration (the first, and every reload) is a generation. A task publishes with the generation that built
it; the Store refuses results of a superseded generation, so a cycle still in flight when a reload dropped its task
cannot bring the task back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType

from exporter.model import Price, TaskKey, TaskState


@dataclass(frozen=True)
class Snapshot:
    """Everything the sinks show, at one instant; `version` grows with every publish."""

    version: int
    created: float
    tasks: Mapping[TaskKey, TaskState] = field(default_factory=lambda: MappingProxyType({}))
    prices: tuple[Price, ...] = ()  # from the config's price table

    @cached_property
    def price_table(self) -> Mapping[str, Price]:
        """The prices by model ID as configured (exporter.pricing resolves reported IDs against it)."""
        return MappingProxyType({p.model_id: p for p in self.prices})

    @property
    def ready(self) -> bool:
        return any(state.last_success is not None for state in self.tasks.values())


Listener = Callable[[Snapshot], None]


class Store:
    """Holds the current Snapshot; writers publish task states, readers take `snapshot` without locking."""

    def __init__(self, clock: Callable[[], float], prices: tuple[Price, ...] = ()) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tasks: dict[TaskKey, TaskState] = {}
        self._prices = prices
        self._generation = 0
        self._snapshot = Snapshot(version=0, created=clock(), prices=prices)
        self._listeners: list[Listener] = []

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    @property
    def generation(self) -> int:
        return self._generation

    def state(self, key: TaskKey) -> TaskState | None:
        return self._tasks.get(key)

    def add_listener(self, listener: Listener) -> None:
        """Call `listener` with every new Snapshot (in the publishing thread), and once now."""
        with self._lock:
            self._listeners.append(listener)
            snapshot = self._snapshot
        listener(snapshot)

    def new_generation(self, keys: set[TaskKey], prices: tuple[Price, ...]) -> int:
        """Start a configuration: forget tasks not in `keys`, take the new prices, refuse older generations' results.

        Returns the generation number the new configuration's tasks publish with.
        """
        with self._lock:
            self._generation += 1
            self._tasks = {k: v for k, v in self._tasks.items() if k in keys}
            self._prices = prices
            generation = self._generation
        self._swap()
        return generation

    def publish(self, state: TaskState, generation: int | None = None) -> bool:
        """Take a task's new state; False (and nothing changes) when `generation` has been superseded."""
        with self._lock:
            if generation is not None and generation != self._generation:
                return False
            self._tasks[state.key] = state
        self._swap()
        return True

    def _swap(self) -> None:
        with self._lock:
            snapshot = Snapshot(
                version=self._snapshot.version + 1,
                created=self._clock(),
                tasks=MappingProxyType(dict(self._tasks)),
                prices=self._prices,
            )
            self._snapshot = snapshot
            listeners = list(self._listeners)
        for listener in listeners:
            listener(snapshot)
