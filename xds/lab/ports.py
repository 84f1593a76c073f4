"""Free loopback ports for lab processes.

The lab starts many short-lived Redis, Sentinel and Envoy processes side by side.
Each needs its own port on 127.0.0.1, and asking the kernel for an ephemeral port
is the only way to avoid colliding with whatever else runs on the machine. The
kernel may hand the same port out again once it is closed, so this module also
remembers every port it has given out and never returns one twice in a process.
The well-known Redis ports are skipped because a distribution-started Redis or
Sentinel may be listening there (or start later).
"""

from __future__ import annotations

import socket
import threading

__all__ = ["RESERVED_PORTS", "free_port"]

#: Ports never handed out: a system Redis / Sentinel may own them.
RESERVED_PORTS: frozenset[int] = frozenset({6379, 26379})

_MAX_ATTEMPTS = 200

_lock = threading.Lock()
_handed_out: set[int] = set()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free just now and not returned before.

    The port is found by binding to port 0 and reading what the kernel chose, then
    closing the socket. There is a small window in which another program could take
    it; the lab's start functions retry with a fresh port when a bind fails.
    """
    with _lock:
        for _ in range(_MAX_ATTEMPTS):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                port: int = sock.getsockname()[1]
            if port in RESERVED_PORTS or port in _handed_out:
                continue
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no unused free port found after {_MAX_ATTEMPTS} attempts")
