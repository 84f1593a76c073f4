"""The empty-replica trap against real processes: Redis 7, three Sentinels, the control plane.

Sentinel promotes a replica that has just restarted and not yet synced as
readily as a synced one; the control plane must say so before anyone fails
over. The replica is killed (Sentinel flags it ``disconnected``), then
restarted into a full sync made slow on purpose (20,000 keys on the primary,
``rdb-key-save-delay``), during which Sentinel lists it as a healthy ``slave``
with ``master-link-status:ok`` until its next INFO of the replica (up to 10 s).
Throughout, ``sentinel_xds_group_promotable_replicas`` is 0 and ``status``
exits 1 naming the problem; once the replica is synced the gauge is back to 1.
"""

from __future__ import annotations

import pytest

from tests.integration.conftest import GROUP, Stack
from tests.integration.test_status_metrics import scrape
from xds.lab import wait_until
from xds.ops.admin_client import AdminClient
from xds.ops.cli import main

pytestmark = pytest.mark.integration

KEYS = 20_000
#: µs the primary waits per key while it streams the RDB: ~10 s of full sync for KEYS
SAVE_DELAY_US = 500


def promotable(stack: Stack) -> float | None:
    """``sentinel_xds_group_promotable_replicas{group=GROUP}`` as Prometheus parses it."""
    return scrape(stack.control_plane.admin).get(
        ("sentinel_xds_group_promotable_replicas", (("group", GROUP),))
    )


def status(stack: Stack, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["status", "--admin", str(stack.control_plane.admin)])
    out = capsys.readouterr().out
    with capsys.disabled():
        print(out)
    return code, out


def replica_sync(stack: Stack) -> str | None:
    group = AdminClient(f"http://{stack.control_plane.admin}").status().group(GROUP)
    if group is None or not group.replica_sync:
        return None
    return group.replica_sync[0].sync.value


def test_unsynced_replica_is_not_promotable_until_it_has_synced(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    primary = stack.cluster.primaries[GROUP]
    replica = stack.cluster.replicas[GROUP][0]
    wait_until(lambda: promotable(stack) == 1, 20, what="the synced replica to count")
    code, out = status(stack, capsys)
    assert code == 0 and f"{GROUP}  {replica.address}  synced" in out

    with primary.client() as c:  # replicated writes, more than the 1 MB backlog
        pipe = c.pipeline(transaction=False)
        for i in range(KEYS):
            pipe.set(f"trap:{i}", "x" * 100)
        pipe.execute()
        c.execute_command("CONFIG", "SET", "rdb-key-save-delay", str(SAVE_DELAY_US))
    try:
        replica.kill()
        wait_until(lambda: promotable(stack) == 0, 10, what="the gauge to drop to 0")
        code, out = status(stack, capsys)
        assert code == 1
        assert f"group {GROUP} has no" in out  # promotable (down) or synced (cannot ask it)

        replica.restart()
        wait_until(
            lambda: replica.info("replication").get("master_sync_in_progress") == "1",
            10,
            what="the restarted replica to start its full sync",
        )
        wait_until(lambda: replica_sync(stack) == "unsynced", 10, what="status to say unsynced")
        assert promotable(stack) == 0
        code, out = status(stack, capsys)
        assert code == 1
        assert (
            f"group {GROUP} has no synced replica: a failover now would lose data "
            f"({replica.address} unsynced: "
        ) in out
        # the trap itself: meanwhile Sentinel (still) calls the replica healthy
        entry = next(
            e
            for e in stack.cluster.sentinels[0].known_replicas(GROUP)
            if e.get("port") == str(replica.address.port)
        )
        with capsys.disabled():
            print(
                "Sentinel's entry during the sync:",
                {k: entry.get(k) for k in ("flags", "master-link-status")},
            )
    finally:
        with primary.client() as c:
            c.execute_command("CONFIG", "SET", "rdb-key-save-delay", "0")

    wait_until(lambda: promotable(stack) == 1, 60, what="the gauge back to 1 once synced")
    with replica.client() as c:
        assert c.execute_command("DBSIZE") >= KEYS
    code, out = status(stack, capsys)
    assert code == 0 and f"{GROUP}  {replica.address}  synced" in out
