"""``Address.parse`` takes ASCII ports only, and every failure is an AddressError."""

from __future__ import annotations

import pytest

from redis_sentinel_watch import Address, AddressError
from xds.ops.commands import _positive_int
from xds.service.systemd import watchdog_interval_s


@pytest.mark.parametrize(
    "text", ["127.0.0.1:²", "127.0.0.1:٣٣", "[::1]:\uff16\uff13\uff17\uff19", "h:1²"]
)
def test_non_ascii_digits_are_not_a_port(text: str) -> None:
    """``str.isdigit`` accepts '²' (then ``int`` raises a bare ValueError) and other
    scripts' digits (``int`` reads '٣٣' as 33): neither is a port."""
    with pytest.raises(AddressError, match="is not a number"):
        Address.parse(text)


def test_ascii_ports_still_parse() -> None:
    assert Address.parse("127.0.0.1:6379") == Address("127.0.0.1", 6379)
    assert Address.parse("[::1]:7001") == Address("::1", 7001)


def test_other_numbers_from_text_are_ascii_only() -> None:
    """The CLI's positive integers and systemd's WATCHDOG_USEC use the same rule."""
    with pytest.raises(Exception, match="not a positive integer"):
        _positive_int("²")
    assert _positive_int("3") == 3
    assert watchdog_interval_s({"WATCHDOG_USEC": "٣٠٠٠٠٠٠"}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "2000000"}) == 1.0
