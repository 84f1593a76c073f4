"""``sentinel-xds drain`` against real Redis, Sentinels, the control plane and Envoy.

What an operator must be able to rely on, observed from outside: a client
writing through the sidecar every 10 ms keeps its one connection, gets at most
one error, and every write it was told OK about is on the new primary; Envoy
routes to the new primary; the old node is a replica that Sentinel will not
promote (``replica-priority 0``, persisted in its config file). A drain that
fails midway leaves the old primary serving writes, unpaused, as it was.
"""

from __future__ import annotations

import io
import itertools
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from redis_sentinel_watch import Address
from tests.integration.conftest import GROUP, Stack, start_stack
from tests.integration.writer import Writer
from tests.resp import OneConnection
from xds.lab import RedisNode, wait_until
from xds.ops.admin_client import AdminClient
from xds.ops.cli import main
from xds.ops.drain import DrainOptions, run_drain
from xds.ops.drain_output import PROGRESS_INTERVAL_S, DrainResult
from xds.ops.drain_plan import Budget

pytestmark = pytest.mark.integration


def options(stack: Stack, node: Address, pause_ms: int = 5000) -> DrainOptions:
    return DrainOptions(
        group=GROUP,
        node=node,
        sentinels=tuple(stack.cluster.sentinel_addresses),
        admins=(f"http://{stack.control_plane.admin}",),
        budget=Budget(pause_ms=pause_ms, margin_ms=max(200, pause_ms // 10)),
    )


def cli_args(stack: Stack, command: str, node: Address) -> list[str]:
    args = [command, GROUP, str(node), "--admin", str(stack.control_plane.admin)]
    for s in stack.cluster.sentinel_addresses:
        args += ["--sentinel", str(s)]
    return args


#: a progress line is due PROGRESS_INTERVAL_S after the last one, on the next poll: up
#: to one poll later (the Sentinel wait sleeps 0.2 s, then asks three Sentinels)
LATE_S = 0.6


def human_records(text: str) -> list[tuple[float, str]]:
    """(ms, event) of every ``+<ms> ms  <event>  <detail>`` line of a human drain output."""
    found = re.findall(r"^\+\s*([0-9.]+) ms  (\S+)", text, flags=re.MULTILINE)
    return [(float(ms), event) for ms, event in found]


def wait_gaps(records: list[tuple[float, str]]) -> list[float]:
    """Seconds between consecutive lines while a wait lasts: from its ``drain.wait_started``
    through its ``drain.waiting`` lines to the line that ends it. Every wait must be there."""
    gaps = []
    for (prev_ms, prev_event), (ms, event) in itertools.pairwise(records):
        in_wait = prev_event in ("drain.wait_started", "drain.waiting")
        assert in_wait or event != "drain.waiting", f"progress outside a wait at {ms} ms"
        if in_wait:
            gaps.append((ms - prev_ms) / 1000)
    return gaps


def human_wait_gaps(text: str, waits: int) -> list[float]:
    """A human drain output: ``waits`` waits, each saying what it waits for, none
    silent for more than ~1 s; the summary line stays the last one."""
    shown = human_records(text)
    assert [e for _, e in shown].count("drain.wait_started") == waits, text
    gaps = wait_gaps(shown)
    assert max(gaps) <= PROGRESS_INTERVAL_S + LATE_S, text
    assert text.splitlines()[-1].startswith("drained: "), text
    return gaps


def json_wait_gaps(printed: str, outcome: str) -> list[float]:
    """``undrain --json``: one object per line, progress at least every ~1 s saying what
    it waits for and what it sees, the last line the result with the exit code."""
    records: list[dict[str, Any]] = [json.loads(line) for line in printed.splitlines()]
    assert records[-1]["event"] == "drain.result", printed
    assert (records[-1]["exit_code"], records[-1]["outcome"]) == (0, outcome)
    (started,) = [r for r in records if r["event"] == "drain.wait_started"]
    assert "Sentinel majority (2 of 3) to see replica-priority 100" in started["what"]
    progress = [r for r in records if r["event"] == "drain.waiting"]
    assert all(r["what"] == started["what"] and "of 3 so far" in r["seen"] for r in progress)
    gaps = wait_gaps([(r["ms"], r["event"]) for r in records])
    assert max(gaps) <= PROGRESS_INTERVAL_S + LATE_S, printed
    return gaps


def priority(node: RedisNode) -> int:
    with node.client() as c:
        return int(c.config_get("replica-priority")["replica-priority"])


def missing_on(node: RedisNode, keys: list[str]) -> list[str]:
    with node.client() as c:
        pipe = c.pipeline(transaction=False)
        for k in keys:
            pipe.exists(k)
        return [k for k, present in zip(keys, pipe.execute(), strict=True) if not present]


def test_drain_primary_loses_no_write_then_is_idempotent_and_undrains(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    """Drain the primary under a 10 ms writer: 0 acknowledged writes lost, at most 1 failed
    command, the client's connection kept, Envoy on the new primary, the old node a replica
    with replica-priority 0 in its config file; the control plane's timeline says drain;
    a second drain says already drained (exit 0); undrain restores priority 100, twice."""
    old = stack.primary_address()
    old_node = stack.cluster.node(old)
    writer = Writer("127.0.0.1", stack.listen.port).start()
    wait_until(lambda: len(writer.result.acked) >= 30, 10, what="writes before the drain")

    out = io.StringIO()
    result = run_drain(options(stack, old), out=out)
    assert result.exit_code == 0, out.getvalue()
    assert result.outcome == "switched"
    drain_gaps = human_wait_gaps(out.getvalue(), waits=4)
    new = result.new_primary
    assert new is not None and new != old

    before = len(writer.result.acked)
    wait_until(lambda: writer.acked_since(before) >= 30, 10, what="writes after the drain")
    written = writer.stop()

    assert written.connection_lost is None, "the client's connection to the sidecar was closed"
    assert len(written.errors) <= 1, written.errors
    assert missing_on(stack.cluster.node(new), written.acked) == []
    assert stack.envoy_hosts() == [new]
    assert old_node.role() == "slave"
    assert old_node.info("replication")["master_port"] == str(new.port)
    assert priority(old_node) == 0
    assert "replica-priority 0" in old_node.conf_path.read_text()
    steps = [s["event"] for s in result.steps]
    assert steps.index("drain.paused") < steps.index("drain.failover_sent")
    assert steps.index("drain.demoted") < steps.index("drain.unpaused")
    assert result.pause_ms is not None and result.pause_ms < 5000
    print(f"\ndrain write pause {result.pause_ms} ms, client errors {written.errors}")

    admin = AdminClient(f"http://{stack.control_plane.admin}")
    failovers = wait_until(lambda: admin.events(5), 35, what="failover.completed on /events")
    assert [(f.old, f.new, f.trigger) for f in failovers] == [(str(old), str(new), "drain")]
    assert (failovers[0].acked, failovers[0].sidecars) == (1, 1)

    def drained_in_status() -> bool:
        (group,) = stack.control_plane.status().groups
        return str(old) in group.drained

    wait_until(drained_in_status, 15, what="the drained node marked drained in /status")
    capsys.readouterr()
    # the only replica is drained, so status exits 1 ("no promotable replica"): by design
    assert main(["status", "--admin", f"http://{stack.control_plane.admin}"]) == 1
    shown = capsys.readouterr().out
    assert f"{old} (drained)" in shown and "no promotable replica" in shown

    assert main(cli_args(stack, "drain", old)) == 0
    assert "already drained" in capsys.readouterr().out
    # undrain waits up to 10 s for Sentinel to read the priority
    assert main([*cli_args(stack, "undrain", old), "--json"]) == 0
    undrain_gaps = json_wait_gaps(capsys.readouterr().out, "undrained")
    with capsys.disabled():
        print(
            f"\nundrain waited {sum(undrain_gaps):.1f} s, {len(undrain_gaps)} lines, longest "
            f"silence {max(undrain_gaps):.2f} s (drain: {max(drain_gaps):.2f} s)"
        )
    assert priority(old_node) == 100
    assert main(cli_args(stack, "undrain", old)) == 0
    assert "not drained" in capsys.readouterr().out


def writes_flow(listen: Address, within: float) -> float:
    """Seconds a fresh client through the sidecar needs for one SET (fails past ``within``)."""
    started = time.monotonic()
    conn = OneConnection(listen.host, listen.port, timeout=within)
    try:
        assert conn.command("SET", "after-abort", "1") == "OK"
    finally:
        conn.close()
    return time.monotonic() - started


def test_drain_aborted_midway_leaves_old_primary_serving_unpaused(tmp_path: Path) -> None:
    """Two failures after writes were paused, both undone: (1) the replica stalls so its
    offset never catches up (a timeout); (2) every Sentinel dies before SENTINEL FAILOVER.
    Each time: exit 1, the old primary is still master and still the primary in Envoy,
    replica-priority is back to 100, writes flow at once (long before the pause budget
    would have run out), and the writer lost nothing."""
    stack = start_stack(tmp_path)
    try:
        old = stack.primary_address()
        old_node = stack.cluster.node(old)
        replica = stack.cluster.replicas[GROUP][0]
        writer = Writer("127.0.0.1", stack.listen.port).start()
        wait_until(lambda: len(writer.result.acked) >= 20, 10, what="writes before the drain")

        # (1) a timeout: the replica freezes right after the pause begins
        def freeze_replica(event: str) -> None:
            if event == "drain.paused":
                replica.pause()

        out = io.StringIO()
        try:
            result: DrainResult = run_drain(
                options(stack, old, pause_ms=1500), out=out, progress=freeze_replica
            )
        finally:
            replica.resume()
        assert result.exit_code == 1, out.getvalue()
        assert result.outcome == "aborted"
        assert "did not reach the primary's offset" in result.message
        assert old_node.role() == "master"
        assert priority(old_node) == 100
        assert stack.envoy_hosts() == [old]
        replica.wait_replica_synced(timeout=15)

        # (2) Sentinels unreachable: all die once the replica has caught up
        def kill_sentinels(event: str) -> None:
            if event == "drain.replicas_synced":
                for s in stack.cluster.sentinels:
                    s.kill()

        budget_ms = 10_000
        out = io.StringIO()
        result = run_drain(
            options(stack, old, pause_ms=budget_ms), out=out, progress=kill_sentinels
        )
        returned = time.monotonic()
        assert result.exit_code == 1, out.getvalue()
        assert result.outcome == "aborted", out.getvalue()
        assert "no Sentinel took the failover" in result.message
        took = writes_flow(stack.listen, within=budget_ms / 1000 / 2)
        assert time.monotonic() - returned < budget_ms / 1000 / 2, "writes waited for the pause"
        print(f"\nwrite after abort took {took * 1000:.1f} ms; pause lasted {result.pause_ms} ms")
        assert old_node.role() == "master"
        assert priority(old_node) == 100
        before = len(writer.result.acked)
        wait_until(lambda: writer.acked_since(before) >= 20, 5, what="writes after the abort")
        written = writer.stop()
        assert written.connection_lost is None
        assert written.errors == []
        assert missing_on(old_node, written.acked) == []
    finally:
        stack.envoy.stop()
        stack.control_plane.stop()
        stack.cluster.stop()
