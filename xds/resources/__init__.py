"""The Envoy resources for Redis groups, built as pure functions of the topology.

:mod:`~xds.resources.redis_group` turns a group and its primary into a
Listener (``redis_proxy``), a Cluster and a ClusterLoadAssignment;
:mod:`~xds.resources.snapshot` assembles and checks them into an
:class:`xds.ads.snapshot.Snapshot`; :mod:`~xds.resources.profiles` decides
which groups and listen addresses each node gets; :mod:`~xds.resources.bootstrap`
writes the sidecar's Envoy bootstrap. Uses :mod:`xds.ads`, never the service.
"""
