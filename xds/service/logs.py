"""Logging configuration: the one place structlog is set up ("global state department").

JSON lines when stdout is not a terminal (production, CI, journald), coloured
key=value when it is; ``log.format`` in the config forces either. Every event
has a single name (``failover.detected``, ``xds.push`` …) and its details as
keys, so a timeline can be read with ``jq`` or ``grep`` alike.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

import structlog
import structlog.tracebacks

from xds.service.secrets import REDACTOR

__all__ = ["configure_logging"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure_logging(
    fmt: Literal["auto", "json", "console"] = "auto",
    level: str = "info",
    stream: TextIO | None = None,
) -> None:
    """Configure structlog for the whole process (idempotent)."""
    out = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(
            colors=out.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    )
    renderer = REDACTOR.wrap(renderer)  # no known secret value leaves in a log line
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # no local variables in tracebacks: a secret cut at a length limit would
            # slip past the redactor (xds/service/secrets.py)
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
            if use_json
            else structlog.processors.StackInfoRenderer(),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
