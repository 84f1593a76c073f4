"""sentinel-xds: serve the Redis topology that :mod:`redis_sentinel_watch` observes to
Envoy sidecars over xDS (ADS).

One subpackage per responsibility; each imports only those below it
(``tests/unit/test_layering.py`` checks the real imports):

- :mod:`xds.ads`: the generic ADS protocol server (SotW and Delta streams,
  nonces, the snapshot cache and its value type, wire framing, request parsing,
  per-sidecar state); it knows nothing of Redis, config or Prometheus.
- :mod:`xds.resources`: the Envoy resources for Redis groups (topology →
  Listener / Cluster / ClusterLoadAssignment), node profiles and the sidecar
  bootstrap.
- :mod:`xds.service`: the control plane itself (config, the composition root,
  the admin HTTP API and its documents, metrics, failover timeline, secrets,
  TLS, logging).
- :mod:`xds.ops`: the ``sentinel-xds`` commands (CLI, ``status``/``events``
  views, drain/undrain, the registry client-config check).
- :mod:`xds.lab`: real Redis, Sentinel, Envoy and control-plane processes on
  loopback for the demo, the tests and the benchmarks.

The version is the installed distribution's (:mod:`xds.service.version`).
"""
