"""What the watcher says about each Sentinel: reachable or not, TILT, stale, unknown peers.

These are warnings for the operator, not inputs to any decision (that is
:mod:`.agreement`), and each must be logged once per change, not once per
poll: at a 50 ms fast-poll interval a Sentinel that stays down would
otherwise fill the log. The state needed to tell "changed" from "still so"
lives here, out of the watcher's loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from .model import Address, SentinelView, Topology

if TYPE_CHECKING:
    from .io import SentinelIO

__all__ = ["STALE_AFTER_POLLS", "SentinelNotes"]

log = structlog.get_logger("redis_sentinel_watch")

#: A Sentinel must lag behind the published epoch for this many consecutive
#: polls before it is reported stale (the non-leaders always lag for a moment
#: during a failover; that is not worth a warning).
STALE_AFTER_POLLS = 3


@dataclass(frozen=True)
class _SentinelState:
    """What was last logged about one Sentinel, so each change is logged once."""

    reachable: bool
    tilt: bool = False
    error: str | None = None


class SentinelNotes:
    """Logs each change of a Sentinel's state once (for the configured ``sentinels``
    and ``groups``)."""

    def __init__(self, sentinels: Sequence[Address], groups: Sequence[str]) -> None:
        self.sentinels = tuple(sentinels)
        self.groups = tuple(groups)
        self._state: dict[Address, _SentinelState] = {}
        self._stale_polls: dict[tuple[Address, str], int] = {}
        self._ignored_groups: set[str] = set()
        self._unknown_peers: dict[Address, frozenset[Address]] = {}

    @property
    def reachable(self) -> int:
        """How many Sentinels answered the last poll."""
        return sum(1 for st in self._state.values() if st.reachable)

    def note(self, views: Sequence[SentinelView]) -> list[Address]:
        """Log each Sentinel's state changes once (reachable, TILT, reply problems).

        Returns the Sentinels that became reachable: :meth:`check_peers` them.
        """
        reconnected: list[Address] = []
        for v in views:
            before = self._state.get(v.sentinel)
            now = _SentinelState(v.reachable, v.tilt, v.error)
            self._state[v.sentinel] = now
            if before == now:
                continue
            addr = str(v.sentinel)
            if before is None or before.reachable != v.reachable:
                if v.reachable:
                    log.info("sentinel.reachable", sentinel=addr, tilt=v.tilt)
                    reconnected.append(v.sentinel)
                else:
                    log.warning("sentinel.unreachable", sentinel=addr, error=v.error)
            if v.reachable and before is not None and before.reachable and before.tilt != v.tilt:
                if v.tilt:
                    log.warning("sentinel.tilt", sentinel=addr, hint="its vote is ignored")
                else:
                    log.info("sentinel.tilt_over", sentinel=addr)
            if v.reachable and v.error and (before is None or before.error != v.error):
                log.warning("sentinel.reply_ignored", sentinel=addr, error=v.error)
        for v in views:
            for name in v.groups:
                if name not in self.groups and name not in self._ignored_groups:
                    self._ignored_groups.add(name)
                    log.warning(
                        "sentinel.group_ignored",
                        group=name,
                        sentinel=str(v.sentinel),
                        hint="group is monitored by Sentinel but not in the config",
                    )
        return reconnected

    async def check_peers(self, io: SentinelIO, sentinel: Address) -> None:
        """On (re)connecting, compare the Sentinels it knows with the configured ones.

        The majority is counted over *configured* Sentinels; if the Sentinels
        know more of each other than the config lists, that majority is not
        theirs, and a minority of them could look like a majority to us.
        """
        configured = set(self.sentinels)
        unknown: set[Address] = set()
        for group in self.groups:
            peers = await io.peers(sentinel, group)
            if peers is not None:
                unknown |= set(peers) - configured
        if unknown and self._unknown_peers.get(sentinel) != frozenset(unknown):
            log.warning(
                "sentinel.peers_not_configured",
                sentinel=str(sentinel),
                peers=sorted(str(p) for p in unknown),
                hint="list every Sentinel in 'sentinels:' or the majority is miscounted",
            )
        self._unknown_peers[sentinel] = frozenset(unknown)

    def note_stale(self, views: Sequence[SentinelView], topology: Topology) -> None:
        """Log a Sentinel that keeps answering with an epoch older than the published one."""
        for v in views:
            for g in topology.groups:
                key = (v.sentinel, g.name)
                gv = v.groups.get(g.name) if v.reachable else None
                behind = (
                    gv is not None
                    and g.primary is not None
                    and gv.config_epoch < g.config_epoch
                    and gv.primary != g.primary
                )
                count = self._stale_polls.get(key, 0)
                if behind and gv is not None:
                    self._stale_polls[key] = count + 1
                    if count + 1 == STALE_AFTER_POLLS:
                        log.warning(
                            "sentinel.stale",
                            sentinel=str(v.sentinel),
                            group=g.name,
                            says=str(gv.primary),
                            epoch=gv.config_epoch,
                            published=str(g.primary),
                            published_epoch=g.config_epoch,
                        )
                elif count:
                    del self._stale_polls[key]
                    if count >= STALE_AFTER_POLLS:
                        log.info("sentinel.caught_up", sentinel=str(v.sentinel), group=g.name)
