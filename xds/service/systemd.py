"""systemd's notify protocol: ``READY=1``, ``STATUS=``, ``WATCHDOG=1``, ``STOPPING=1``.

The unit runs the control plane as ``Type=notify`` so that "started" means
"serving": ``READY=1`` is sent once the first snapshot is in the cache and a
Sentinel majority answered (the same test as ``/readyz``). ``STATUS=`` shows
each group's primary in ``systemctl status``. With ``WatchdogSec=`` set,
systemd passes ``WATCHDOG_USEC`` and restarts the service when pings stop;
the pings are sent *from the event loop* on purpose, so a loop that stalls
(and would stop following failovers) is exactly what stops them.

The protocol is one datagram per message on the ``AF_UNIX`` socket named by
``NOTIFY_SOCKET`` (a leading ``@`` is Linux's abstract namespace). It is small
enough that a dependency (``sdnotify``, ``systemd-python`` with its C
extension) would add more than it saves. Outside systemd nothing is sent.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Mapping

import structlog

__all__ = ["SystemdNotifier", "notify_lifecycle", "watchdog_interval_s"]

log = structlog.get_logger("xds.service.systemd")

#: how often readiness is checked before READY=1, and STATUS refreshed after
POLL_S = 0.1


class SystemdNotifier:
    """Sends notify messages to ``NOTIFY_SOCKET``; a no-op when there is none."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        path = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
        if path.startswith("@"):
            path = "\0" + path[1:]
        self._path = path or None
        self._sock: socket.socket | None = None
        #: errors already logged since the last send that worked (see :meth:`send`)
        self._logged: set[str] = set()
        self._failed_sends = 0

    @property
    def enabled(self) -> bool:
        return self._path is not None

    def send(self, *fields: str) -> bool:
        """Send ``KEY=value`` lines as one datagram; False if it failed.

        A failure is logged once per distinct error until a send works again
        (then ``systemd.notify_recovered`` says how many were lost): a broken
        ``NOTIFY_SOCKET`` fails every watchdog ping, and one warning per ping
        would bury the log without saying anything new.
        """
        if self._path is None:
            return False
        if any("\n" in f for f in fields):
            raise ValueError("a notify field cannot contain a newline")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(fields).encode(), self._path)
        except OSError as exc:
            self._failed_sends += 1
            error = str(exc)
            if error not in self._logged:
                self._logged.add(error)
                log.warning("systemd.notify_failed", error=error)
            return False
        if self._failed_sends:
            log.info("systemd.notify_recovered", failed_sends=self._failed_sends)
            self._failed_sends = 0
            self._logged.clear()
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval_s(env: Mapping[str, str] | None = None) -> float | None:
    """Half of systemd's ``WATCHDOG_USEC`` (its own advice), or None when not asked.

    ``WATCHDOG_PID``, when set, must be this process: a child that inherited
    the environment must not ping for its parent.
    """
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not (usec.isascii() and usec.isdigit()) or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 2_000_000


async def notify_lifecycle(
    notifier: SystemdNotifier,
    ready: Callable[[], tuple[bool, str]],
    status: Callable[[], str],
    watchdog_s: float | None,
) -> None:
    """READY=1 once ``ready()``, then STATUS on change and WATCHDOG=1 every ``watchdog_s``.

    Runs until cancelled (the service's shutdown), then sends ``STOPPING=1`` and
    closes the notifier's socket.
    """
    loop = asyncio.get_running_loop()
    sent_status = ""
    next_ping = loop.time()
    is_ready = False
    try:
        while True:
            now = loop.time()
            if watchdog_s is not None and now >= next_ping:
                notifier.send("WATCHDOG=1")
                next_ping = now + watchdog_s
            if not is_ready:
                ok, _why = ready()
                if ok:
                    is_ready = True
                    sent_status = status()
                    notifier.send("READY=1", f"STATUS={sent_status}")
                    log.info("systemd.ready", status=sent_status)
            else:
                text = status()
                if text != sent_status:
                    sent_status = text
                    notifier.send(f"STATUS={text}")
            await asyncio.sleep(POLL_S)
    finally:
        notifier.send("STOPPING=1")
        notifier.close()
