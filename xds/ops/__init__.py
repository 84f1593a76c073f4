"""The ``sentinel-xds`` commands an operator runs (entry point :func:`xds.ops.cli.main`).

:mod:`~xds.ops.cli` wires every subcommand; :mod:`~xds.ops.commands` holds the
on-call ones (``status``, ``events``, ``drain``, ``undrain``) with their
views (:mod:`~xds.ops.status_view`), the admin API client
(:mod:`~xds.ops.admin_client`) and the drain procedure
(:mod:`~xds.ops.drain_plan` decides, :mod:`~xds.ops.drain` acts);
:mod:`~xds.ops.registry_check` checks a docker-registry config for use behind
the sidecar. Exit codes are shared (:mod:`~xds.ops.exits`).
"""
