"""Exit codes shared by every ``sentinel-xds`` command, so scripts and alerts can rely on them.

0: fine. 1: the command ran and found a problem (or a drain did not
complete, or was refused before changing anything). 2: bad input (usage,
config, unknown group or node), always with a one-line reason on stderr.
"""

from __future__ import annotations

__all__ = ["EXIT_OK", "EXIT_PROBLEMS", "EXIT_USAGE"]

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
