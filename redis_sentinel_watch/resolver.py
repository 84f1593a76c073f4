"""Host names to IP addresses, for every address that leaves the I/O seam.

With ``announce-hostnames yes`` Sentinel reports names instead of IPs, but
Envoy's EDS endpoints must be IP addresses, and two Sentinels naming the same
node differently must still agree; so :mod:`.watch_commands` and
:mod:`.drain_commands` resolve what they return.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import socket
import time

from .errors import ReplyError
from .model import Address, GroupView, ReplicaEntry
from .replies import SentinelEvent

__all__ = ["HostResolver"]


class HostResolver:
    """Turns host names into IP addresses, caching each answer for ``ttl_s``.

    With ``announce-hostnames yes`` Sentinel reports names instead of IPs, but
    Envoy's EDS endpoints must be IP addresses, and two Sentinels naming the
    same node differently must still agree. So every address leaves this
    module resolved; IP literals pass through untouched.
    """

    def __init__(self, ttl_s: float = 1.0) -> None:
        self._ttl = ttl_s
        self._cache: dict[str, tuple[float, str]] = {}

    async def resolve(self, addr: Address) -> Address:
        """``addr`` with its host resolved; :class:`ReplyError` if the name does not resolve."""
        try:
            ipaddress.ip_address(addr.host)
        except ValueError:
            pass
        else:
            return addr
        now = time.monotonic()
        cached = self._cache.get(addr.host)
        if cached is not None and now - cached[0] < self._ttl:
            return Address(cached[1], addr.port)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                addr.host, addr.port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            raise ReplyError(f"cannot resolve host {addr.host!r}: {exc.strerror or exc}") from exc
        if not infos:
            raise ReplyError(f"cannot resolve host {addr.host!r}: no address")
        # Prefer IPv4: Debian's /etc/hosts maps "localhost" to ::1 as well, and Redis
        # usually listens on IPv4 only; an IPv6-only name still resolves.
        v4 = [i for i in infos if i[0] == socket.AF_INET]
        ip = str((v4 or infos)[0][4][0])
        self._cache[addr.host] = (now, ip)
        return Address(ip, addr.port)

    async def view(self, view: GroupView) -> GroupView:
        """A :class:`GroupView` with every address resolved."""
        return dataclasses.replace(
            view,
            primary=await self.resolve(view.primary),
            replicas=tuple(sorted([await self.resolve(r) for r in view.replicas])),
            drained=tuple(sorted([await self.resolve(r) for r in view.drained])),
            promoted=await self.resolve(view.promoted) if view.promoted else None,
            replica_entries=tuple([await self.entry(e) for e in view.replica_entries]),
        )

    async def entry(self, entry: ReplicaEntry) -> ReplicaEntry:
        """A ``SENTINEL REPLICAS`` entry with its address resolved."""
        return dataclasses.replace(entry, address=await self.resolve(entry.address))

    async def event(self, event: SentinelEvent) -> SentinelEvent:
        """An event with its addresses resolved where possible (left as given otherwise)."""
        return dataclasses.replace(
            event,
            instance=await self._maybe(event.instance),
            master=await self._maybe(event.master),
        )

    async def _maybe(self, addr: Address | None) -> Address | None:
        if addr is None:
            return None
        try:
            return await self.resolve(addr)
        except ReplyError:
            return addr
