"""The control-plane service: config in, a watched topology served over xDS and HTTP.

:mod:`~xds.service.app` is the composition root (watcher → snapshot cache →
xDS and admin servers); around it the config (:mod:`~xds.service.config`),
the admin HTTP API (:mod:`~xds.service.admin_http`) and its typed documents
(:mod:`~xds.service.admin_documents`, shared with every client, filled in by
:mod:`~xds.service.admin_build`), metrics,
the failover timeline, secrets, TLS and logging. It composes
:mod:`xds.resources` and :mod:`xds.ads`; the operator tools in :mod:`xds.ops`
use it, never the other way round.
"""
