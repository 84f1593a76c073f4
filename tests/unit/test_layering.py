"""The import rules of the layout, checked in a fresh interpreter.

The xDS protocol layer must not load redis-py (it serves whatever the cache
holds), and redis_sentinel_watch must never import xds.
"""

from __future__ import annotations

import subprocess
import sys

PROTOCOL = [
    "xds.grpc_server",
    "xds.stream",
    "xds.sotw",
    "xds.delta",
    "xds.cache",
    "xds.snapshot",
    "xds.wire",
    "xds.resources",
]


def loaded_after(imports: list[str]) -> set[str]:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in imports)
        + "print('\\n'.join(sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


def test_protocol_layer_does_not_load_redis() -> None:
    """Importing the ADS server, streams, cache and snapshot loads no redis-py module."""
    loaded = loaded_after(PROTOCOL)
    assert not {m for m in loaded if m == "redis" or m.startswith("redis.")}


def test_watch_package_does_not_import_xds() -> None:
    """redis_sentinel_watch, fully loaded, pulls in nothing from xds."""
    loaded = loaded_after(
        ["redis_sentinel_watch", "redis_sentinel_watch.watcher", "redis_sentinel_watch.io"]
    )
    assert not {m for m in loaded if m == "xds" or m.startswith("xds.")}
