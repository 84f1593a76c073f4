"""Parse Sentinel replies and pub/sub payloads exactly as ``sentinel.c`` emits them.

Kept pure (bytes/str in, values out) so that odd or hostile replies can be
tested without a server. Anything malformed raises :class:`ReplyError` naming
the field; the caller drops that group from that Sentinel's answer with one
warning and keeps the last good topology.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .errors import ReplyError
from .model import Address, AddressError, GroupView

__all__ = [
    "SentinelEvent",
    "drained_replicas",
    "pairs_to_dict",
    "parse_event",
    "parse_master",
    "parse_replicas",
    "parse_sentinels",
    "promoted_replica",
]


def pairs_to_dict(reply: object, what: str) -> dict[str, str]:
    """Turn a RESP2 flat ``[k1, v1, k2, v2, …]`` list (or a RESP3 map) into a dict."""
    if isinstance(reply, Mapping):
        return {str(k): str(v) for k, v in reply.items()}
    if not isinstance(reply, list | tuple) or len(reply) % 2:
        raise ReplyError(f"{what}: expected a flat key/value list, got {type(reply).__name__}")
    return {str(reply[i]): str(reply[i + 1]) for i in range(0, len(reply), 2)}


def _address(fields: Mapping[str, str], what: str) -> Address:
    ip, port = fields.get("ip"), fields.get("port")
    if not ip:
        raise ReplyError(f"{what}: missing field 'ip'")
    if port is None or not port.isdigit():
        raise ReplyError(f"{what}: field 'port' is {port!r}, not a number")
    try:
        return Address(ip, int(port))
    except AddressError as exc:
        raise ReplyError(f"{what}: {exc}") from exc


def _int_field(fields: Mapping[str, str], key: str, what: str) -> int:
    raw = fields.get(key)
    if raw is None or not raw.lstrip("-").isdigit():
        raise ReplyError(f"{what}: field {key!r} is {raw!r}, not an integer")
    return int(raw)


def parse_master(entry: object, replicas: Sequence[Address] = ()) -> GroupView:
    """One entry of ``SENTINEL MASTERS`` (or the reply of ``SENTINEL MASTER name``)."""
    fields = pairs_to_dict(entry, "SENTINEL MASTERS entry")
    name = fields.get("name")
    if not name:
        raise ReplyError("SENTINEL MASTERS entry: missing field 'name'")
    what = f"SENTINEL MASTERS {name}"
    flags = set(fields.get("flags", "").split(","))
    if "master" not in flags:
        raise ReplyError(f"{what}: flags {fields.get('flags')!r} do not include 'master'")
    return GroupView(
        group=name,
        primary=_address(fields, what),
        config_epoch=_int_field(fields, "config-epoch", what),
        replicas=tuple(replicas),
        primary_down=bool(flags & {"s_down", "o_down"}),
        failover_in_progress="failover_in_progress" in flags,
        failover_timeout_ms=_optional_int(fields, "failover-timeout"),
        down_after_ms=_optional_int(fields, "down-after-milliseconds"),
    )


def _optional_int(fields: Mapping[str, str], key: str) -> int:
    """A non-negative integer field that older Sentinels may omit (0 when absent or odd)."""
    raw = fields.get(key, "")
    return int(raw) if raw.isdigit() else 0


def parse_replicas(reply: object, group: str) -> tuple[Address, ...]:
    """``SENTINEL REPLICAS group``: the replicas Sentinel considers usable.

    Replicas flagged down or disconnected are left out: they cannot be promoted
    and should not be shown as healthy.
    """
    what = f"SENTINEL REPLICAS {group}"
    if not isinstance(reply, list | tuple):
        raise ReplyError(f"{what}: expected a list, got {type(reply).__name__}")
    out: list[Address] = []
    for entry in reply:
        fields = pairs_to_dict(entry, what)
        flags = set(fields.get("flags", "").split(","))
        if flags & {"s_down", "o_down", "disconnected"}:
            continue
        out.append(_address(fields, what))
    return tuple(sorted(out))


def drained_replicas(reply: object, group: str) -> tuple[Address, ...]:
    """Replicas in ``SENTINEL REPLICAS group`` whose ``slave-priority`` is 0.

    ``sentinel-xds drain`` marks a node that way (the mark lives in Redis, so
    every control-plane replica sees it); Sentinel never promotes such a node.
    """
    what = f"SENTINEL REPLICAS {group}"
    if not isinstance(reply, list | tuple):
        raise ReplyError(f"{what}: expected a list, got {type(reply).__name__}")
    out: list[Address] = []
    for entry in reply:
        fields = pairs_to_dict(entry, what)
        if fields.get("slave-priority", fields.get("replica-priority")) == "0":
            out.append(_address(fields, what))
    return tuple(sorted(out))


def parse_sentinels(reply: object, group: str) -> tuple[Address, ...]:
    """``SENTINEL SENTINELS group``: the *other* Sentinels the asked one has heard from."""
    what = f"SENTINEL SENTINELS {group}"
    if not isinstance(reply, list | tuple):
        raise ReplyError(f"{what}: expected a list, got {type(reply).__name__}")
    return tuple(sorted(_address(pairs_to_dict(entry, what), what) for entry in reply))


def promoted_replica(reply: object, group: str) -> Address | None:
    """The replica flagged ``promoted`` in ``SENTINEL REPLICAS group``, if any.

    Only the Sentinel leading a failover sets that flag, on the replica it
    selected (``sentinelFailoverSelectSlave``); it is cleared when the failover
    ends or aborts. Knowing it from a poll lets the watcher start probing the
    candidate even when the ``+selected-slave`` message was lost.
    """
    what = f"SENTINEL REPLICAS {group}"
    if not isinstance(reply, list | tuple):
        raise ReplyError(f"{what}: expected a list, got {type(reply).__name__}")
    for entry in reply:
        fields = pairs_to_dict(entry, what)
        if "promoted" in fields.get("flags", "").split(","):
            return _address(fields, what)
    return None


@dataclass(frozen=True)
class SentinelEvent:
    """One pub/sub message from a Sentinel (``+switch-master``, ``+sdown`` …).

    ``group`` is the master group the event is about, when the payload names one;
    ``instance`` the Redis instance it is about (for ``+switch-master``, the new
    primary); ``master`` the primary of the group as the emitting Sentinel knew
    it (after ``@`` in the payload; for ``+switch-master``, the old primary).
    """

    sentinel: Address
    channel: str
    payload: str
    group: str | None = None
    instance: Address | None = None
    master: Address | None = None


def parse_event(sentinel: Address, channel: str, payload: str) -> SentinelEvent:
    """Parse a Sentinel event payload.

    Two shapes exist in ``sentinel.c``:

    * ``+switch-master``: ``<name> <old-ip> <old-port> <new-ip> <new-port>``;
    * instance events: ``<type> <name> <ip> <port> @ <master-name> <master-ip> <master-port>``
      (the ``@ …`` part is absent when the instance is the master itself).
    ``+new-epoch`` and ``+tilt``-style events carry no group. Unparseable payloads
    still yield an event (a trigger to poll), just without ``group``.
    """
    parts = payload.split()
    group: str | None = None
    instance: Address | None = None
    master: Address | None = None
    if channel == "+switch-master" and len(parts) >= 5:
        group = parts[0]
        master = _event_address(parts[1], parts[2])
        instance = _event_address(parts[3], parts[4])
    elif "@" in parts:
        at = parts.index("@")
        group = parts[at + 1] if len(parts) > at + 1 else None
        if at >= 4:
            instance = _event_address(parts[2], parts[3])
        if len(parts) >= at + 4:
            master = _event_address(parts[at + 2], parts[at + 3])
    elif len(parts) >= 4 and parts[0] == "master":
        group = parts[1]
        instance = master = _event_address(parts[2], parts[3])
    return SentinelEvent(sentinel, channel, payload, group, instance, master)


def _event_address(host: str, port: str) -> Address | None:
    """``host port`` from a payload, or None when they do not form an address."""
    if not port.isdigit():
        return None
    try:
        return Address(host, int(port))
    except AddressError:
        return None
