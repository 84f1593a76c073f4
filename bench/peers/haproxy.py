"""HAProxy 2.6 in front of both Redis nodes, with the published ``role:master`` check.

This is what many teams run instead of a Sentinel-aware client: HAProxy sends
``INFO replication`` to every node and routes only to the one that says
``role:master``. The configuration is the one HAProxy's own blog post publishes
for Redis (``option tcp-check`` / ``tcp-check send info\\ replication\\r\\n`` /
``tcp-check expect string role:master``, ``check inter 1s``); the *tuned*
variant checks every 100 ms, flips on one result (``fall 1 rise 1``) and closes
sessions to a server marked down (``on-marked-down shutdown-sessions``), which is
as fast as this approach gets without scripting.
"""

from __future__ import annotations

import csv
import io
import shutil
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from redis_sentinel_watch import Address
from xds.lab import ManagedProcess, free_port, wait_until

__all__ = ["DEFAULT_CHECK", "TUNED_CHECK", "HAProxy", "HAProxyVariant", "config_text"]

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class HAProxyVariant:
    """How each ``server`` line checks its node (appended after ``check``)."""

    name: str
    server_options: str


DEFAULT_CHECK = HAProxyVariant("haproxy", "check inter 1s")
TUNED_CHECK = HAProxyVariant(
    "haproxy-tuned", "check inter 100ms fall 1 rise 1 on-marked-down shutdown-sessions"
)


def config_text(
    listen: Address, stats: Address, servers: Sequence[Address], variant: HAProxyVariant
) -> str:
    """The published Redis role check, plus an HTTP stats page to observe server states."""
    server_lines = "\n".join(
        f"    server redis{i} {addr.host}:{addr.port} {variant.server_options}"
        for i, addr in enumerate(servers, start=1)
    )
    return f"""\
global
    maxconn 1000

defaults
    mode tcp
    timeout connect 4s
    timeout server 30s
    timeout client 30s

frontend stats
    mode http
    bind {stats.host}:{stats.port}
    stats enable
    stats uri /stats

frontend ft_redis
    bind {listen.host}:{listen.port} name redis
    default_backend bk_redis

backend bk_redis
    option tcp-check
    tcp-check connect
    tcp-check send PING\\r\\n
    tcp-check expect string +PONG
    tcp-check send info\\ replication\\r\\n
    tcp-check expect string role:master
    tcp-check send QUIT\\r\\n
    tcp-check expect string +OK
{server_lines}
"""


def find_haproxy() -> str:
    """The ``haproxy`` binary (Debian installs it in /usr/sbin, often not on PATH)."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise FileNotFoundError("haproxy not found; install it with: apt-get install haproxy")
    return found


class HAProxy:
    """One ``haproxy -db`` process (foreground) with its config in ``<workdir>/<name>/``."""

    def __init__(self, workdir: Path, servers: Sequence[Address], variant: HAProxyVariant) -> None:
        self.variant = variant
        self.name = variant.name
        self.listen = Address("127.0.0.1", free_port())
        self.stats = Address("127.0.0.1", free_port())
        self.directory = workdir.resolve() / self.name
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path = self.directory / "haproxy.cfg"
        self.config_path.write_text(config_text(self.listen, self.stats, servers, variant))
        self._server_names = {f"redis{i}": a for i, a in enumerate(servers, start=1)}
        self.process = ManagedProcess(
            [find_haproxy(), "-db", "-f", str(self.config_path)], self.directory, name=self.name
        )

    def server_states(self) -> dict[Address, str]:
        """``{server address: "UP" | "DOWN" | ...}`` from the stats page (CSV)."""
        url = f"http://{self.stats}/stats;csv"
        with _opener.open(url, timeout=2) as response:
            text = response.read().decode()
        states: dict[Address, str] = {}
        for row in csv.DictReader(io.StringIO(text.lstrip("# "))):
            # the addr column is empty for servers that are down: map by server name
            address = self._server_names.get(row.get("svname", ""))
            if row.get("pxname") == "bk_redis" and address is not None:
                states[address] = row.get("status", "").split(" ")[0]
        return states

    def wait_routing_to(self, primary: Address, timeout: float = 20.0) -> None:
        """Wait until only ``primary`` is UP (the check has seen every node's role)."""

        def only_primary_up() -> bool:
            states = self.server_states()
            up = {a for a, s in states.items() if s == "UP"}
            return up == {primary}

        if not self.process.alive:
            raise RuntimeError(f"{self.name} exited:\n{self.process.log_tail()}")
        wait_until(
            only_primary_up,
            timeout,
            interval=0.05,
            what=f"{self.name} to route only to {primary}",
            ignore=(OSError, ValueError),
        )

    def stop(self) -> None:
        self.process.stop()
