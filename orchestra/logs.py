"""structlog set-up: pretty in a terminal, JSON in production, quiet by default in libraries."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

__all__ = ["configure_logging"]


def configure_logging(
    level: str | int = "WARNING", *, json: bool | None = None, stream: Any = None
) -> None:
    """Configure structlog for Orchestra's (and your) log lines.

    ``json=None`` picks JSON when the stream is not a terminal.  Processors added by
    :mod:`orchestra.tracing` put ``trace_id``/``span_id`` on every line logged inside a span
    and scrub secrets.
    """
    out = stream or sys.stderr
    lvl = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    use_json = (not out.isatty()) if json is None else json
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    from orchestra import tracing

    processors.extend(getattr(tracing, "log_processors", list)())
    processors.append(
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )


def _default() -> None:
    if not structlog.is_configured():
        configure_logging("WARNING")
