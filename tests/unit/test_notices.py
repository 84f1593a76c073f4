"""Drain notices match nodes by the one endpoint-identity rule, not by spelling."""

from __future__ import annotations

import structlog

from redis_sentinel_watch import Address
from xds.service.notices import DrainNotices

PRIMARY = Address("127.0.0.1", 6380)
REPLICA = Address("::ffff:127.0.0.1", 6381)
KNOWN = (PRIMARY, REPLICA)


def test_a_notice_for_another_spelling_of_a_known_node_is_accepted() -> None:
    """``localhost:P`` is ``127.0.0.1:P``; an IPv4-mapped address is its IPv4 address;
    a host name's case does not matter. The group's own spelling is kept."""
    notices = DrainNotices()
    with structlog.testing.capture_logs() as logs:
        assert notices.note("g", Address("localhost", 6380), 30, KNOWN) is None
        assert notices.note("h", Address("127.0.0.1", 6381), 30, KNOWN) is None
    assert [e["event"] for e in logs] == ["drain.notice", "drain.notice"]
    assert notices.take("g", PRIMARY)
    assert notices.take("h", REPLICA)


def test_a_failover_from_another_spelling_of_the_noted_node_is_matched() -> None:
    notices = DrainNotices()
    assert notices.note("g", PRIMARY, 30, KNOWN) is None
    assert not notices.take("g", Address("localhost", 6381))  # another port: not this node
    assert notices.take("g", Address("LOCALHOST", 6380))
    assert not notices.take("g", PRIMARY)  # once


def test_same_host_other_port_is_still_refused() -> None:
    notices = DrainNotices()
    why = notices.note("g", Address("localhost", 6390), 30, KNOWN)
    assert why is not None and "localhost:6390" in why
    assert len(notices) == 0
