"""A deliberately dumb RESP2 client on ONE socket that never reconnects.

redis-py reconnects silently, which would hide exactly what we must prove: that
the application's TCP connection to its sidecar survives a failover. Here an
EOF or reset is an error the test sees.
"""

from __future__ import annotations

import socket


class ConnectionLost(Exception):
    """The server closed our one connection."""


class RespError(Exception):
    """A ``-ERR`` style reply (the command failed, the connection is fine)."""


class OneConnection:
    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.local_port = self.sock.getsockname()[1]

    def command(self, *args: str) -> object:
        out = f"*{len(args)}\r\n".encode()
        for a in args:
            data = a.encode()
            out += b"$%d\r\n%s\r\n" % (len(data), data)
        try:
            self.sock.sendall(out)
        except OSError as exc:
            raise ConnectionLost(str(exc)) from exc
        return self._reply()

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except OSError as exc:
                raise ConnectionLost(str(exc)) from exc
            if not chunk:
                raise ConnectionLost("EOF")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _reply(self) -> object:
        line = self._line()
        kind, rest = line[:1], line[1:].decode()
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RespError(rest)
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionLost("EOF")
                self.buf += chunk
            data, self.buf = self.buf[:n], self.buf[n + 2 :]
            return data.decode()
        if kind == b"*":
            return [self._reply() for _ in range(int(rest))]
        raise RespError(f"unexpected reply {line!r}")

    def close(self) -> None:
        self.sock.close()
