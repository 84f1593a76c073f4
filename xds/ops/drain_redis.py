"""Redis and Sentinel as ``sentinel-xds drain`` reaches them: facts, permissions, waits.

The drain procedure (:mod:`xds.ops.drain`) is a sequence of waits and reads
better, and tests better, as plain code; so the async
:class:`redis_sentinel_watch.SentinelIO` is driven here one coroutine at a
time on a private event loop, at two timeouts: the normal one, and a quick
one for while writes are paused, so that one hung reply cannot carry a step
past the moment the pause must end. Here too is what the drain *reads*: each
Sentinel's view and each node's facts (parsed by the same strict parsers as
``serve``'s, so a malformed reply stops the drain naming the field), whether
the configured users may run every command the plan will send, and the
polls that wait on Redis and Sentinel: the replicas catching up and the
promotion while writes are paused, a Sentinel majority seeing the result
after. What the drain *changes* is sent by the procedure itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from redis_sentinel_watch import (
    Address,
    MasterStatus,
    NoPermissionError,
    ReplicaEntry,
    ReplyError,
    UnknownGroupError,
    UnreachableError,
    WatchError,
)
from redis_sentinel_watch.io import SentinelIO
from redis_sentinel_watch.redis_io import RedisSentinelIO
from xds.ops.drain_output import Steps
from xds.ops.drain_plan import Action, DrainRefusedError, NodeFacts, Plan, SentinelAnswer

if TYPE_CHECKING:
    from xds.service.config import Config

__all__ = ["DrainRedis", "IOFactory", "drain_io"]

#: builds the Redis/Sentinel I/O for a per-request timeout (drain uses two)
IOFactory = Callable[[float], SentinelIO]
_T = TypeVar("_T")


def drain_io(config: Config | None) -> IOFactory:
    """The I/O ``serve`` would build from ``config`` (same credentials and TLS:
    :func:`xds.service.app.sentinel_io`), with the drain's own timeouts; without
    a config (``--sentinel`` only), unauthenticated plaintext."""
    if config is None:
        return RedisSentinelIO
    from xds.service.app import sentinel_io  # noqa: PLC0415 - the service, only when needed

    return sentinel_io(config).with_timeout


def _answer(
    master: MasterStatus, replicas: tuple[ReplicaEntry, ...], sentinel: Address
) -> SentinelAnswer:
    return SentinelAnswer(
        sentinel,
        True,
        primary=master.primary,
        epoch=master.config_epoch,
        flags=master.flags,
        replicas=replicas,
        down_after_ms=master.down_after_ms or None,
    )


class DrainRedis:
    """The Redis/Sentinel side of one drain of ``node`` in ``group``.

    ``io`` answers within ``timeout_s``, ``quick`` (for while writes are
    paused) within ``quick_s``; :meth:`wait_sentinels` gives up after
    ``settle_timeout_s`` with a warning through ``step``.
    """

    def __init__(
        self,
        factory: IOFactory,
        group: str,
        node: Address,
        sentinels: tuple[Address, ...],
        *,
        timeout_s: float,
        quick_s: float,
        settle_timeout_s: float,
        step: Steps,
    ) -> None:
        self.group = group
        self.node = node
        self.sentinels = sentinels
        self._factory = factory
        self._settle_timeout_s = settle_timeout_s
        self._step = step
        self._loop = asyncio.Runner()
        self.io = factory(timeout_s)
        self.quick = factory(quick_s)

    def do(self, step: Awaitable[_T]) -> _T:
        """Run one I/O coroutine to completion (Ctrl-C arrives as KeyboardInterrupt)."""

        async def run() -> _T:
            return await step

        return self._loop.run(run())

    def requick(self, quick_s: float) -> None:
        """Use ``quick_s`` as the timeout while writes are paused (the budget shrank)."""
        self.do(self.quick.aclose())
        self.quick = self._factory(quick_s)

    def close(self) -> None:
        """Close every Redis/Sentinel connection and the event loop."""
        try:
            self.do(self.io.aclose())
            self.do(self.quick.aclose())
        finally:
            self._loop.close()

    def twice(self, action: Callable[[SentinelIO], Awaitable[str | None]]) -> str | None:
        """An undo step: with the quick timeout, then once more with the normal one.

        ``action`` returns a problem (or raises); the last problem is returned.
        """
        problem: str | None
        try:
            problem = self.do(action(self.quick))
        except WatchError as exc:
            problem = str(exc)
        if not problem:
            return None
        try:
            return self.do(action(self.io)) or None
        except WatchError as exc:
            return str(exc)

    def ask_sentinel(self, sentinel: Address) -> SentinelAnswer:
        """One Sentinel's view; a missing permission raises (the drain must not go on)."""
        try:
            master = self.do(self.io.sentinel_master(sentinel, self.group))
            replicas = self.do(self.io.sentinel_replicas(sentinel, self.group))
        except NoPermissionError:
            raise
        except UnknownGroupError as exc:
            return SentinelAnswer(sentinel, True, error=str(exc), unknown_group=True)
        except ReplyError as exc:
            return SentinelAnswer(sentinel, True, error=str(exc))
        except UnreachableError as exc:
            return SentinelAnswer(sentinel, False, error=str(exc))
        return _answer(master, replicas, sentinel)

    def ask_node(self, address: Address) -> NodeFacts:
        """What ``address`` says about itself; a missing permission raises."""
        try:
            info = self.do(self.io.replication(address))
            priority = self.do(self.io.replica_priority(address))
            config_file = self.do(self.io.config_file(address))
        except NoPermissionError:
            raise
        except WatchError as exc:
            return NodeFacts(address, False, error=str(exc))
        return NodeFacts(
            address,
            True,
            role=info.role,
            priority=priority,
            master=info.master,
            link_up=info.link_up,
            offset=info.offset,
            config_file=config_file,
        )

    def answers(self) -> list[SentinelAnswer]:
        """Every Sentinel's view, permission errors included as answers (for the waits)."""
        answers = []
        for s in self.sentinels:
            try:
                answers.append(self.ask_sentinel(s))
            except NoPermissionError as exc:
                answers.append(SentinelAnswer(s, True, error=str(exc)))
        return answers

    def facts(self) -> tuple[list[SentinelAnswer], dict[Address, NodeFacts]]:
        answers = [self.ask_sentinel(s) for s in self.sentinels]
        addresses = {self.node}
        for a in answers:
            addresses |= {r.address for r in a.replicas}
        nodes = {addr: self.ask_node(addr) for addr in sorted(addresses)}
        return answers, nodes

    def check_permissions(self, plan: Plan, pause_ms: int) -> None:
        """Before anything changes: may the configured users run every command the plan
        sends? Refuses naming the first one missing (nothing is run to find out: see
        :meth:`SentinelIO.check_node_permissions` and ``check_sentinel_failover``)."""
        if plan.action not in (Action.SWITCHOVER, Action.DRAIN_REPLICA, Action.UNDRAIN):
            return
        node = self.node
        commands: list[tuple[str, ...]] = [("CONFIG", "SET", "replica-priority", "0")]
        if plan.config_file:
            commands.append(("CONFIG", "REWRITE"))
        try:
            if plan.action is Action.SWITCHOVER:
                new = plan.candidates[0]
                commands += [
                    ("CLIENT", "PAUSE", str(pause_ms), "WRITE"),
                    ("INFO", "replication"),
                    ("REPLICAOF", new.host, str(new.port)),
                    ("CLIENT", "UNPAUSE"),
                    ("ROLE",),
                ]
                for candidate in plan.candidates:  # watched while writes are paused
                    self.do(
                        self.io.check_node_permissions(
                            candidate, [("INFO", "replication"), ("ROLE",)]
                        )
                    )
                for sentinel in self.sentinels:
                    try:
                        self.do(self.io.check_sentinel_failover(sentinel))
                    except UnreachableError:
                        continue  # a majority answered; the failover goes to one that did
            self.do(self.io.check_node_permissions(node, commands))
        except NoPermissionError as exc:
            raise DrainRefusedError(str(exc)) from exc
        except WatchError as exc:
            raise DrainRefusedError(f"could not check permissions: {exc}") from exc

    # ------------------------------------------------------------------ while writes are paused

    def wait_offsets(
        self, candidates: Sequence[Address], offset: int, deadline: float
    ) -> str | None:
        """Poll (quick timeout) until every candidate replica has the primary's ``offset``;
        if that is not so by ``deadline`` (``time.monotonic()``), return why not."""
        behind: dict[Address, str] = dict.fromkeys(candidates, "not asked yet")
        wait = self._step.wait(
            f"{len(candidates)} replica(s) to reach the primary's offset {offset}",
            offset=offset,
        )
        while True:
            for addr in list(behind):
                try:
                    info = self.do(self.quick.replication(addr))
                except WatchError as exc:
                    behind[addr] = f"no answer: {exc}"
                    continue
                at = info.offset if info.role == "slave" else -1
                behind[addr] = f"at {at}"
                if at >= offset:
                    del behind[addr]
            if not behind:
                break
            lag = ", ".join(f"{a} {o}" for a, o in behind.items())
            there = len(candidates) - len(behind)
            wait.saw(
                f"{there} of {len(candidates)} there ({lag})",
                key=there,
                have=there,
                need=len(candidates),
            )
            if time.monotonic() >= deadline:
                return f"replicas did not reach the primary's offset {offset} in time ({lag})"
            time.sleep(0.002)
        self._step(
            "drain.replicas_synced",
            f"{', '.join(str(a) for a in candidates)} at offset {offset}",
        )
        return None

    def promoted(
        self, candidates: Sequence[Address], roles: dict[Address, str | None] | None = None
    ) -> Address | None:
        """The first candidate whose ``ROLE`` says master (quick timeout), if any; each
        role asked is recorded in ``roles`` (for the progress line)."""
        for addr in candidates:
            role = self.do(self.quick.role(addr))
            if roles is not None:
                roles[addr] = role
            if role == "master":
                return addr
        return None

    def wait_promotion(self, candidates: Sequence[Address], deadline: float) -> Address | None:
        """Poll until a candidate reports master; None if none did by ``deadline``."""
        wait = self._step.wait(
            f"one of {', '.join(str(a) for a in candidates)} to report role master"
        )
        roles: dict[Address, str | None] = {}
        while True:
            new = self.promoted(candidates, roles)
            if new is not None:
                self._step("drain.promoted", f"{new} reports role master", new=str(new))
                return new
            wait.saw(", ".join(f"{a} {r or 'no answer'}" for a, r in roles.items()))
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.005)

    # ------------------------------------------------------------------ after the switch

    def wait_sentinels(self, ok: Callable[[SentinelAnswer], bool], what: str) -> None:
        """Poll every Sentinel until a majority satisfies ``ok`` (bounded; warns on timeout).

        Sentinel reads a replica's priority from its ``INFO``, every 10 s, so
        a priority change takes up to that long to count for Sentinel.
        """
        n = len(self.sentinels)
        need = n // 2 + 1
        deadline = time.monotonic() + self._settle_timeout_s
        agree = 0
        wait = self._step.wait(f"a Sentinel majority ({need} of {n}) to {what}")
        while time.monotonic() < deadline:
            answers = self.answers()
            agree = sum(1 for a in answers if ok(a))
            if agree >= need:
                self._step("drain.sentinels_agree", f"{agree}/{n} {what}")
                return
            silent = [str(a.sentinel) for a in answers if not a.reachable]
            wait.saw(
                f"{agree} of {n} so far"
                + (f"; unreachable: {', '.join(silent)}" if silent else ""),
                have=agree,
                need=need,
            )
            time.sleep(min(0.2, wait.due_in()))
        self._step.say(
            f"warning: after {self._settle_timeout_s:.0f} s only {agree} of "
            f"{len(self.sentinels)} Sentinels {what}; check the Sentinels"
        )

    def wait_settled(self, new: Address) -> None:
        """Wait (writes flow again) until a Sentinel majority names ``new`` with the
        failover over, and lists this node as a replica with priority 0.

        Until then Sentinel refuses another failover of the group, and might
        not yet know the node must not be promoted; a drain that returned
        earlier would leave the next command to trip over that.
        """

        def settled(a: SentinelAnswer) -> bool:
            return (
                a.primary == new
                and "failover_in_progress" not in a.flags
                and any(r.address == self.node and r.priority == 0 for r in a.replicas)
            )

        self.wait_sentinels(
            settled,
            f"name {new}, failover finished, {self.node} a replica with priority 0",
        )

    def wait_priority_seen(self, priority: int) -> None:
        node = self.node

        def sees(a: SentinelAnswer) -> bool:
            return any(
                r.address == node and (r.priority == 0) == (priority == 0) for r in a.replicas
            )

        self.wait_sentinels(sees, f"see replica-priority {priority} on {node}")
