"""sentinel-xds: serve the Redis topology that :mod:`redis_sentinel_watch` observes to
Envoy sidecars over xDS (ADS).

Layers, bottom up: :mod:`xds.resources` (pure builders), :mod:`xds.snapshot`
(a self-checking value), :mod:`xds.cache` (the narrow interface),
:mod:`xds.sotw` and :mod:`xds.grpc_server` (the protocol, which knows nothing
of Redis), then :mod:`xds.service` and :mod:`xds.cli` that compose them.
"""

__version__ = "0.1.0"
