"""Watch Redis Sentinel and turn what it says into immutable topology values.

This package knows nothing about xDS or Envoy: it answers one question, "who
is the primary of each master group right now, and how sure are we?", and
publishes the answer as a :class:`Topology` whenever it changes.
"""

from .agreement import Promotion, PromotionStatus, decide_group, majority
from .auth import Credentials, Secret, TlsSettings
from .errors import ReplyError, UnreachableError, WatchError
from .fake import FakeSentinelIO
from .io import HostResolver, RedisSentinelIO, SentinelIO
from .model import Address, AddressError, GroupTopology, GroupView, Health, SentinelView, Topology
from .replies import SentinelEvent
from .watcher import PrimaryChange, Watcher

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
