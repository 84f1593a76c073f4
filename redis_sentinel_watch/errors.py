"""Every exception this package raises, and the one place redis-py errors are mapped.

Tree::

    WatchError
    ├── ReplyError              a Sentinel or Redis reply did not have the expected shape,
    │   │                       or the server answered with an error
    │   ├── NoPermissionError   the ACL user may not run a command (NOPERM); names it
    │   └── UnknownGroupError   Sentinel does not monitor the asked master group
    └── UnreachableError        a Sentinel or Redis node could not be asked (refused, auth)
        └── TimedOutError       the request went out but no answer came in time: the
                                server may have acted on it

Callers outside this package never need to import redis-py's exceptions. The
two subclasses exist because callers act differently on them: a missing
permission is refused up front in one line, and a timed-out ``SENTINEL
FAILOVER`` must be treated as possibly sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

__all__ = [
    "NoPermissionError",
    "ReplyError",
    "TimedOutError",
    "UnknownGroupError",
    "UnreachableError",
    "WatchError",
    "acl_name",
    "map_redis_errors",
]

#: the command name in Redis' NOPERM text ("... no permissions to run the 'client|pause' command")
_NOPERM_COMMAND = re.compile(r"run the '([^']+)' command")


class WatchError(Exception):
    """Base class of this package's errors."""


class ReplyError(WatchError):
    """A reply was malformed or an error; the message names the command and the field."""


class NoPermissionError(ReplyError):
    """The ACL user lacks a command. ``str()`` is one line: ``<who> lacks <command>``."""

    def __init__(self, message: str, command: str) -> None:
        super().__init__(message)
        self.command = command


class UnknownGroupError(ReplyError):
    """A Sentinel answered that it monitors no master group of that name."""


class UnreachableError(WatchError):
    """A node could not be asked. ``str()`` is short and safe to log (no secrets)."""


class TimedOutError(UnreachableError):
    """No answer in time; unlike a refused connection, the request may have been acted on."""


@contextmanager
def map_redis_errors(target: str, who: str | None = None, command: str = "") -> Iterator[None]:
    """Translate redis-py and socket errors raised inside the block.

    redis is imported here, not at module level, so that importing this package's
    values (as the xDS protocol layer does) never loads redis-py.

    ``target`` is a human name such as ``sentinel 127.0.0.1:26379``; ``who`` names
    the user for a permission error (``redis user 'cp' on 127.0.0.1:6379``), and
    ``command`` the command when Redis' NOPERM text does not (key or channel rules).
    """
    import redis.exceptions  # noqa: PLC0415 - see docstring

    try:
        yield
    except (TimeoutError, redis.exceptions.TimeoutError) as exc:
        raise TimedOutError(f"{target}: timed out") from exc
    except redis.exceptions.AuthenticationError as exc:
        raise UnreachableError(f"{target}: authentication failed") from exc
    except redis.exceptions.ConnectionError as exc:
        raise UnreachableError(f"{target}: {first_line(exc)}") from exc
    except OSError as exc:
        raise UnreachableError(f"{target}: {exc.strerror or exc}") from exc
    except redis.exceptions.NoPermissionError as exc:
        raise no_permission(who or target, first_line(exc), command) from exc
    except redis.exceptions.ResponseError as exc:
        text = first_line(exc)
        if text.startswith("NOPERM"):  # redis-py maps NOPERM only on some code paths
            raise no_permission(who or target, text, command) from exc
        if "no such master" in text.lower():
            raise UnknownGroupError(f"{target}: {text}") from exc
        raise ReplyError(f"{target}: {text}") from exc


def no_permission(who: str, text: str, command: str = "") -> NoPermissionError:
    """The error for a NOPERM reply ``text``: ``<who> lacks <command>``."""
    found = _NOPERM_COMMAND.search(text)
    name = found.group(1) if found else command or text
    return NoPermissionError(f"{who} lacks {name}", name)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text (redis-py's can be long), or its type."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def acl_name(command: Sequence[str]) -> str:
    """A command's ACL name (``client|pause``, ``info``), as Redis names it in NOPERM."""
    if not command:
        return ""
    head = command[0].lower()
    if len(command) > 1 and head in {"client", "config", "sentinel", "acl", "cluster"}:
        return f"{head}|{command[1].lower()}"
    return head
