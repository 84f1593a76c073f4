"""Drain notices: "a drain of NODE in GROUP is under way", as told by ``sentinel-xds drain``.

The control plane cannot tell a planned ``SENTINEL FAILOVER`` from an
unplanned one by looking at Sentinel, so the drain tool says so on the admin
API just before it asks Sentinel. A notice only labels the next failover away
from that node (``trigger=drain`` in ``/events`` and
``sentinel_xds_failovers_total``); it changes no routing.

Because the label decides whether an alert on unplanned failovers fires, a
notice must not outlive the drain that sent it, nor be planted for a node
that does not exist:

- only a node the group has (its current primary or a known replica, per the
  latest topology) is accepted (:meth:`DrainNotices.note` returns the reason
  otherwise). Nodes are compared by the one endpoint-identity rule
  (:meth:`~redis_sentinel_watch.model.Address.same_endpoint`), so the drain
  tool's ``localhost:6380`` is Sentinel's ``127.0.0.1:6380``, both when the
  notice is accepted and when a failover away from the node is matched;
- at most one notice per configured group is kept (the newest wins), so the
  memory they take is bounded by the config, whatever clients send;
- a notice expires after ``min(ttl_s, MAX_NOTICE_TTL_S)`` seconds. 60 s is the
  longest a drain can keep writes paused (``--pause-ms`` is capped at 60,000),
  and the switch a drain causes happens inside that pause, so a notice older
  than that describes no drain in progress. A failover after it is recorded
  as unplanned.

Time comes from an injectable clock, so expiry is tested without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from redis_sentinel_watch import Address
from xds.ads.loglimit import LogLimiter

__all__ = ["MAX_NOTICE_TTL_S", "MIN_NOTICE_TTL_S", "DrainNotices", "Notice"]

log = structlog.get_logger("xds.timeline")

#: the longest a notice lives, whatever ``ttl_s`` the client asked for (see above)
MAX_NOTICE_TTL_S = 60.0
MIN_NOTICE_TTL_S = 1.0


@dataclass(frozen=True)
class Notice:
    node: Address
    until: float  # clock() value at which it expires


class DrainNotices:
    """At most one live notice per group; expired ones never label a failover."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._by_group: dict[str, Notice] = {}
        self._refusals = LogLimiter(clock=clock)

    def __len__(self) -> int:
        return len(self._by_group)

    def note(
        self, group: str, node: Address, ttl_s: float, known: tuple[Address, ...]
    ) -> str | None:
        """Record a notice for ``node``, one of ``known`` (the group's primary and replicas).

        Returns None when accepted, else why not (the caller answers 4xx with it);
        a refused notice leaves any earlier one of the group in place.
        """
        matched = next((k for k in known if k.same_endpoint(node)), None)
        if matched is None:
            skipped = self._refusals.allow(group)
            if skipped is not None:  # clients decide how many: rate-limited
                log.warning(
                    "drain.notice_refused",
                    group=group,
                    node=str(node),
                    why="unknown node",
                    skipped=skipped,
                )
            return f"node: {node} is not the primary or a known replica of group {group!r}"
        ttl = min(max(ttl_s, MIN_NOTICE_TTL_S), MAX_NOTICE_TTL_S)
        replaced = self._by_group.get(group)
        self._by_group[group] = Notice(matched, self._clock() + ttl)  # the group's spelling
        log.info(
            "drain.notice",
            group=group,
            node=str(node),
            ttl_s=ttl,
            replaced=str(replaced.node) if replaced is not None else None,
        )
        return None

    def take(self, group: str, old: Address | None) -> bool:
        """True (once) if a live notice covers a failover of ``group`` away from ``old``.

        A notice for another node of the group stays until it expires; an
        expired one is dropped and logged (``drain.notice_expired``), so the
        on-call engineer sees why a failover they expected to be planned is not.
        """
        notice = self._by_group.get(group)
        if notice is None or old is None or not notice.node.same_endpoint(old):
            return False
        del self._by_group[group]
        late_s = self._clock() - notice.until
        if late_s >= 0:
            log.warning(
                "drain.notice_expired", group=group, node=str(old), expired_s_ago=round(late_s, 1)
            )
            return False
        return True
