"""The running version, one definition for ``--version`` and ``sentinel_xds_build_info``."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["package_version"]


def package_version() -> str:
    """The installed distribution's version (the .deb and the wheel both carry it)."""
    try:
        return version("sentinel-xds")
    except PackageNotFoundError:  # a bare checkout without ``pip install -e``
        return "0+unknown"
