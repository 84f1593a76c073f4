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
writes. The steps are printed as they happen, ``+<ms>  <event>  <detail>``.

This is an operator tool, not the protocol layer: it talks to Redis and
Sentinel with redis-py (synchronously; it does one thing at a time).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

from redis_sentinel_watch import Address
from xds.ops.admin_client import AdminClient, AdminError
from xds.ops.drain_plan import (
    DEFAULT_PRIORITY,
    Action,
    Budget,
    DrainRefusedError,
    NodeFacts,
    Plan,
    ReplicaEntry,
    SentinelAnswer,
    plan_drain,
    plan_undrain,
)

__all__ = ["DrainOptions", "DrainResult", "Drainer", "run_drain", "run_undrain"]

EXIT_OK = 0
EXIT_FAILED = 1
#: below this a switchover cannot finish (Sentinel alone needs ~200 ms to promote)
MIN_PAUSE_MS = 150
ROUTED_TYPES = ("Cluster", "ClusterLoadAssignment")

Progress = Callable[[str], None]


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
    command_timeout_s: float = 1.0
    settle_timeout_s: float = 30.0  # after the switch: wait for Sentinel to finish its failover
    priority: int = DEFAULT_PRIORITY  # undrain only


@dataclass
class DrainResult:
    """What happened, for the CLI's exit code, the tests and the benchmark."""

    exit_code: int
    outcome: str  # switched | drained | already-drained | undrained | not-drained | refused …
    message: str
    old_primary: Address | None = None
    new_primary: Address | None = None
    pause_ms: float | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)


class Steps:
    """Prints each step as it happens (human lines or JSON lines) and keeps them."""

    def __init__(
        self, out: TextIO, json_lines: bool = False, progress: Progress | None = None
    ) -> None:
        self._out = out
        self._json = json_lines
        self._progress = progress
        self.started = time.monotonic()
        self.done: list[dict[str, Any]] = []

    def ms(self) -> float:
        return round((time.monotonic() - self.started) * 1000, 1)

    def __call__(self, event: str, detail: str, **fields: Any) -> None:
        record = {"ms": self.ms(), "event": event, "detail": detail, **fields}
        self.done.append(record)
        if self._json:
            self._out.write(json.dumps(record, default=str) + "\n")
        else:
            self._out.write(f"+{record['ms']:>9.1f} ms  {event:<24} {detail}\n")
        self._out.flush()
        if self._progress is not None:
            self._progress(event)

    def say(self, text: str) -> None:
        if self._json:
            self._out.write(json.dumps({"ms": self.ms(), "event": "drain.info", "detail": text}))
            self._out.write("\n")
        else:
            self._out.write(text + "\n")
        self._out.flush()


def _client(address: Address, timeout_s: float) -> redis.Redis:
    # one try per command: a hung node must count as failed at once, the caller decides
    return redis.Redis(
        host=address.host,
        port=address.port,
        protocol=2,
        decode_responses=True,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )


def _cmd(client: redis.Redis, *args: str) -> Any:
    """``execute_command`` (which redis-py leaves unannotated) with a typed signature."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _pairs(reply: Any) -> dict[str, str]:
    if isinstance(reply, Mapping):
        return {str(k): str(v) for k, v in reply.items()}
    items = [str(x) for x in reply or []]
    return dict(zip(items[::2], items[1::2], strict=False))


def _int(text: str | None, default: int = 0) -> int:
    try:
        return int(str(text))
    except (TypeError, ValueError):
        return default


class Cluster:
    """The drain's view of Redis and Sentinel: one short-timeout client per address."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout = timeout_s
        self._clients: dict[Address, redis.Redis] = {}

    def client(self, address: Address) -> redis.Redis:
        c = self._clients.get(address)
        if c is None:
            c = self._clients[address] = _client(address, self._timeout)
        return c

    def close(self) -> None:
        for c in self._clients.values():
            c.close()
        self._clients.clear()

    def ask_sentinel(self, sentinel: Address, group: str) -> SentinelAnswer:
        try:
            c = self.client(sentinel)
            master = _pairs(_cmd(c, "SENTINEL", "MASTER", group))
            replies = _cmd(c, "SENTINEL", "REPLICAS", group)
        except redis.exceptions.ResponseError as exc:
            text = _first_line(exc)
            return SentinelAnswer(
                sentinel, True, error=text, unknown_group="no such master" in text.lower()
            )
        except (redis.exceptions.RedisError, OSError) as exc:
            return SentinelAnswer(sentinel, False, error=_first_line(exc))
        replicas = []
        for entry in replies or []:
            f = _pairs(entry)
            try:
                address = Address(f.get("ip", ""), _int(f.get("port")))
            except ValueError:
                continue
            replicas.append(
                ReplicaEntry(
                    address,
                    frozenset(f.get("flags", "").split(",")),
                    _int(f.get("slave-priority"), DEFAULT_PRIORITY),
                    f.get("master-link-status", "ok") == "ok",
                )
            )
        try:
            primary = Address(master.get("ip", ""), _int(master.get("port")))
        except ValueError:
            return SentinelAnswer(sentinel, True, error="SENTINEL MASTER: no ip/port")
        return SentinelAnswer(
            sentinel,
            True,
            primary=primary,
            epoch=_int(master.get("config-epoch")),
            flags=frozenset(master.get("flags", "").split(",")),
            replicas=tuple(replicas),
            down_after_ms=_int(master.get("down-after-milliseconds")) or None,
        )

    def ask_node(self, address: Address) -> NodeFacts:
        try:
            c = self.client(address)
            info = c.info("replication")
            priority = c.config_get("replica-priority").get("replica-priority")
            server = c.info("server")
        except (redis.exceptions.RedisError, OSError) as exc:
            return NodeFacts(address, False, error=_first_line(exc))
        role = str(info.get("role", ""))
        master = None
        if role == "slave" and info.get("master_host"):
            try:
                master = Address(str(info["master_host"]), _int(info.get("master_port")))
            except ValueError:
                master = None
        return NodeFacts(
            address,
            True,
            role=role,
            priority=_int(priority, DEFAULT_PRIORITY),
            master=master,
            link_up=info.get("master_link_status") == "up",
            offset=_int(info.get("slave_repl_offset" if role == "slave" else "master_repl_offset")),
            config_file=str(server.get("config_file") or ""),
        )

    def role(self, address: Address) -> str:
        try:
            reply = _cmd(self.client(address), "ROLE")
        except (redis.exceptions.RedisError, OSError):
            return ""
        return str(reply[0]) if reply else ""


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
        self.redis = Cluster(options.command_timeout_s)
        self.admins = [AdminClient(a, timeout_s=options.command_timeout_s) for a in options.admins]
        # While writes are paused every request must answer well within the margin, so
        # that one hung reply cannot carry a step past the moment the pause must end.
        quick = min(options.command_timeout_s, max(options.budget.margin_ms / 2000, 0.02))
        self.paused = Cluster(quick)
        self.paused_admins = [AdminClient(a, timeout_s=quick) for a in options.admins]
        self.step = Steps(out or sys.stdout, options.json_lines, progress)

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
        quick = min(self.o.command_timeout_s, max(margin / 2000, 0.02))
        self.paused = Cluster(quick)
        self.paused_admins = [AdminClient(a, timeout_s=quick) for a in self.o.admins]

    # ------------------------------------------------------------------ facts

    def _facts(self) -> tuple[list[SentinelAnswer], dict[Address, NodeFacts]]:
        answers = [self.redis.ask_sentinel(s, self.o.group) for s in self.o.sentinels]
        addresses = {self.o.node}
        for a in answers:
            addresses |= {r.address for r in a.replicas}
        nodes = {addr: self.redis.ask_node(addr) for addr in sorted(addresses)}
        return answers, nodes

    # ------------------------------------------------------------------ drain

    def drain(self) -> DrainResult:
        try:
            answers, nodes = self._facts()
            plan = plan_drain(self.o.group, self.o.node, answers, len(self.o.sentinels), nodes)
            self._fit_budget(plan)
            if self.o.dry_run:
                for line in plan.describe(self.o.budget, [a.base for a in self.admins]):
                    self.step.say(line)
            elif plan.action is Action.SWITCHOVER:
                self.step.say(
                    f"drain {self.o.group} {self.o.node}: primary; switchover to one of "
                    f"{', '.join(str(a) for a in plan.candidates)}, "
                    f"pause budget {self.o.budget.pause_ms} ms"
                )
            if plan.action is Action.SWITCHOVER:
                self._check_admins(plan.primary)
        except DrainRefusedError as exc:
            self.step.say(f"drain refused: {exc}")
            self.redis.close()
            return DrainResult(exc.exit_code, "refused", str(exc))
        try:
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
        finally:
            self.redis.close()

    def _drain_replica(self, plan: Plan) -> DrainResult:
        c = self.redis.client(self.o.node)
        try:
            c.config_set("replica-priority", 0)
        except (redis.exceptions.RedisError, OSError) as exc:
            msg = f"CONFIG SET replica-priority 0 on {self.o.node} failed: {_first_line(exc)}"
            self.step.say(f"drain failed: {msg}")
            return DrainResult(EXIT_FAILED, "failed", msg)
        self.step(
            "drain.marked",
            f"replica-priority {plan.previous_priority} -> 0 on {self.o.node}",
            node=str(self.o.node),
        )
        self._persist(plan)
        self._wait_priority_seen(0)
        for w in plan.warnings:
            self.step.say(f"warning: {w}")
        msg = (
            f"drained: {self.o.node} stays a replica of {plan.primary} and will not be "
            "promoted" + _undrain_hint(self.o.group, self.o.node, plan.previous_priority)
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
            _cmd(self.redis.client(self.o.node), "CONFIG", "REWRITE")
        except (redis.exceptions.RedisError, OSError) as exc:
            self.step.say(
                f"warning: CONFIG REWRITE on {self.o.node} failed ({_first_line(exc)}); the "
                "change is lost if it restarts"
            )
            return
        self.step("drain.persisted", f"CONFIG REWRITE {plan.config_file}")

    # ------------------------------------------------------------------ control planes

    def _routes(self, status: Mapping[str, Any], primary: Address) -> tuple[bool, str]:
        """(does this control plane route every sidecar to ``primary``, why not)."""
        group = next((g for g in status.get("groups", []) if g.get("name") == self.o.group), None)
        if group is None:
            return False, f"does not serve group {self.o.group!r}"
        if group.get("primary") != str(primary):
            return False, f"routes {self.o.group} to {group.get('primary')}"
        late = []
        sidecars = status.get("sidecars", [])
        for sc in sidecars:
            types = sc.get("types", {})
            states = [types.get(t, {}).get("state") for t in ROUTED_TYPES if t in types]
            routes = sc.get("primaries", {})
            synced = bool(states) and all(s == "SYNCED" for s in states)
            if not states:
                continue  # not subscribed to clusters (e.g. listeners only)
            if not synced or (self.o.group in routes and routes[self.o.group] != str(primary)):
                late.append(
                    f"{sc.get('node_id') or sc.get('stream_id')} "
                    f"({'/'.join(str(s) for s in states)}, routes {routes.get(self.o.group)})"
                )
        if late:
            return False, f"{len(late)}/{len(sidecars)} sidecars not there: {', '.join(late)}"
        return True, f"{len(sidecars)} sidecar(s) route to {primary}"

    def _check_admins(self, primary: Address) -> None:
        """Before anything changes: every control plane sees the same primary, all synced."""
        for admin in self.admins:
            try:
                status = admin.status()
            except AdminError as exc:
                raise DrainRefusedError(
                    f"control plane {admin.base} unreachable ({exc}); the drain waits for its "
                    "sidecars, so it must be reachable (--admin)"
                ) from exc
            ok, why = self._routes(status, primary)
            if not ok:
                raise DrainRefusedError(
                    f"control plane {admin.base} is not settled: {why}; fix that first "
                    "(sentinel-xds status)"
                )
            self.step("drain.checked", f"{admin.base}: {why}")

    # ------------------------------------------------------------------ switchover

    def _switchover(self, plan: Plan) -> DrainResult:
        old = self.o.node
        previous = plan.previous_priority
        undo = _Undo(previous_priority=DEFAULT_PRIORITY if previous is None else previous)
        budget = self.o.budget
        c = self.paused.client(old)
        why: str | None = None
        try:
            try:
                undo.priority_set = True  # before sending: a lost reply may hide a change
                c.config_set("replica-priority", 0)
                self.step(
                    "drain.marked", f"replica-priority {undo.previous_priority} -> 0 on {old}"
                )
                # set before sending: if the reply is lost the pause may be on, so undo it
                undo.paused_at = time.monotonic()
                _cmd(c, "CLIENT", "PAUSE", str(budget.pause_ms), "WRITE")
                deadline = undo.paused_at + budget.working_ms / 1000
                self.step("drain.paused", f"CLIENT PAUSE {budget.pause_ms} WRITE on {old}")
                offset = _int(c.info("replication").get("master_repl_offset"))
                self._wait_offsets(plan.candidates, offset, deadline)
                self._notify_admins(old)
                self._failover(undo, deadline)
                undo.promoted = self._wait_promotion(plan.candidates, deadline, undo)
                self._wait_routed(undo.promoted, deadline)
            except (_Abort, redis.exceptions.RedisError, OSError, KeyboardInterrupt) as exc:
                why = "interrupted" if isinstance(exc, KeyboardInterrupt) else _first_line(exc)
                if undo.promoted is None and undo.failover_sent:
                    undo.promoted = self._promoted(plan.candidates)  # a last look
                if undo.promoted is None:
                    return self._undo(plan, undo, c, why)
            return self._finish(plan, undo, c, complete=why is None, why=why or "")
        finally:
            self.paused.close()

    def _wait_offsets(self, candidates: Sequence[Address], offset: int, deadline: float) -> None:
        behind: dict[Address, str] = dict.fromkeys(candidates, "not asked yet")
        while True:
            for addr in list(behind):
                try:
                    info = self.paused.client(addr).info("replication")
                except (redis.exceptions.RedisError, OSError) as exc:
                    behind[addr] = f"no answer: {_first_line(exc)}"
                    continue
                at = _int(info.get("slave_repl_offset"), -1)
                behind[addr] = f"at {at}"
                if at >= offset:
                    del behind[addr]
            if not behind:
                break
            if time.monotonic() >= deadline:
                lag = ", ".join(f"{a} {o}" for a, o in behind.items())
                raise _Abort(
                    f"replicas did not reach the primary's offset {offset} in time ({lag})"
                )
            time.sleep(0.002)
        self.step(
            "drain.replicas_synced",
            f"{', '.join(str(a) for a in candidates)} at offset {offset}",
        )

    def _notify_admins(self, old: Address) -> None:
        ttl = max(self.o.budget.pause_ms / 1000 * 4, 30.0)
        for admin in self.paused_admins:
            try:
                admin.notify_drain(self.o.group, old, ttl)
            except AdminError as exc:  # only a label on the timeline: go on
                self.step.say(f"warning: could not tell {admin.base} about the drain: {exc}")

    def _failover(self, undo: _Undo, deadline: float) -> None:
        errors = []
        for sentinel in self.o.sentinels:
            if time.monotonic() >= deadline:
                break
            try:
                _cmd(self.paused.client(sentinel), "SENTINEL", "FAILOVER", self.o.group)
            except redis.exceptions.TimeoutError:
                # it may have been received and acted on: only the promotion can tell
                undo.failover_sent = undo.failover_ambiguous = True
                self.step(
                    "drain.failover_unclear",
                    f"SENTINEL FAILOVER via {sentinel} timed out; watching for a promotion",
                )
                return
            except redis.exceptions.ResponseError as exc:
                raise _Abort(
                    f"Sentinel {sentinel} refused the failover: {_first_line(exc)}"
                ) from exc
            except (redis.exceptions.ConnectionError, OSError) as exc:
                errors.append(f"{sentinel}: {_first_line(exc)}")  # not received: try the next
                continue
            undo.failover_sent = True
            self.step("drain.failover_sent", f"SENTINEL FAILOVER {self.o.group} via {sentinel}")
            return
        raise _Abort(f"no Sentinel took the failover ({'; '.join(errors) or 'out of time'})")

    def _promoted(self, candidates: Sequence[Address]) -> Address | None:
        for addr in candidates:
            if self.paused.role(addr) == "master":
                return addr
        return None

    def _wait_promotion(
        self, candidates: Sequence[Address], deadline: float, undo: _Undo
    ) -> Address:
        while True:
            new = self._promoted(candidates)
            if new is not None:
                self.step("drain.promoted", f"{new} reports role master", new=str(new))
                return new
            if time.monotonic() >= deadline:
                raise _Abort(
                    "no candidate reported role master within the pause budget"
                    + (" (the failover request timed out)" if undo.failover_ambiguous else "")
                )
            time.sleep(0.005)

    def _wait_routed(self, new: Address, deadline: float) -> None:
        waiting = {a.base: a for a in self.paused_admins}
        why: dict[str, str] = {}
        while waiting:
            for base, admin in list(waiting.items()):
                try:
                    ok, why[base] = self._routes(admin.status(), new)
                except AdminError as exc:
                    ok, why[base] = False, str(exc)
                if ok:
                    self.step("drain.sidecars_acked", f"{base}: {why[base]}")
                    del waiting[base]
            if waiting and time.monotonic() >= deadline:
                raise _Abort(
                    "control plane(s) did not route every sidecar to the new primary in time: "
                    + "; ".join(f"{b}: {why.get(b, '?')}" for b in waiting)
                )
            if waiting:
                time.sleep(0.01)

    def _finish(
        self, plan: Plan, undo: _Undo, c: redis.Redis, *, complete: bool, why: str
    ) -> DrainResult:
        """The new primary is promoted: demote the old one, then let writes go (and fail)."""
        new = undo.promoted
        assert new is not None
        errors = []
        try:
            _cmd(c, "REPLICAOF", new.host, str(new.port))
            self.step("drain.demoted", f"REPLICAOF {new.host} {new.port} on {self.o.node}")
        except (redis.exceptions.RedisError, OSError) as exc:
            errors.append(f"REPLICAOF failed: {_first_line(exc)} (Sentinel will convert it)")
        pause_ms = self._unpause(c, undo, errors)
        self._persist(plan)
        self._wait_settled(new)
        if complete and not errors:
            msg = (
                f"drained: {self.o.node} is a replica of {new} with replica-priority 0; "
                f"writes were paused {pause_ms:.1f} ms"
                + _undrain_hint(self.o.group, self.o.node, plan.previous_priority)
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

    def _twice(self, c: redis.Redis, *args: str) -> None:
        """An undo command: on the quick client, then once more with the normal timeout."""
        try:
            _cmd(c, *args)
        except (redis.exceptions.RedisError, OSError):
            _cmd(self.redis.client(self.o.node), *args)

    def _wait_settled(self, new: Address) -> None:
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
                and any(r.address == self.o.node and r.priority == 0 for r in a.replicas)
            )

        self._wait_sentinels(
            settled,
            f"name {new}, failover finished, {self.o.node} a replica with priority 0",
        )

    def _wait_sentinels(self, ok: Callable[[SentinelAnswer], bool], what: str) -> None:
        """Poll every Sentinel until a majority satisfies ``ok`` (bounded; warns on timeout).

        Sentinel reads a replica's priority from its ``INFO``, every 10 s, so
        a priority change takes up to that long to count for Sentinel.
        """
        need = len(self.o.sentinels) // 2 + 1
        deadline = time.monotonic() + self.o.settle_timeout_s
        agree = 0
        while time.monotonic() < deadline:
            answers = [self.redis.ask_sentinel(s, self.o.group) for s in self.o.sentinels]
            agree = sum(1 for a in answers if ok(a))
            if agree >= need:
                self.step("drain.sentinels_agree", f"{agree}/{len(self.o.sentinels)} {what}")
                return
            time.sleep(0.2)
        self.step.say(
            f"warning: after {self.o.settle_timeout_s:.0f} s only {agree} of "
            f"{len(self.o.sentinels)} Sentinels {what}; check the Sentinels"
        )

    def _wait_priority_seen(self, priority: int) -> None:
        node = self.o.node

        def sees(a: SentinelAnswer) -> bool:
            return any(
                r.address == node and (r.priority == 0) == (priority == 0) for r in a.replicas
            )

        self._wait_sentinels(sees, f"see replica-priority {priority} on {node}")

    def _unpause(self, c: redis.Redis, undo: _Undo, errors: list[str]) -> float | None:
        if undo.paused_at is None:
            return None
        try:
            self._twice(c, "CLIENT", "UNPAUSE")
        except (redis.exceptions.RedisError, OSError) as exc:
            errors.append(
                f"CLIENT UNPAUSE failed ({_first_line(exc)}); Redis lifts the pause by itself "
                f"{self.o.budget.pause_ms} ms after it began"
            )
            return None
        pause_ms = round((time.monotonic() - undo.paused_at) * 1000, 1)
        self.step("drain.unpaused", f"writes were paused {pause_ms:.1f} ms", pause_ms=pause_ms)
        undo.paused_at = None
        return pause_ms

    def _undo(self, plan: Plan, undo: _Undo, c: redis.Redis, why: str) -> DrainResult:
        """Nothing was promoted: unpause, restore the priority, the old primary serves on."""
        self.step("drain.aborting", why)
        errors: list[str] = []
        pause_ms = self._unpause(c, undo, errors)
        if undo.priority_set:
            try:
                self._twice(c, "CONFIG", "SET", "replica-priority", str(undo.previous_priority))
                self.step(
                    "drain.restored",
                    f"replica-priority 0 -> {undo.previous_priority} on {self.o.node}",
                )
            except (redis.exceptions.RedisError, OSError) as exc:
                errors.append(
                    f"could not restore replica-priority {undo.previous_priority}: "
                    f"{_first_line(exc)} (run sentinel-xds undrain)"
                )
        role = self.redis.role(self.o.node)
        warn = ""
        if undo.failover_ambiguous:
            warn = (
                " WARNING: a SENTINEL FAILOVER request timed out and may still be acted on; "
                "watch `sentinel-xds status` and the Sentinel logs."
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
            answers = [self.redis.ask_sentinel(s, self.o.group) for s in self.o.sentinels]
            me = self.redis.ask_node(self.o.node)
            plan = plan_undrain(
                self.o.group, self.o.node, answers, len(self.o.sentinels), me, self.o.priority
            )
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
                self.redis.client(self.o.node).config_set("replica-priority", self.o.priority)
            except (redis.exceptions.RedisError, OSError) as exc:
                msg = f"CONFIG SET replica-priority on {self.o.node} failed: {_first_line(exc)}"
                self.step.say(f"undrain failed: {msg}")
                return DrainResult(EXIT_FAILED, "failed", msg)
            self.step("drain.unmarked", f"replica-priority 0 -> {self.o.priority} on {self.o.node}")
            self._persist(plan)
            if plan.node != plan.primary:
                self._wait_priority_seen(self.o.priority)
            msg = f"undrained: Sentinel may promote {self.o.node} again"
            self.step.say(msg)
            return DrainResult(EXIT_OK, "undrained", msg, steps=self.step.done)
        except DrainRefusedError as exc:
            self.step.say(f"undrain refused: {exc}")
            return DrainResult(exc.exit_code, "refused", str(exc))
        finally:
            self.redis.close()


def _undrain_hint(group: str, node: Address, previous: int | None) -> str:
    """Where the previous priority is not Redis' default, say how to get it back."""
    if previous in (None, 0, DEFAULT_PRIORITY):
        return ""
    return (
        f" (it had replica-priority {previous}: sentinel-xds undrain {group} {node} "
        f"--priority {previous})"
    )


def run_drain(
    options: DrainOptions, out: TextIO | None = None, progress: Progress | None = None
) -> DrainResult:
    """Drain ``options.node`` (see the module docstring); never raises for Redis trouble."""
    return Drainer(options, out, progress).drain()


def run_undrain(
    options: DrainOptions, out: TextIO | None = None, progress: Progress | None = None
) -> DrainResult:
    """Give ``options.node`` its replica-priority back (idempotent)."""
    return Drainer(options, out, progress).undrain()
