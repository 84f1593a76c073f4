"""The real binaries: Envoy accepts our bootstrap, and `serve` shuts down cleanly on signals."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from redis_sentinel_watch import Address
from xds.lab import find_envoy, free_port, wait_until
from xds.lab.controlplane import ControlPlane

pytestmark = pytest.mark.integration


def test_envoy_validates_generated_bootstrap(tmp_path: Path) -> None:
    """`envoy --mode validate` accepts what `sentinel-xds bootstrap` prints."""
    out = tmp_path / "boot.yaml"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "xds.ops.cli",
            "bootstrap",
            "--node-id",
            "n",
            "--xds",
            "127.0.0.1:18000",
            "--xds",
            "127.0.0.1:18001",
            "-o",
            str(out),
        ],
        check=True,
    )
    result = subprocess.run(
        [str(find_envoy()), "--mode", "validate", "-c", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout + result.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_exits_cleanly_on_signal(tmp_path: Path, sig: signal.Signals) -> None:
    """SIGTERM/SIGINT: the process exits 0 and its ports are released, even with no
    Sentinel reachable."""
    unreachable = [Address("127.0.0.1", free_port())]
    cp = ControlPlane.for_topology(
        tmp_path, unreachable, {"mymaster": Address("127.0.0.1", free_port())}
    )
    cp.start(wait_ready=False)
    assert cp.process is not None
    wait_until(lambda: _healthz(cp), 20, what="admin /healthz")
    cp.process.send_signal(sig)
    code = cp.process.wait(timeout=15)
    assert code == 0, cp.process.log_tail()
    assert any(e.get("event") == "service.stopped" for e in cp.events())
    assert not _healthz(cp)


def _healthz(cp: ControlPlane) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{cp.admin}/healthz", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False
