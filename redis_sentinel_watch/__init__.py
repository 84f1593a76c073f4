"""Watch Redis Sentinel and turn what it says into immutable topology values.

This package knows nothing about xDS or Envoy: it answers one question, "who
is the primary of each master group right now, and how sure are we?", and
publishes the answer as a :class:`Topology` whenever it changes.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .agreement import Promotion, PromotionStatus, decide_group, majority
from .auth import Credentials, Secret, TlsSettings
from .errors import (
    NoPermissionError,
    ReplyError,
    TimedOutError,
    UnknownGroupError,
    UnreachableError,
    WatchError,
)
from .model import (
    Address,
    AddressError,
    GroupTopology,
    GroupView,
    Health,
    ReplicaEntry,
    ReplicaState,
    ReplicaSync,
    SentinelView,
    Topology,
)
from .replies import MasterStatus, ReplicationInfo, SentinelEvent

if TYPE_CHECKING:
    from .blocking import SingleConnection, SyncClient
    from .changes import PrimaryChange
    from .fake import FakeNode, FakeSentinelIO
    from .io import SentinelIO
    from .redis_io import RedisSentinelIO
    from .resolver import HostResolver
    from .watcher import Watcher

# The I/O modules (and the blocking clients) load redis-py; they are imported on
# first use (PEP 562) so that code needing only the values above (the xDS
# protocol layer) never loads redis. The fake is for tests: a production
# process never loads it.
_LAZY = {
    "FakeNode": ".fake",
    "FakeSentinelIO": ".fake",
    "SingleConnection": ".blocking",
    "SyncClient": ".blocking",
    "HostResolver": ".resolver",
    "RedisSentinelIO": ".redis_io",
    "SentinelIO": ".io",
    "PrimaryChange": ".changes",
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
    "FakeNode",
    "FakeSentinelIO",
    "GroupTopology",
    "GroupView",
    "Health",
    "HostResolver",
    "MasterStatus",
    "NoPermissionError",
    "PrimaryChange",
    "Promotion",
    "PromotionStatus",
    "RedisSentinelIO",
    "ReplicaEntry",
    "ReplicaState",
    "ReplicaSync",
    "ReplicationInfo",
    "ReplyError",
    "Secret",
    "SentinelEvent",
    "SentinelIO",
    "SentinelView",
    "SingleConnection",
    "SyncClient",
    "TimedOutError",
    "TlsSettings",
    "Topology",
    "UnknownGroupError",
    "UnreachableError",
    "WatchError",
    "Watcher",
    "decide_group",
    "majority",
]
