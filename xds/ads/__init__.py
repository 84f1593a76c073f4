"""The generic ADS protocol server: it serves whatever snapshot the cache holds.

SotW and Delta streams (:mod:`~xds.ads.sotw`, :mod:`~xds.ads.delta` over
:mod:`~xds.ads.stream`), the gRPC server and its stream limits
(:mod:`~xds.ads.server`, :mod:`~xds.ads.limits`), request parsing
(:mod:`~xds.ads.discovery_request`), response framing (:mod:`~xds.ads.wire`),
the snapshot value and cache (:mod:`~xds.ads.snapshot`, :mod:`~xds.ads.cache`),
type URLs (:mod:`~xds.ads.typeurls`) and per-sidecar state with the observer
hook (:mod:`~xds.ads.sidecars`). It imports nothing else from this project,
nor redis, prometheus_client, aiohttp or yaml, so its rules are tested with
any resources and it could serve other ones; protocol defaults live here and
the service imports them.
"""
