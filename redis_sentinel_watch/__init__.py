"""Watch Redis Sentinel and turn what it says into immutable topology values.

This package knows nothing about xDS or Envoy: it answers one question, "who
is the primary of each master group right now, and how sure are we?", and
publishes the answer as a :class:`Topology` whenever it changes.
"""

from .agreement import decide_group, majority
from .errors import ReplyError, UnreachableError, WatchError
from .fake import FakeSentinelIO
from .io import RedisSentinelIO, SentinelIO
from .model import Address, AddressError, GroupTopology, GroupView, Health, SentinelView, Topology
from .replies import SentinelEvent
from .watcher import PrimaryChange, Watcher

__all__ = [
    "Address",
    "AddressError",
    "FakeSentinelIO",
    "GroupTopology",
    "GroupView",
    "Health",
    "PrimaryChange",
    "RedisSentinelIO",
    "ReplyError",
    "SentinelEvent",
    "SentinelIO",
    "SentinelView",
    "Topology",
    "UnreachableError",
    "WatchError",
    "Watcher",
    "decide_group",
    "majority",
]
