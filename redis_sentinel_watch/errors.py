"""Every exception this package raises, and the one place redis-py errors are mapped.

Tree::

    WatchError
    ├── ReplyError          a Sentinel or Redis reply did not have the expected shape
    └── UnreachableError    a Sentinel or Redis node could not be asked (timeout, refused, auth)

Callers outside this package never need to import redis-py's exceptions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["ReplyError", "UnreachableError", "WatchError", "map_redis_errors"]


class WatchError(Exception):
    """Base class of this package's errors."""


class ReplyError(WatchError):
    """A reply was malformed; the message names the command and the field."""


class UnreachableError(WatchError):
    """A node could not be asked. ``str()`` is short and safe to log (no secrets)."""


@contextmanager
def map_redis_errors(target: str) -> Iterator[None]:
    """Translate redis-py and socket errors raised inside the block.

    redis is imported here, not at module level, so that importing this package's
    values (as the xDS protocol layer does) never loads redis-py.

    ``target`` is a human name such as ``sentinel 127.0.0.1:26379``.
    """
    import redis.exceptions  # noqa: PLC0415 - see docstring

    try:
        yield
    except (TimeoutError, redis.exceptions.TimeoutError) as exc:
        raise UnreachableError(f"{target}: timed out") from exc
    except redis.exceptions.AuthenticationError as exc:
        raise UnreachableError(f"{target}: authentication failed") from exc
    except redis.exceptions.ConnectionError as exc:
        raise UnreachableError(f"{target}: {_first_line(exc)}") from exc
    except OSError as exc:
        raise UnreachableError(f"{target}: {exc.strerror or exc}") from exc
    except redis.exceptions.ResponseError as exc:
        raise ReplyError(f"{target}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
