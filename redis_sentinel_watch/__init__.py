"""Watch Redis Sentinel and turn what it says into immutable topology values.

This package knows nothing about xDS or Envoy: it answers one question, "who
is the primary of each master group right now, and how sure are we?", and
publishes the answer as a :class:`Topology` whenever it changes.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .agreement import Promotion, PromotionStatus, decide_group, majority
from .auth import Credentials, Secret, TlsSettings
from .errors import ReplyError, UnreachableError, WatchError
from .fake import FakeSentinelIO
from .model import Address, AddressError, GroupTopology, GroupView, Health, SentinelView, Topology
from .replies import SentinelEvent

if TYPE_CHECKING:
    from .io import HostResolver, RedisSentinelIO, SentinelIO
    from .watcher import PrimaryChange, Watcher

# The I/O modules load redis-py; they are imported on first use (PEP 562) so that
# code needing only the values above (the xDS protocol layer) never loads redis.
_LAZY = {
    "HostResolver": ".io",
    "RedisSentinelIO": ".io",
    "SentinelIO": ".io",
    "PrimaryChange": ".watcher",
    "Watcher": ".watcher",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module, __name__), name)


__all__ = [
    "Address",
    "AddressError",
    "Credentials",
    "FakeSentinelIO",
    "GroupTopology",
    "GroupView",
    "Health",
    "HostResolver",
    "PrimaryChange",
    "Promotion",
    "PromotionStatus",
    "RedisSentinelIO",
    "ReplyError",
    "Secret",
    "SentinelEvent",
    "SentinelIO",
    "SentinelView",
    "TlsSettings",
    "Topology",
    "UnreachableError",
    "WatchError",
    "Watcher",
    "decide_group",
    "majority",
]
