"""``sentinel-xds drain`` / ``undrain``: take a Redis node out of service with no write lost.

A plain ``SENTINEL FAILOVER`` loses acknowledged writes: the old primary goes
on accepting them until Sentinel converts it to a replica, seconds later, and
its data is then thrown away. The switchover here closes that window (the
recipe measured in issue 5: 0 writes lost, 1 failed command):

1. ``CONFIG SET replica-priority 0`` on the node, so Sentinel never promotes it
   again while drained (the mark lives in Redis, visible to every Sentinel);
2. ``CLIENT PAUSE <budget> WRITE`` on the primary: writes wait, reads go on,
   and Redis lifts the pause by itself if this process dies;
3. wait until every candidate replica has the primary's replication offset
   (nothing acknowledged is missing from the one Sentinel will pick);
4. ``SENTINEL FAILOVER`` and wait until a candidate reports ``master``;
5. wait until every control plane routes every connected sidecar to it
   (ACKed, read from the admin ``/status``);
6. ``REPLICAOF <new>`` on the old primary, *then* ``CLIENT UNPAUSE``: the
   write that was waiting fails with an error instead of landing on a node
   that is about to be discarded.

Every paused step must finish within the pause budget minus a margin. Until
``SENTINEL FAILOVER`` is sent, any failure undoes everything (unpause,
priority restored, the old primary keeps serving). Once a replica has been
promoted the only safe way is forward (demote, then unpause), even if some
sidecar is late: unpausing a primary that Sentinel has replaced would lose
writes. The steps are printed as they happen, ``+<ms>  <event>  <detail>``,
and every wait says what it waits for and, at least every second, what it
sees so far (:class:`~xds.ops.drain_output.Wait`); ``--json`` prints the same
as JSON lines, ending with the result and its exit code.

This is an operator tool, not the protocol layer. It reaches Redis and Sentinel
only through :class:`redis_sentinel_watch.SentinelIO`, built from the config as
``serve`` builds it (the same ``sentinel_auth``, ``redis_auth`` and ``tls``;
:func:`~xds.ops.drain_redis.drain_io`), so its replies are parsed by the same strict parsers and a
malformed one stops the drain naming the field. It runs the I/O's coroutines
one at a time on a private event loop: the procedure is a sequence of waits,
and reads better (and tests better) as plain code. Before changing anything it
checks that the configured users may run every command it will send, and
refuses in one line naming the first one they lack.

This module is the procedure: the order of the steps, the deadlines and what
is undone when. What it reads from Redis and Sentinel and how it waits for
them is :mod:`xds.ops.drain_redis`; the control planes it waits for,
:mod:`xds.ops.drain_control_planes`; what it prints and returns,
:mod:`xds.ops.drain_output`; what it decides from the facts,
:mod:`xds.ops.drain_plan`.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from typing import TextIO

from redis_sentinel_watch import (
    Address,
    NoPermissionError,
    ReplyError,
    TimedOutError,
    UnreachableError,
    WatchError,
)
from redis_sentinel_watch.auth import Secret
from redis_sentinel_watch.redis_io import RedisSentinelIO
from xds.ops.drain_control_planes import ControlPlanes
from xds.ops.drain_output import EXIT_FAILED, DrainResult, Progress, Steps, undrain_hint
from xds.ops.drain_plan import (
    DEFAULT_COMMAND_TIMEOUT_S,
    DEFAULT_PRIORITY,
    Action,
    Budget,
    DrainRefusedError,
    Plan,
    plan_drain,
    plan_undrain,
)
from xds.ops.drain_redis import DrainRedis, IOFactory
from xds.ops.exits import EXIT_OK

__all__ = ["DrainOptions", "Drainer", "run_drain", "run_undrain"]

#: below this a switchover cannot finish (Sentinel alone needs ~200 ms to promote)
MIN_PAUSE_MS = 150


def _quick_timeout(command_timeout_s: float, margin_ms: int) -> float:
    """While writes are paused every request must answer well within the margin, so
    that one hung reply cannot carry a step past the moment the pause must end."""
    return min(command_timeout_s, max(margin_ms / 2000, 0.02))


class _Abort(Exception):
    """A paused step failed or ran out of time; the message says which and why."""


@dataclass(frozen=True)
class DrainOptions:
    group: str
    node: Address
    sentinels: tuple[Address, ...]
    admins: tuple[str, ...] = ()
    budget: Budget = field(default_factory=Budget)
    dry_run: bool = False
    json_lines: bool = False
    command_timeout_s: float = DEFAULT_COMMAND_TIMEOUT_S
    settle_timeout_s: float = 30.0  # after the switch: wait for Sentinel to finish its failover
    priority: int = DEFAULT_PRIORITY  # undrain only
    admin_token: Secret | None = None  # admin.token_file, sent to every admin API
    io: IOFactory = RedisSentinelIO  # Redis/Sentinel access; see drain_io()


@dataclass
class _Undo:
    """What the switchover changed so far, so a failure knows what to put back."""

    previous_priority: int
    priority_set: bool = False
    paused_at: float | None = None
    failover_sent: bool = False
    failover_ambiguous: bool = False
    promoted: Address | None = None


class Drainer:
    """Runs one drain or undrain. ``progress(event)`` is called after every step."""

    def __init__(
        self,
        options: DrainOptions,
        out: TextIO | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.o = options
        self.step = Steps(out or sys.stdout, options.json_lines, progress)
        quick = _quick_timeout(options.command_timeout_s, options.budget.margin_ms)
        self.redis = DrainRedis(
            options.io,
            options.group,
            options.node,
            options.sentinels,
            timeout_s=options.command_timeout_s,
            quick_s=quick,
            settle_timeout_s=options.settle_timeout_s,
            step=self.step,
        )
        self.planes = ControlPlanes(
            options.group,
            options.admins,
            options.admin_token,
            options.command_timeout_s,
            quick,
            self.step,
        )

    def _fit_budget(self, plan: Plan) -> None:
        """Shrink the pause budget below what Sentinel tolerates (see ``safe_pause_ms``)."""
        limit = plan.pause_limit_ms
        if plan.action is not Action.SWITCHOVER or not limit or self.o.budget.pause_ms <= limit:
            return
        if limit < MIN_PAUSE_MS:
            raise DrainRefusedError(
                f"Sentinel's down-after-milliseconds allows a write pause of only {limit} ms "
                f"(need at least {MIN_PAUSE_MS}); raise down-after-milliseconds first"
            )
        margin = min(self.o.budget.margin_ms, limit // 4)
        self.step.say(
            f"pause budget lowered from {self.o.budget.pause_ms} to {limit} ms: a longer "
            "pause would make Sentinel flag the primary down (80% of its down-after-milliseconds)"
        )
        self.o = replace(self.o, budget=Budget(pause_ms=limit, margin_ms=margin))
        quick = _quick_timeout(self.o.command_timeout_s, margin)
        self.redis.requick(quick)
        self.planes.requick(quick)

    def close(self) -> None:
        """Close every Redis/Sentinel connection and the event loop."""
        self.redis.close()

    # ------------------------------------------------------------------ drain

    def drain(self) -> DrainResult:
        try:
            answers, nodes = self.redis.facts()
            plan = plan_drain(self.o.group, self.o.node, answers, len(self.o.sentinels), nodes)
            self.redis.check_permissions(
                plan, self.o.budget.pause_ms
            )  # first: a refusal is then the only line printed
            self._fit_budget(plan)
            if self.o.dry_run:
                for line in plan.describe(self.o.budget, self.planes.bases):
                    self.step.say(line)
            elif plan.action is Action.SWITCHOVER:
                self.step.say(
                    f"drain {self.o.group} {self.o.node}: primary; switchover to one of "
                    f"{', '.join(str(a) for a in plan.candidates)}, "
                    f"pause budget {self.o.budget.pause_ms} ms"
                )
            if plan.action is Action.SWITCHOVER:
                self.planes.check(plan.primary)
        except (DrainRefusedError, NoPermissionError) as exc:
            code = exc.exit_code if isinstance(exc, DrainRefusedError) else EXIT_FAILED
            self.step.say(f"drain refused: {exc}")
            return DrainResult(code, "refused", str(exc))
        if self.o.dry_run:
            self.step.say("dry run: nothing changed")
            return DrainResult(EXIT_OK, "dry-run", "dry run", old_primary=plan.primary)
        if plan.action is Action.ALREADY_DRAINED:
            msg = f"{self.o.node} is already drained (replica of {plan.primary}, priority 0)"
            self.step.say(msg)
            return DrainResult(EXIT_OK, "already-drained", msg, old_primary=plan.primary)
        if plan.action is Action.DRAIN_REPLICA:
            return self._drain_replica(plan)
        return self._switchover(plan)

    def _drain_replica(self, plan: Plan) -> DrainResult:
        try:
            self.redis.do(self.redis.io.set_replica_priority(self.o.node, 0))
        except WatchError as exc:
            msg = f"CONFIG SET replica-priority 0 on {self.o.node} failed: {exc}"
            self.step.say(f"drain failed: {msg}")
            return DrainResult(EXIT_FAILED, "failed", msg)
        self.step(
            "drain.marked",
            f"replica-priority {plan.previous_priority} -> 0 on {self.o.node}",
            node=str(self.o.node),
        )
        self._persist(plan)
        self.redis.wait_priority_seen(0)
        for w in plan.warnings:
            self.step.say(f"warning: {w}")
        msg = (
            f"drained: {self.o.node} stays a replica of {plan.primary} and will not be "
            "promoted" + undrain_hint(self.o.group, self.o.node, plan.previous_priority)
        )
        self.step.say(msg)
        return DrainResult(EXIT_OK, "drained", msg, old_primary=plan.primary, steps=self.step.done)

    def _persist(self, plan: Plan) -> None:
        if not plan.config_file:
            self.step.say(
                f"note: {self.o.node} runs without a config file; the change is lost if it "
                "restarts (set replica-priority in its config by hand)"
            )
            return
        try:
            self.redis.do(self.redis.io.rewrite_config(self.o.node))
        except WatchError as exc:
            self.step.say(
                f"warning: CONFIG REWRITE on {self.o.node} failed ({exc}); the "
                "change is lost if it restarts"
            )
            return
        self.step("drain.persisted", f"CONFIG REWRITE {plan.config_file}")

    # ------------------------------------------------------------------ switchover

    def _switchover(self, plan: Plan) -> DrainResult:
        old = self.o.node
        previous = plan.previous_priority
        undo = _Undo(previous_priority=DEFAULT_PRIORITY if previous is None else previous)
        budget = self.o.budget
        why: str | None = None
        try:
            undo.priority_set = True  # before sending: a lost reply may hide a change
            self.redis.do(self.redis.quick.set_replica_priority(old, 0))
            self.step("drain.marked", f"replica-priority {undo.previous_priority} -> 0 on {old}")
            # set before sending: if the reply is lost the pause may be on, so undo it
            undo.paused_at = time.monotonic()
            problem = self.redis.do(self.redis.quick.pause_writes(old, budget.pause_ms))
            if problem:
                raise _Abort(f"CLIENT PAUSE failed: {problem}")
            deadline = undo.paused_at + budget.working_ms / 1000
            self.step("drain.paused", f"CLIENT PAUSE {budget.pause_ms} WRITE on {old}")
            offset = self.redis.do(self.redis.quick.replication(old)).offset
            late = self.redis.wait_offsets(plan.candidates, offset, deadline)
            if late:
                raise _Abort(late)
            self.planes.notify(old, self.o.budget.pause_ms)
            self._failover(undo, deadline)
            undo.promoted = self.redis.wait_promotion(plan.candidates, deadline)
            if undo.promoted is None:
                raise _Abort(
                    "no candidate reported role master within the pause budget"
                    + (" (the failover request timed out)" if undo.failover_ambiguous else "")
                )
            late = self.planes.wait_routed(undo.promoted, deadline)
            if late:
                raise _Abort(late)
        except (_Abort, WatchError, KeyboardInterrupt) as exc:
            why = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc)
            if undo.promoted is None and undo.failover_sent:
                undo.promoted = self.redis.promoted(plan.candidates)  # a last look
            if undo.promoted is None:
                return self._undo(plan, undo, why)
        return self._finish(plan, undo, complete=why is None, why=why or "")

    def _failover(self, undo: _Undo, deadline: float) -> None:
        errors = []
        for sentinel in self.o.sentinels:
            if time.monotonic() >= deadline:
                break
            try:
                self.redis.do(self.redis.quick.sentinel_failover(sentinel, self.o.group))
            except TimedOutError:
                # it may have been received and acted on: only the promotion can tell
                undo.failover_sent = undo.failover_ambiguous = True
                self.step(
                    "drain.failover_unclear",
                    f"SENTINEL FAILOVER via {sentinel} timed out; watching for a promotion",
                )
                return
            except ReplyError as exc:
                raise _Abort(f"Sentinel {sentinel} refused the failover: {exc}") from exc
            except UnreachableError as exc:
                errors.append(str(exc))  # not received: try the next
                continue
            undo.failover_sent = True
            self.step("drain.failover_sent", f"SENTINEL FAILOVER {self.o.group} via {sentinel}")
            return
        raise _Abort(f"no Sentinel took the failover ({'; '.join(errors) or 'out of time'})")

    def _finish(self, plan: Plan, undo: _Undo, *, complete: bool, why: str) -> DrainResult:
        """The new primary is promoted: demote the old one, then let writes go (and fail)."""
        new = undo.promoted
        assert new is not None
        errors = []
        try:
            self.redis.do(self.redis.quick.replicaof(self.o.node, new))
            self.step("drain.demoted", f"REPLICAOF {new.host} {new.port} on {self.o.node}")
        except WatchError as exc:
            errors.append(f"REPLICAOF failed: {exc} (Sentinel will convert it)")
        pause_ms = self._unpause(undo, errors)
        self._persist(plan)
        self.redis.wait_settled(new)
        if complete and not errors:
            msg = (
                f"drained: {self.o.node} is a replica of {new} with replica-priority 0; "
                f"writes were paused {pause_ms:.1f} ms"
                + undrain_hint(self.o.group, self.o.node, plan.previous_priority)
            )
            self.step.say(msg)
            return DrainResult(
                EXIT_OK, "switched", msg, plan.primary, new, pause_ms, self.step.done
            )
        msg = (
            f"drain INCOMPLETE: {why or '; '.join(errors)}. {new} was promoted, so "
            f"{self.o.node} was demoted rather than left serving (no acknowledged write is "
            "lost); clients of sidecars that have not switched yet get errors until they do: "
            "check `sentinel-xds status`"
        )
        self.step.say(msg)
        return DrainResult(
            EXIT_FAILED, "incomplete", msg, plan.primary, new, pause_ms, self.step.done
        )

    def _unpause(self, undo: _Undo, errors: list[str]) -> float | None:
        if undo.paused_at is None:
            return None
        node = self.o.node
        problem = self.redis.twice(lambda io: io.unpause_writes(node))
        if problem:
            errors.append(
                f"CLIENT UNPAUSE failed ({problem}); Redis lifts the pause by itself "
                f"{self.o.budget.pause_ms} ms after it began"
            )
            return None
        pause_ms = round((time.monotonic() - undo.paused_at) * 1000, 1)
        self.step("drain.unpaused", f"writes were paused {pause_ms:.1f} ms", pause_ms=pause_ms)
        undo.paused_at = None
        return pause_ms

    def _undo(self, plan: Plan, undo: _Undo, why: str) -> DrainResult:
        """Nothing was promoted: unpause, restore the priority, the old primary serves on."""
        self.step("drain.aborting", why)
        errors: list[str] = []
        pause_ms = self._unpause(undo, errors)
        if undo.priority_set:
            node, previous = self.o.node, undo.previous_priority
            problem = self.redis.twice(lambda io: io.set_replica_priority(node, previous))
            if not problem:
                self.step(
                    "drain.restored",
                    f"replica-priority 0 -> {undo.previous_priority} on {self.o.node}",
                )
            else:
                errors.append(
                    f"could not restore replica-priority {undo.previous_priority}: "
                    f"{problem} (run sentinel-xds undrain)"
                )
        role = self.redis.do(self.redis.io.role(self.o.node))
        warn = ""
        if undo.failover_ambiguous:
            warn = (
                " WARNING: a SENTINEL FAILOVER request timed out and may still be acted on; "
                "watch `sentinel-xds status` and the Sentinel logs."
            )
        elif undo.failover_sent:
            # Sentinel accepted it: its failover runs on (up to failover-timeout) and may
            # still promote a replica, and writes taken by the old primary meanwhile
            # would then be lost with its demotion. Say so rather than promise safety.
            warn = (
                " WARNING: Sentinel accepted SENTINEL FAILOVER and may still promote a "
                "replica (until its failover-timeout); writes taken meanwhile would be lost "
                "then. Watch `sentinel-xds status` until the primary is settled."
            )
        msg = (
            f"drain ABORTED: {why}. Undone: {self.o.node} is {role or 'unreachable'} and "
            f"serving writes again"
            + (f" (problems: {'; '.join(errors)})" if errors else "")
            + "."
            + warn
        )
        self.step.say(msg)
        return DrainResult(
            EXIT_FAILED, "aborted", msg, plan.primary, None, pause_ms, self.step.done
        )

    # ------------------------------------------------------------------ undrain

    def undrain(self) -> DrainResult:
        try:
            answers = [self.redis.ask_sentinel(s) for s in self.o.sentinels]
            me = self.redis.ask_node(self.o.node)
            plan = plan_undrain(
                self.o.group, self.o.node, answers, len(self.o.sentinels), me, self.o.priority
            )
            self.redis.check_permissions(plan, self.o.budget.pause_ms)
            if self.o.dry_run:
                for line in plan.describe(self.o.budget, []):
                    self.step.say(line)
                self.step.say("dry run: nothing changed")
                return DrainResult(EXIT_OK, "dry-run", "dry run")
            if plan.action is Action.NOT_DRAINED:
                msg = f"{self.o.node} is not drained (replica-priority {plan.previous_priority})"
                self.step.say(msg)
                return DrainResult(EXIT_OK, "not-drained", msg)
            try:
                self.redis.do(self.redis.io.set_replica_priority(self.o.node, self.o.priority))
            except WatchError as exc:
                msg = f"CONFIG SET replica-priority on {self.o.node} failed: {exc}"
                self.step.say(f"undrain failed: {msg}")
                return DrainResult(EXIT_FAILED, "failed", msg)
            self.step("drain.unmarked", f"replica-priority 0 -> {self.o.priority} on {self.o.node}")
            self._persist(plan)
            if plan.node != plan.primary:
                self.redis.wait_priority_seen(self.o.priority)
            msg = f"undrained: Sentinel may promote {self.o.node} again"
            self.step.say(msg)
            return DrainResult(EXIT_OK, "undrained", msg, steps=self.step.done)
        except (DrainRefusedError, NoPermissionError) as exc:
            code = exc.exit_code if isinstance(exc, DrainRefusedError) else EXIT_FAILED
            self.step.say(f"undrain refused: {exc}")
            return DrainResult(code, "refused", str(exc))


def run_drain(
    options: DrainOptions, out: TextIO | None = None, progress: Progress | None = None
) -> DrainResult:
    """Drain ``options.node`` (see the module docstring); never raises for Redis trouble."""
    drainer = Drainer(options, out, progress)
    try:
        result = drainer.drain()
    finally:
        drainer.close()
    drainer.step.result(result)
    return result


def run_undrain(
    options: DrainOptions, out: TextIO | None = None, progress: Progress | None = None
) -> DrainResult:
    """Give ``options.node`` its replica-priority back (idempotent)."""
    drainer = Drainer(options, out, progress)
    try:
        result = drainer.undrain()
    finally:
        drainer.close()
    drainer.step.result(result)
    return result
