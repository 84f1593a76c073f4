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
from .model import Address, AddressError, GroupView, ReplicaEntry

__all__ = [
    "MasterStatus",
    "ReplicationInfo",
    "SentinelEvent",
    "drained_replicas",
    "pairs_to_dict",
    "parse_config_int",
    "parse_event",
    "parse_info",
    "parse_master",
    "parse_master_status",
    "parse_replica_entries",
    "parse_replicas",
    "parse_replication",
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


def _entries(reply: object, what: str) -> list[dict[str, str]]:
    """A list reply whose entries are key/value lists (``SENTINEL REPLICAS`` …)."""
    if not isinstance(reply, list | tuple):
        raise ReplyError(f"{what}: expected a list, got {type(reply).__name__}")
    return [pairs_to_dict(entry, what) for entry in reply]


def _address(
    fields: Mapping[str, str], what: str, ip_key: str = "ip", port_key: str = "port"
) -> Address:
    ip, port = fields.get(ip_key), fields.get(port_key)
    if not ip:
        raise ReplyError(f"{what}: missing field {ip_key!r}")
    if port is None or not (port.isascii() and port.isdigit()):
        raise ReplyError(f"{what}: field {port_key!r} is {port!r}, not a number")
    try:
        return Address(ip, int(port))
    except AddressError as exc:
        raise ReplyError(f"{what}: {exc}") from exc


def _int_field(fields: Mapping[str, str], key: str, what: str) -> int:
    raw = fields.get(key)
    if raw is None or not (raw.isascii() and raw.removeprefix("-").isdigit()):
        raise ReplyError(f"{what}: field {key!r} is {raw!r}, not an integer")
    return int(raw)


@dataclass(frozen=True)
class MasterStatus:
    """``SENTINEL MASTER name`` with its flags kept whole (what ``drain`` decides from)."""

    group: str
    primary: Address
    config_epoch: int
    flags: frozenset[str]
    failover_timeout_ms: int = 0  # 0: not reported
    down_after_ms: int = 0  # 0: not reported


def parse_master_status(entry: object, what: str = "SENTINEL MASTERS entry") -> MasterStatus:
    """One entry of ``SENTINEL MASTERS``, or the reply of ``SENTINEL MASTER name``."""
    fields = pairs_to_dict(entry, what)
    name = fields.get("name")
    if not name:
        raise ReplyError(f"{what}: missing field 'name'")
    what = f"SENTINEL MASTERS {name}"
    flags = frozenset(fields.get("flags", "").split(","))
    if "master" not in flags:
        raise ReplyError(f"{what}: flags {fields.get('flags')!r} do not include 'master'")
    return MasterStatus(
        group=name,
        primary=_address(fields, what),
        config_epoch=_int_field(fields, "config-epoch", what),
        flags=flags,
        failover_timeout_ms=_optional_int(fields, "failover-timeout", what),
        down_after_ms=_optional_int(fields, "down-after-milliseconds", what),
    )


def parse_master(entry: object, replicas: Sequence[Address] = ()) -> GroupView:
    """One entry of ``SENTINEL MASTERS`` (or the reply of ``SENTINEL MASTER name``)."""
    status = parse_master_status(entry)
    return GroupView(
        group=status.group,
        primary=status.primary,
        config_epoch=status.config_epoch,
        replicas=tuple(replicas),
        primary_down=bool(status.flags & {"s_down", "o_down"}),
        failover_in_progress="failover_in_progress" in status.flags,
        failover_timeout_ms=status.failover_timeout_ms,
        down_after_ms=status.down_after_ms,
    )


def _optional_int(fields: Mapping[str, str], key: str, what: str) -> int:
    """A non-negative integer field that older Sentinels may omit (0 when absent).

    Present but not a number is an error naming the field, never a silent 0.
    """
    raw = fields.get(key)
    if raw is None:
        return 0
    if not (raw.isascii() and raw.isdigit()):
        raise ReplyError(f"{what}: field {key!r} is {raw!r}, not a non-negative integer")
    return int(raw)


def parse_replica_entries(reply: object, group: str) -> tuple[ReplicaEntry, ...]:
    """``SENTINEL REPLICAS group``, every replica with its flags, priority and link.

    Unlike :func:`parse_replicas` nothing is left out: ``drain`` explains why a
    flagged replica cannot take over. Sentinel always reports ``slave-priority``
    and ``master-link-status`` for a replica; a reply without them is malformed.
    """
    what = f"SENTINEL REPLICAS {group}"
    out: list[ReplicaEntry] = []
    for fields in _entries(reply, what):
        key = "slave-priority" if "slave-priority" in fields else "replica-priority"
        link = fields.get("master-link-status")
        if link not in ("ok", "err"):
            raise ReplyError(f"{what}: field 'master-link-status' is {link!r}, not ok/err")
        out.append(
            ReplicaEntry(
                _address(fields, what),
                frozenset(fields.get("flags", "").split(",")),
                _int_field(fields, key, what),
                link == "ok",
            )
        )
    return tuple(out)


def parse_info(reply: object, what: str) -> dict[str, str]:
    """An ``INFO`` reply (redis-py's parsed dict, or the raw text) as flat strings."""
    if isinstance(reply, Mapping):
        return {str(k): str(v) for k, v in reply.items()}
    if not isinstance(reply, str | bytes):
        raise ReplyError(f"{what}: expected text, got {type(reply).__name__}")
    text = reply.decode() if isinstance(reply, bytes) else reply
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and not line.startswith("#"):
            out[key.strip()] = value.strip()
    return out


@dataclass(frozen=True)
class ReplicationInfo:
    """``INFO replication`` of one node: its role, and where its data stands."""

    role: str  # master | slave
    offset: int  # master_repl_offset (primary) / slave_repl_offset (replica)
    master: Address | None = None  # for a replica: whom it replicates
    link_up: bool = False  # for a replica: master_link_status:up
    #: for a replica: master_sync_in_progress:1 (a full sync is under way; its data is
    #: being replaced, so promoting it now would lose what it is receiving)
    sync_in_progress: bool = False


def parse_replication(reply: object, node: Address) -> ReplicationInfo:
    """``INFO replication``; a missing or odd field raises :class:`ReplyError` naming it."""
    what = f"INFO replication of {node}"
    fields = parse_info(reply, what)
    role = fields.get("role")
    if role == "master":
        return ReplicationInfo("master", _int_field(fields, "master_repl_offset", what))
    if role != "slave":
        raise ReplyError(f"{what}: field 'role' is {role!r}, not master/slave")
    master = _address(fields, what, "master_host", "master_port")
    link = fields.get("master_link_status")
    if link not in ("up", "down"):
        raise ReplyError(f"{what}: field 'master_link_status' is {link!r}, not up/down")
    # slave_repl_offset is reported even before the first sync (as the handshake offset)
    offset = _int_field(fields, "slave_repl_offset", what)
    syncing = fields.get("master_sync_in_progress")
    if syncing not in ("0", "1"):
        raise ReplyError(f"{what}: field 'master_sync_in_progress' is {syncing!r}, not 0/1")
    return ReplicationInfo("slave", offset, master, link == "up", syncing == "1")


def parse_config_int(reply: object, name: str, node: Address) -> int:
    """``CONFIG GET name`` for an integer parameter."""
    what = f"CONFIG GET {name} on {node}"
    return _int_field(pairs_to_dict(reply, what), name, what)


def parse_replicas(reply: object, group: str) -> tuple[Address, ...]:
    """``SENTINEL REPLICAS group``: the replicas Sentinel considers usable.

    Replicas flagged down or disconnected are left out: they cannot be promoted
    and should not be shown as healthy.
    """
    what = f"SENTINEL REPLICAS {group}"
    out: list[Address] = []
    for fields in _entries(reply, what):
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
    out: list[Address] = []
    for fields in _entries(reply, what):
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
    for fields in _entries(reply, what):
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
    if not (port.isascii() and port.isdigit()):
        return None
    try:
        return Address(host, int(port))
    except AddressError:
        return None
