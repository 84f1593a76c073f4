"""The xDS resource type URLs this server speaks, their short names, and the wildcard name.

One home for the protocol's names so every log line, metric label, ``/status``
key and table column spells a type the same way: the short name is the last
dotted part of the type URL (``Cluster``, ``ClusterLoadAssignment``,
``Listener``), which is also what Envoy's own logs and config dumps call them.
"""

from __future__ import annotations

__all__ = [
    "CLUSTER",
    "ENDPOINT",
    "LISTENER",
    "TYPE_PREFIX",
    "WILDCARD",
    "short_type",
]

#: every type URL we accept starts with this (``google.protobuf.Any`` convention)
TYPE_PREFIX = "type.googleapis.com/"

LISTENER = TYPE_PREFIX + "envoy.config.listener.v3.Listener"
CLUSTER = TYPE_PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = TYPE_PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"

#: the resource name that asks for every resource of a type (both ADS variants)
WILDCARD = "*"


def short_type(type_url: str) -> str:
    """``type.googleapis.com/envoy.config.cluster.v3.Cluster`` → ``Cluster``.

    Works for any ``@type``/type URL (unknown ones too: a client may ask for
    types we do not serve, and logs still name them readably).
    """
    return type_url.rsplit(".", 1)[-1]
