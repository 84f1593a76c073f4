"""The machine and the versions the numbers were measured with (kept with the numbers)."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from xds.lab import find_envoy

from .haproxy import find_haproxy

__all__ = ["machine_info"]


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    except OSError as exc:
        return f"unavailable ({exc})"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "unavailable"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _match(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    return found.group(1) if found else text


def _haproxy_version() -> str:
    try:
        binary = find_haproxy()
    except FileNotFoundError:
        return "not installed"  # a run without the HAProxy columns does not need it
    return _match(r"version (\S+)", _first_line([binary, "-v"]))


def machine_info() -> dict[str, Any]:
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "os": platform.platform(),
        "versions": {
            "redis": _match(r"v=(\S+)", _first_line(["redis-server", "--version"])),
            "envoy": _match(r"/(\d+\.\d+\.\d+)/", _first_line([str(find_envoy()), "--version"])),
            "haproxy": _haproxy_version(),
            "python": platform.python_version(),
            "redis-py": metadata.version("redis"),
            "sentinel-xds": metadata.version("sentinel-xds"),
        },
    }
