"""Real Redis servers and Sentinels on loopback, for the demo, tests and benchmarks.

The control plane's whole job is to react to what Redis Sentinel does, and
Sentinel's behaviour (timing of s_down/o_down, leader election, when replicas are
reconfigured, TILT) is subtle enough that mocks would only test our assumptions.
This module starts real ``redis-server`` / ``redis-sentinel`` processes on
127.0.0.1 with free ports in a scratch directory, and gives tests handles to
break them (kill, pause, restart) and to wait for Sentinel to react.

Every process is a :class:`~xds.lab.process.ManagedProcess`, so nothing outlives
the interpreter; :class:`SentinelCluster` is also a context manager.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from redis_sentinel_watch.model import Address
from xds.lab.ports import free_port
from xds.lab.process import ManagedProcess, wait_until

__all__ = [
    "LabStartError",
    "RedisNode",
    "SentinelCluster",
    "SentinelNode",
]

LOOPBACK = "127.0.0.1"
_START_ATTEMPTS = 3  # with an auto-picked port, another program may grab it first
_POLL_TIMEOUT = 0.5  # socket timeout while polling, so a paused server cannot stall a wait


class LabStartError(RuntimeError):
    """A lab process never became ready; the message includes its log tail."""


class _ExitedDuringStart(LabStartError):
    """The process exited while starting (typically: port taken)."""


def _find_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidate = Path("/usr/bin") / name
    return str(candidate) if candidate.exists() else None


def _quote(value: str) -> str:
    """A redis.conf string argument (double-quoted, backslash-escaped)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _make_client(address: Address, **kw: Any) -> redis.Redis:
    # redis-py >= 6 retries ConnectionError/TimeoutError 3-10 times with backoff by
    # default, which turns "is this node dead?" into a multi-second question. The lab
    # wants the honest answer at once, so no retries unless the caller asks.
    options: dict[str, Any] = {
        "protocol": 2,
        "decode_responses": True,
        "socket_timeout": 2.0,
        "socket_connect_timeout": 2.0,
        "retry": Retry(NoBackoff(), 0),
    }
    options.update(kw)
    return redis.Redis(host=address.host, port=address.port, **options)


def _pairs(flat: Iterable[Any]) -> dict[str, str]:
    """``[k1, v1, k2, v2, ...]`` (a RESP2 Sentinel reply) → dict."""
    items = [str(x) for x in flat]
    return dict(zip(items[::2], items[1::2], strict=True))


def _parse_info(raw: Any) -> dict[str, str]:
    """An INFO reply (redis-py's parsed dict, or the raw text) as flat strings."""
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    out: dict[str, str] = {}
    for line in str(raw).splitlines():
        key, sep, value = line.partition(":")
        if sep and not line.startswith("#"):
            out[key.strip()] = value.strip()
    return out


class _ServerNode:
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

    def client(self, **kw: Any) -> redis.Redis:
        """A new sync client (RESP2, decoded strings, 2 s timeouts, no retries).

        ``kw`` overrides any of those (e.g. ``retry=redis.retry.Retry(...)``).

        The caller owns it: use ``with node.client() as c:`` or call ``close()``.
        """
        return _make_client(self.address, **{**self.client_options, **kw})

    def ping(self, timeout: float = _POLL_TIMEOUT) -> bool:
        """True if the server answers PING within ``timeout`` seconds."""
        try:
            with self.client(socket_timeout=timeout, socket_connect_timeout=timeout) as c:
                return bool(c.ping())
        except (redis.RedisError, OSError):
            return False

    def _answers_as_ours(self) -> bool:
        """The port answers, and it is *our* process answering (INFO process_id)."""
        try:
            with self.client(
                socket_timeout=_POLL_TIMEOUT, socket_connect_timeout=_POLL_TIMEOUT
            ) as c:
                raw = c.execute_command("INFO", "server")
        except (redis.RedisError, OSError):
            return False
        return _parse_info(raw).get("process_id") == str(self.process.pid)

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


class RedisNode(_ServerNode):
    """One ``redis-server`` on 127.0.0.1, with no persistence, in its own directory."""

    kind: ClassVar[str] = "redis"

    @classmethod
    def _argv_for(cls, conf_path: Path) -> list[str]:
        binary = _find_binary("redis-server")
        if binary is None:
            raise LabStartError("redis-server not found on PATH or in /usr/bin")
        return [binary, str(conf_path)]

    @classmethod
    def start(
        cls,
        workdir: Path,
        port: int | None = None,
        replica_of: Address | None = None,
        *,
        timeout: float = 10.0,
        extra_conf: Sequence[str] = (),
        client_options: Mapping[str, Any] | None = None,
    ) -> RedisNode:
        """Start a Redis (a replica of ``replica_of`` if given) and wait until it answers PING.

        ``extra_conf`` lines are appended to the generated redis.conf (e.g.
        ``requirepass``); ``client_options`` are then needed to talk to it.
        Does not wait for replication; see :meth:`wait_replica_synced`.
        """

        def conf_lines(directory: Path, chosen: int) -> list[str]:
            lines = [
                f"bind {LOOPBACK}",
                f"port {chosen}",
                f"dir {_quote(str(directory))}",
                'logfile ""',
                'save ""',
                "appendonly no",
                "protected-mode no",
                "daemonize no",
                "repl-diskless-sync yes",
                "repl-diskless-sync-delay 0",
            ]
            if replica_of is not None:
                lines.append(f"replicaof {replica_of.host} {replica_of.port}")
            return lines + list(extra_conf)

        return cls._launch(workdir, port, conf_lines, timeout, client_options)

    def info(self, section: str = "replication") -> dict[str, str]:
        """``INFO <section>`` as a flat dict of strings."""
        with self.client() as c:
            raw = c.execute_command("INFO", section)
        return _parse_info(raw)

    def role(self) -> str:
        """``'master'`` or ``'slave'``, from the ROLE command."""
        with self.client() as c:
            reply = c.execute_command("ROLE")
        return str(reply[0])

    def wait_replica_synced(self, timeout: float = 10.0) -> None:
        """Wait until INFO replication says ``master_link_status:up``."""

        def synced() -> bool:
            return self.info("replication").get("master_link_status") == "up"

        wait_until(
            synced,
            timeout,
            what=f"{self.name} to finish syncing with its primary",
            ignore=(redis.RedisError, OSError),
        )


class SentinelNode(_ServerNode):
    """One ``redis-sentinel`` on 127.0.0.1 monitoring some master groups."""

    kind: ClassVar[str] = "sentinel"
    monitors: tuple[tuple[str, Address], ...] = ()

    @classmethod
    def _argv_for(cls, conf_path: Path) -> list[str]:
        binary = _find_binary("redis-sentinel")
        if binary is not None:
            return [binary, str(conf_path)]
        server = _find_binary("redis-server")
        if server is None:
            raise LabStartError("neither redis-sentinel nor redis-server found")
        return [server, str(conf_path), "--sentinel"]

    @classmethod
    def start(
        cls,
        workdir: Path,
        port: int | None = None,
        monitors: Sequence[tuple[str, Address]] = (),
        quorum: int = 2,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 10000,
        *,
        timeout: float = 10.0,
        extra_conf: Sequence[str] = (),
        group_conf: Sequence[str] = (),
        client_options: Mapping[str, Any] | None = None,
    ) -> SentinelNode:
        """Start a Sentinel monitoring ``(group, primary address)`` pairs; wait for PING.

        The conf file lives in the Sentinel's own directory and stays writable,
        because Sentinel rewrites it with what it learns (replicas, peers, epochs).
        ``extra_conf`` lines go before the monitors (they override the defaults
        above them, e.g. ``sentinel resolve-hostnames yes``); ``group_conf``
        lines follow each monitor with ``{group}`` replaced by its name (e.g.
        ``sentinel auth-pass {group} secret``). ``client_options`` (e.g. a
        password for ``requirepass``) are used by every lab client of the node.
        """

        def conf_lines(directory: Path, chosen: int) -> list[str]:
            lines = [
                f"bind {LOOPBACK}",
                f"port {chosen}",
                f"dir {_quote(str(directory))}",
                'logfile ""',
                "daemonize no",
                "protected-mode no",
                "sentinel resolve-hostnames no",
                *extra_conf,
            ]
            for group, primary in monitors:
                lines += [
                    f"sentinel monitor {group} {primary.host} {primary.port} {quorum}",
                    f"sentinel down-after-milliseconds {group} {down_after_ms}",
                    f"sentinel failover-timeout {group} {failover_timeout_ms}",
                    f"sentinel parallel-syncs {group} 1",
                    *(line.replace("{group}", group) for line in group_conf),
                ]
            return lines

        node = cls._launch(workdir, port, conf_lines, timeout, client_options)
        node.monitors = tuple(monitors)
        return node

    def master_addr(self, group: str) -> Address | None:
        """``SENTINEL GET-MASTER-ADDR-BY-NAME``; None if the group is unknown."""
        with self.client() as c:
            reply = c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", group)
        if not reply:
            return None
        return Address(str(reply[0]), int(reply[1]))

    def master_info(self, group: str) -> dict[str, str]:
        """``SENTINEL MASTER <group>`` as a dict (flags, num-other-sentinels, ...)."""
        with self.client() as c:
            return _pairs(c.execute_command("SENTINEL", "MASTER", group))

    def known_replicas(self, group: str) -> list[dict[str, str]]:
        """``SENTINEL REPLICAS <group>``: one dict per replica Sentinel knows about."""
        with self.client() as c:
            reply = c.execute_command("SENTINEL", "REPLICAS", group)
        return [_pairs(entry) for entry in reply or []]

    def known_sentinels(self, group: str) -> list[dict[str, str]]:
        """``SENTINEL SENTINELS <group>``: the *other* Sentinels this one has heard from."""
        with self.client() as c:
            reply = c.execute_command("SENTINEL", "SENTINELS", group)
        return [_pairs(entry) for entry in reply or []]


def _entry_address(entry: dict[str, str]) -> Address | None:
    try:
        return Address(entry["ip"], int(entry["port"]))
    except (KeyError, ValueError):
        return None


class SentinelCluster:
    """Per group one primary and its replica(s), plus N Sentinels watching every group.

    ``primaries`` and ``replicas`` record the *initial* layout; after a failover ask
    :meth:`current_primary`. Use as a context manager (or call :meth:`stop`) so every
    process is stopped even when the block raises.
    """

    def __init__(
        self,
        workdir: Path,
        groups: Sequence[str],
        quorum: int,
        down_after_ms: int,
        failover_timeout_ms: int,
    ) -> None:
        self.workdir: Path = workdir
        self.groups: tuple[str, ...] = tuple(groups)
        self.quorum: int = quorum
        self.down_after_ms: int = down_after_ms
        self.failover_timeout_ms: int = failover_timeout_ms
        self.primaries: dict[str, RedisNode] = {}
        self.replicas: dict[str, list[RedisNode]] = {}
        self.sentinels: list[SentinelNode] = []

    @classmethod
    def start(
        cls,
        workdir: Path,
        groups: Sequence[str] = ("mymaster",),
        sentinels: int = 3,
        quorum: int = 2,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 10000,
        *,
        replicas_per_group: int = 1,
        timeout: float = 30.0,
    ) -> SentinelCluster:
        """Start everything and wait until every Sentinel knows every replica and peer.

        On any failure (including KeyboardInterrupt) everything already started is
        stopped before the exception propagates.
        """
        if not groups:
            raise ValueError("at least one group is required")
        if sentinels < 1 or not 1 <= quorum <= sentinels:
            raise ValueError(f"need 1 <= quorum ({quorum}) <= sentinels ({sentinels})")
        cluster = cls(workdir, groups, quorum, down_after_ms, failover_timeout_ms)
        try:
            for group in cluster.groups:
                primary = RedisNode.start(workdir)
                cluster.primaries[group] = primary
                cluster.replicas[group] = [
                    RedisNode.start(workdir, replica_of=primary.address)
                    for _ in range(replicas_per_group)
                ]
            for group_replicas in cluster.replicas.values():
                for replica in group_replicas:
                    replica.wait_replica_synced(timeout)
            monitors = [(g, cluster.primaries[g].address) for g in cluster.groups]
            for _ in range(sentinels):
                cluster.sentinels.append(
                    SentinelNode.start(
                        workdir,
                        monitors=monitors,
                        quorum=quorum,
                        down_after_ms=down_after_ms,
                        failover_timeout_ms=failover_timeout_ms,
                    )
                )
            cluster.wait_discovered(timeout)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"<SentinelCluster groups={list(self.groups)} redis={len(self.nodes)} "
            f"sentinels={len(self.sentinels)}>"
        )

    @property
    def nodes(self) -> list[RedisNode]:
        """Every Redis node (primaries and replicas of all groups)."""
        out: list[RedisNode] = []
        for group in self.groups:
            if group in self.primaries:
                out.append(self.primaries[group])
            out.extend(self.replicas.get(group, []))
        return out

    @property
    def sentinel_addresses(self) -> list[Address]:
        return [s.address for s in self.sentinels]

    @property
    def majority(self) -> int:
        return len(self.sentinels) // 2 + 1

    def node(self, address: Address) -> RedisNode:
        """The Redis node listening on ``address`` (KeyError if not ours)."""
        for node in self.nodes:
            if node.address == address:
                return node
        raise KeyError(address)

    def _discovered(self) -> bool:
        peers = len(self.sentinels) - 1
        for sentinel in self.sentinels:
            for group in self.groups:
                expected = {r.address for r in self.replicas.get(group, [])}
                healthy = {
                    addr
                    for entry in sentinel.known_replicas(group)
                    if (addr := _entry_address(entry)) is not None
                    and "s_down" not in entry.get("flags", "")
                    and "disconnected" not in entry.get("flags", "")
                }
                if not expected <= healthy:
                    return False
                if len(sentinel.known_sentinels(group)) < peers:
                    return False
        return True

    def wait_discovered(self, timeout: float = 30.0) -> None:
        """Wait until every Sentinel lists every replica (healthy) and N-1 peer Sentinels.

        Peers are found through hello messages published every 2 s, so this takes a
        few seconds after the Sentinels start.
        """
        wait_until(
            self._discovered,
            timeout,
            interval=0.1,
            what="sentinels to discover replicas and each other",
            ignore=(redis.RedisError, OSError),
        )

    def _votes(self, group: str) -> Counter[Address]:
        votes: Counter[Address] = Counter()
        for sentinel in self.sentinels:
            try:
                with sentinel.client(
                    socket_timeout=_POLL_TIMEOUT, socket_connect_timeout=_POLL_TIMEOUT
                ) as c:
                    reply = c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", group)
            except (redis.RedisError, OSError):
                continue  # a dead or paused Sentinel does not vote
            if reply:
                votes[Address(str(reply[0]), int(reply[1]))] += 1
        return votes

    def _is_master(self, address: Address) -> RedisNode | None:
        try:
            node = self.node(address)
        except KeyError:
            return None
        try:
            with node.client(
                socket_timeout=_POLL_TIMEOUT, socket_connect_timeout=_POLL_TIMEOUT
            ) as c:
                reply = c.execute_command("ROLE")
        except (redis.RedisError, OSError):
            return None
        return node if str(reply[0]) == "master" else None

    def _agreed_primary(self, group: str, exclude: Address | None = None) -> RedisNode | None:
        for address, count in self._votes(group).most_common():
            if count < self.majority or address == exclude:
                continue
            node = self._is_master(address)
            if node is not None:
                return node
        return None

    def current_primary(self, group: str) -> RedisNode:
        """The node a majority of Sentinels name as primary and whose ROLE is master.

        Raises LookupError when there is no such node right now (e.g. mid-failover).
        """
        node = self._agreed_primary(group)
        if node is None:
            raise LookupError(f"no primary for {group!r} agreed by a majority of sentinels")
        return node

    def wait_primary(self, group: str, timeout: float = 30.0) -> RedisNode:
        """Poll :meth:`current_primary` until it has an answer."""
        return wait_until(
            lambda: self._agreed_primary(group),
            timeout,
            interval=0.1,
            what=f"an agreed primary for {group!r}",
        )

    def wait_failover(self, group: str, old: Address, timeout: float = 30.0) -> RedisNode:
        """Wait until a majority of Sentinels name a primary other than ``old``.

        The new primary must also say ``master`` in ROLE (Sentinel switches its
        answer just before the promoted replica has necessarily confirmed).
        """
        return wait_until(
            lambda: self._agreed_primary(group, exclude=old),
            timeout,
            interval=0.1,
            what=f"sentinels to fail {group!r} over away from {old}",
        )

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every Sentinel and Redis (Sentinels first, so none fails over mid-stop).

        Idempotent. All processes get SIGTERM before any is waited for.
        """
        sentinel_procs = [s.process for s in self.sentinels]
        redis_procs = [n.process for n in self.nodes]
        for group in (sentinel_procs, redis_procs):
            for proc in group:
                proc.terminate()
            for proc in group:
                proc.stop(timeout)
