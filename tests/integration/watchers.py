"""Background pollers for integration tests: watch something in a thread while a fault
happens, and record what was seen and when (polling with an interval, never sleeping
blindly). Both are context managers: the thread stops on exit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import redis

from redis_sentinel_watch import Address, WatchError
from tests.integration.conftest import Stack


class _Poller:
    """Calls :meth:`tick` every ``interval`` s in a daemon thread until it returns True
    or the ``with`` block ends."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Poller:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.tick():
                return
            self._stop.wait(self._interval)

    def tick(self) -> bool:
        raise NotImplementedError


class EnvoyWatch(_Poller):
    """Polls Envoy's /clusters every 5 ms; keeps every distinct host list seen.

    ``on_change`` runs in the watching thread right when a new host list is seen.
    """

    def __init__(
        self, stack: Stack, on_change: Callable[[list[Address]], None] | None = None
    ) -> None:
        super().__init__(0.005)
        self.stack = stack
        self.history: list[tuple[float, tuple[Address, ...]]] = []
        self._on_change = on_change

    def __enter__(self) -> EnvoyWatch:
        super().__enter__()
        return self

    def tick(self) -> bool:
        try:
            hosts = self.stack.envoy_hosts()
        except (OSError, ValueError):
            return False
        if not self.history or self.history[-1][1] != tuple(hosts):
            self.history.append((time.monotonic(), tuple(hosts)))
            if self._on_change is not None:
                self._on_change(hosts)
        return False

    def first_time(self, hosts: list[Address]) -> float | None:
        for at, seen in self.history:
            if seen == tuple(hosts):
                return at
        return None

    def sequence(self) -> list[tuple[Address, ...]]:
        return [hosts for _, hosts in self.history]

    def ever_routed_to(self, node: Address) -> bool:
        return any(node in hosts for _, hosts in self.history)


class FirstTime(_Poller):
    """Checks ``predicate`` every ``interval`` s; records when it is first true, then
    calls ``then`` (in that thread, at once). Errors count as false."""

    def __init__(
        self,
        predicate: Callable[[], bool],
        interval: float,
        then: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(interval)
        self.at: float | None = None
        self._predicate = predicate
        self._then = then

    def __enter__(self) -> FirstTime:
        super().__enter__()
        return self

    def tick(self) -> bool:
        try:
            done = self._predicate()
        except (redis.RedisError, WatchError, OSError):
            done = False  # Sentinel kills normal clients as it promotes a node
        if done:
            self.at = time.monotonic()
            if self._then is not None:
                self._then()
        return done
