"""The write fence: pause writes on the primary being replaced, and lift the pause.

When the failover leader selects a replica, writes still acknowledged by the
old primary until Sentinel converts it are thrown away with its data.
``CLIENT PAUSE <ms> WRITE`` on it closes that window. The pause is capped at
half the group's ``down-after-milliseconds``: a paused primary holds the
Sentinels' hello ``PUBLISH`` and with it their ``PING`` on the same link, so a
longer pause would make them think it is down (``docs/sentinel.md``). When
the watcher sees the failover given up it lifts the pause at once (Redis
would lift it by itself when the time runs out). The watcher decides *when*;
this module is *what* is sent and logged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import structlog

from .agreement import Promotion
from .model import Address

if TYPE_CHECKING:
    from .io import SentinelIO

__all__ = ["fence", "fence_pause_ms", "unfence"]

log = structlog.get_logger("redis_sentinel_watch")


def fence_pause_ms(configured_ms: int, down_after_ms: Sequence[int]) -> int:
    """``configured_ms``, capped at half the Sentinels' down-after-milliseconds (if known)."""
    return min(configured_ms, min(down_after_ms) // 2) if down_after_ms else configured_ms


async def fence(io: SentinelIO, promotion: Promotion, pause_ms: int) -> None:
    """Pause writes on the primary being replaced so none is acknowledged and lost."""
    error = await io.pause_writes(promotion.replacing, pause_ms)
    if error:
        log.info(
            "fence.failed",
            group=promotion.group,
            node=str(promotion.replacing),
            error=error,
            hint="expected when the old primary is dead",
        )
    else:
        log.info(
            "fence.paused",
            group=promotion.group,
            node=str(promotion.replacing),
            pause_ms=pause_ms,
        )


async def unfence(io: SentinelIO, group: str, node: Address) -> None:
    """Lift the pause of a failover that was given up."""
    error = await io.unpause_writes(node)
    log.info("fence.released", group=group, node=str(node), error=error or None)
