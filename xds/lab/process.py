"""Child processes that cannot outlive the lab that started them.

The demo, the integration tests and the benchmarks start real Redis, Sentinel and
Envoy binaries. A failed assertion, an exception or Ctrl-C must not leave them
running (they hold ports, and a stray Sentinel keeps failing over whatever it
finds). This module is the one place that knows how to start such a process,
send it signals, stop it for certain, and find its log:

* every child runs in its own session / process group, so signals reach anything
  it forks (Redis forks for replication), and a terminal Ctrl-C is delivered to
  us only, letting *us* shut the children down in order;
* every live child is in a module registry; :func:`stop_all` stops them and is
  registered with :mod:`atexit`, so an interpreter that exits for any reason
  other than SIGKILL cleans up;
* :func:`wait_until` is the polling-with-a-deadline helper used instead of sleeps.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import TypeVar

__all__ = [
    "ManagedProcess",
    "install_sigterm_handler",
    "live_processes",
    "stop_all",
    "wait_until",
]

T = TypeVar("T")

_registry_lock = threading.Lock()
_registry: dict[int, ManagedProcess] = {}  # id(process) -> process, insertion ordered


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float,
    interval: float = 0.05,
    what: str = "condition",
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns something truthy.

    Returns that value. Exceptions listed in ``ignore`` count as "not yet" (the last
    one is chained to the timeout). Raises ``TimeoutError("timed out after
    {timeout}s waiting for {what}")`` once ``timeout`` seconds have passed. The
    predicate is always called at least once, and once more at the deadline.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = predicate()
        except ignore as exc:
            last_error = exc
        else:
            if result:
                return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}") from last_error
        time.sleep(min(interval, remaining))


class ManagedProcess:
    """A child process in its own process group, logging to ``<log_dir>/<name>.log``.

    The process is started by the constructor. Signals go to the whole process
    group. The child is reaped only by :meth:`stop` / :meth:`kill`, never by
    :attr:`alive`, so its process-group id cannot be recycled while we may still
    signal it.
    """

    def __init__(
        self,
        argv: Sequence[str],
        log_dir: Path,
        name: str | None = None,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        if not argv:
            raise ValueError("argv must not be empty")
        self.argv: tuple[str, ...] = tuple(argv)
        self.name: str = name or Path(self.argv[0]).name
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path: Path = log_dir / f"{self.name}.log"
        self._lock = threading.RLock()
        with self.log_path.open("ab") as log:  # append: a restart keeps the earlier output
            self._popen = subprocess.Popen(
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=dict(env) if env is not None else None,
                cwd=cwd,
            )
        with _registry_lock:
            _registry[id(self)] = self

    def __repr__(self) -> str:
        state = "alive" if self.alive else "exited"
        return f"<ManagedProcess {self.name} pid={self.pid} {state}>"

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once :meth:`stop` or :meth:`kill` reaped the process, else None."""
        return self._popen.returncode

    @property
    def alive(self) -> bool:
        """True while the process has not exited (a paused process is alive)."""
        return not self._exited()

    def _exited(self) -> bool:
        if self._popen.returncode is not None:
            return True
        try:
            # WNOWAIT: look without reaping, so the pid (= our pgid) stays ours.
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # reaped behind our back
            return True
        return info is not None

    def _wait_exited(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        delay = 0.005
        while not self._exited():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.05)
        return True

    def _signal_group(self, sig: signal.Signals) -> None:
        if self._popen.returncode is not None:
            return  # reaped: the group id may belong to someone else by now
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def _reap(self) -> None:
        # The leader has exited but is not reaped yet, so the group id is still ours:
        # sweep anything it forked that is still around, then reap.
        self._signal_group(signal.SIGKILL)
        self._popen.wait()
        with _registry_lock:
            _registry.pop(id(self), None)

    def terminate(self) -> None:
        """Send SIGCONT then SIGTERM to the group without waiting (see :meth:`stop`)."""
        with self._lock:
            if not self._exited():
                self._signal_group(signal.SIGCONT)
                self._signal_group(signal.SIGTERM)

    def stop(self, timeout: float = 5.0) -> int | None:
        """Stop the process: SIGCONT + SIGTERM, then SIGKILL after ``timeout`` seconds.

        Idempotent; returns the exit status (negative for a signal).
        """
        with self._lock:
            if self._popen.returncode is None:
                if not self._exited():
                    self._signal_group(signal.SIGCONT)  # a paused process cannot handle SIGTERM
                    self._signal_group(signal.SIGTERM)
                    if not self._wait_exited(timeout):
                        self._signal_group(signal.SIGKILL)
                self._reap()
            return self._popen.returncode

    def kill(self) -> int | None:
        """SIGKILL the process group and reap the process. Idempotent."""
        with self._lock:
            if self._popen.returncode is None:
                self._signal_group(signal.SIGKILL)
                self._reap()
            return self._popen.returncode

    def send_signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the process itself (not its group), as a supervisor would."""
        with self._lock:
            if not self._exited():
                self._popen.send_signal(sig)

    def wait(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` s for the process to exit on its own; its status or None."""
        with self._lock:
            if not self._wait_exited(timeout):
                return None
            self._reap()
            return self._popen.returncode

    def pause(self) -> None:
        """SIGSTOP the process group (it stops answering but keeps its sockets)."""
        with self._lock:
            if not self._exited():
                self._signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT the process group."""
        with self._lock:
            if not self._exited():
                self._signal_group(signal.SIGCONT)

    def log_tail(self, n: int = 40) -> str:
        """The last ``n`` lines of the process's stdout/stderr log ('' if none)."""
        return tail_file(self.log_path, n)


def tail_file(path: Path, n: int = 40, max_bytes: int = 256 * 1024) -> str:
    """The last ``n`` lines of a text file, reading at most ``max_bytes`` from its end."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except FileNotFoundError:
        return ""
    lines = data.decode("utf-8", errors="replace").splitlines()
    return "\n".join(lines[-n:]) if n > 0 else ""


def live_processes() -> list[ManagedProcess]:
    """Registered processes not yet stopped or killed, oldest first."""
    with _registry_lock:
        return list(_registry.values())


def stop_all(timeout: float = 5.0) -> int:
    """Stop every registered process (newest first); return how many were still running.

    All are sent SIGTERM before any is waited for, so a full lab stops in about the
    time of its slowest process rather than the sum.
    """
    procs = list(reversed(live_processes()))
    running = [p for p in procs if p.alive]
    for proc in running:
        proc.terminate()
    for proc in procs:
        proc.stop(timeout)
    return len(running)


atexit.register(stop_all)


def install_sigterm_handler() -> None:
    """Make SIGTERM raise ``SystemExit(143)`` so ``finally`` blocks and :mod:`atexit` run.

    Opt-in for long-running entry points (the demo, benchmarks). Only the main thread
    can install signal handlers; an existing non-default handler is left alone.
    """
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def _handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _handler)
