"""sentinel-xds: serve the Redis topology that :mod:`redis_sentinel_watch` observes to
Envoy sidecars over xDS (ADS).

Layers, bottom up: :mod:`xds.resources.redis_group` (pure builders), :mod:`xds.ads.snapshot`
(a self-checking value), :mod:`xds.ads.cache` (the narrow interface),
:mod:`xds.ads.sotw` and :mod:`xds.ads.server` (the protocol, which knows nothing
of Redis), then :mod:`xds.service.app` and :mod:`xds.ops.cli` that compose them.
"""

__version__ = "0.1.0"
