"""What a lab ``redis-server`` and a lab ``redis-sentinel`` have in common.

Both are a conf file in a scratch directory, a process on a free 127.0.0.1
port, and a wait until *our* process answers ``PING``; both are killed,
paused and restarted the same way by tests. That shared machinery lives here,
once, so :mod:`xds.lab.redis` and :mod:`xds.lab.sentinel` only say what makes
each kind of server different (its binary, its conf lines, its commands).

Every process is a :class:`~xds.lab.process.ManagedProcess`, so nothing outlives
the interpreter.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

from redis_sentinel_watch.blocking import SyncClient, command, connect
from redis_sentinel_watch.errors import WatchError
from redis_sentinel_watch.model import Address
from redis_sentinel_watch.replies import parse_info
from xds.lab.ports import free_port
from xds.lab.process import ManagedProcess, wait_until

__all__ = [
    "LOOPBACK",
    "POLL_TIMEOUT",
    "LabStartError",
    "ServerNode",
    "base_conf",
    "find_binary",
    "quote",
]

LOOPBACK = "127.0.0.1"
_START_ATTEMPTS = 3  # with an auto-picked port, another program may grab it first
POLL_TIMEOUT = 0.5  # socket timeout while polling, so a paused server cannot stall a wait


class LabStartError(RuntimeError):
    """A lab process never became ready; the message includes its log tail."""


class _ExitedDuringStart(LabStartError):
    """The process exited while starting (typically: port taken)."""


def find_binary(name: str) -> str | None:
    """``name`` on PATH, else in /usr/bin (Debian's packages; PATH may be a venv's)."""
    found = shutil.which(name)
    if found:
        return found
    candidate = Path("/usr/bin") / name
    return str(candidate) if candidate.exists() else None


def quote(value: str) -> str:
    """A redis.conf string argument (double-quoted, backslash-escaped)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def base_conf(directory: Path, port: int) -> list[str]:
    """The conf lines every lab server starts with: loopback only, in the foreground,
    logging to stdout (the process log), working in its own ``directory``."""
    return [
        f"bind {LOOPBACK}",
        f"port {port}",
        f"dir {quote(str(directory))}",
        'logfile ""',
        "daemonize no",
        "protected-mode no",
    ]


class ServerNode:
    """What Redis and Sentinel processes share: a conf file, a loopback port, a process."""

    kind: ClassVar[str] = "redis"

    def __init__(
        self,
        address: Address,
        conf_path: Path,
        argv: Sequence[str],
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.address: Address = address
        self.conf_path: Path = conf_path
        self._argv: tuple[str, ...] = tuple(argv)
        #: Extra options for every client of this node (e.g. ``password`` when the
        #: server has ``requirepass``); :meth:`client` arguments override them.
        self.client_options: dict[str, Any] = dict(client_options or {})
        self.process: ManagedProcess = self._spawn()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.address} pid={self.process.pid}>"

    @classmethod
    def _argv_for(cls, conf_path: Path) -> list[str]:
        raise NotImplementedError

    @classmethod
    def _launch(
        cls,
        workdir: Path,
        port: int | None,
        conf_lines: Callable[[Path, int], list[str]],
        timeout: float,
        client_options: Mapping[str, Any] | None = None,
    ) -> Self:
        """Write ``<workdir>/<kind>-<port>/<kind>.conf``, start, wait for PING.

        With an auto-picked port, a process that exits at once (port grabbed by
        someone else between :func:`free_port` and bind) is retried on a new port.
        """
        attempts = 1 if port is not None else _START_ATTEMPTS
        for attempt in range(attempts):
            chosen = port if port is not None else free_port()
            subdir = workdir.resolve() / f"{cls.kind}-{chosen}"
            subdir.mkdir(parents=True, exist_ok=True)
            conf = subdir / f"{cls.kind}.conf"
            conf.write_text("\n".join(conf_lines(subdir, chosen)) + "\n")
            node = cls(Address(LOOPBACK, chosen), conf, cls._argv_for(conf), client_options)
            try:
                node._wait_ready(timeout)
            except _ExitedDuringStart:
                if attempt + 1 >= attempts:
                    raise
                continue
            return node
        raise AssertionError("unreachable")

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.address.port}"

    @property
    def alive(self) -> bool:
        return self.process.alive

    def _spawn(self) -> ManagedProcess:
        return ManagedProcess(self._argv, self.conf_path.parent, name=self.name)

    def client(self, **kw: Any) -> SyncClient:
        """A new sync client (RESP2, decoded strings, 2 s timeouts, no retries).

        ``kw`` overrides any of those (redis-py's arguments, e.g. ``socket_timeout``).
        Built by :func:`redis_sentinel_watch.blocking.connect`: only that package
        imports redis-py, and :func:`~redis_sentinel_watch.blocking.command` maps
        its errors to :class:`~redis_sentinel_watch.WatchError`.

        The caller owns it: use ``with node.client() as c:`` or call ``close()``.
        """
        return connect(self.address, **{**self.client_options, **kw})

    def ping(self, timeout: float = POLL_TIMEOUT) -> bool:
        """True if the server answers PING within ``timeout`` seconds."""
        try:
            with self.client(socket_timeout=timeout, socket_connect_timeout=timeout) as c:
                return bool(command(c, "PING"))
        except (WatchError, OSError):
            return False

    def _answers_as_ours(self) -> bool:
        """The port answers, and it is *our* process answering (INFO process_id)."""
        try:
            with self.client(socket_timeout=POLL_TIMEOUT, socket_connect_timeout=POLL_TIMEOUT) as c:
                raw = command(c, "INFO", "server")
        except (WatchError, OSError):
            return False
        return parse_info(raw, f"INFO server of {self.name}").get("process_id") == str(
            self.process.pid
        )

    def _wait_ready(self, timeout: float) -> None:
        def ready() -> bool:
            if not self.process.alive:
                raise _ExitedDuringStart(
                    f"{self.name} exited during start; log tail:\n{self.process.log_tail()}"
                )
            return self._answers_as_ours()

        try:
            wait_until(ready, timeout, what=f"{self.name} to answer PING")
        except TimeoutError as exc:
            tail = self.process.log_tail()
            self.process.stop()
            raise LabStartError(f"{exc}; log tail:\n{tail}") from exc
        except BaseException:
            self.process.stop()
            raise

    def kill(self) -> None:
        """SIGKILL the server (no shutdown, no goodbye to replicas or peers)."""
        self.process.kill()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop gracefully (SIGTERM, SIGKILL after ``timeout``). Idempotent."""
        self.process.stop(timeout)

    def pause(self) -> None:
        """SIGSTOP: the port stays open but nothing answers (looks like a hung host)."""
        self.process.pause()

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        self.process.resume()

    def restart(self, timeout: float = 10.0) -> None:
        """Stop if running, then start again on the same port with the same conf file.

        The conf file may have been rewritten meanwhile (``CONFIG REWRITE``, which
        Sentinel issues to a promoted or reconfigured Redis, or Sentinel's own state
        file), so the server comes back with its latest configuration, like a
        rebooted host.
        """
        self.process.stop()
        self.process = self._spawn()
        self._wait_ready(timeout)
