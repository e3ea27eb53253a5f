"""structlog set-up: pretty in a terminal, JSON in production, quiet by default in libraries.

Every line logged inside a span carries ``trace_id`` and ``span_id`` (so a log search and a
Jaeger trace meet), and secrets (API keys, bearer tokens, passwords in URLs, values of
``*key*``/``*token*``/``*secret*``/``*password*`` fields) are scrubbed before rendering; see
:func:`orchestra.tracing.log_processors` and :mod:`orchestra.redact`.

::

    configure_logging("INFO")                 # pretty on a TTY, JSON otherwise
    configure_logging("INFO", json=True)      # always JSON (production)
    configure_logging("INFO", stdlib=True)    # also render stdlib logging (Celery, litellm)
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from orchestra.redact import scrub_stdlib_records

__all__ = ["configure_logging", "configure_logging_from_env"]

_HANDLER_NAME = "orchestra"


def configure_logging(
    level: str | int = "WARNING",
    *,
    json: bool | None = None,
    stream: Any = None,
    stdlib: bool = False,
) -> None:
    """Configure structlog for Orchestra's (and your) log lines.

    ``json=None`` picks JSON when the stream is not a terminal.  Processors added by
    :mod:`orchestra.tracing` put ``trace_id``/``span_id`` on every line logged inside a span
    and scrub secrets.  ``stdlib=True`` also routes the standard library's ``logging`` (Celery,
    litellm, httpx…) through the same processors and renderer, via one root handler.
    """
    out: Any = stream or _Stderr()
    lvl = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    use_json = (not _isatty(out)) if json is None else json
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    from orchestra import tracing

    shared.extend(getattr(tracing, "log_processors", list)())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=_isatty(out))
    )
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    scrub_stdlib_records()  # lines printed by other libraries' own handlers, too
    if stdlib:
        _route_stdlib(shared, renderer, out, lvl)


def configure_logging_from_env(level: str | None = None, **kwargs: Any) -> str:
    """:func:`configure_logging` from ``ORCHESTRA_LOG_LEVEL`` and ``ORCHESTRA_LOG_JSON``
    (:class:`orchestra.Settings`); ``level`` (a command-line flag) wins.  Returns the level."""
    from orchestra.config import Settings

    s = Settings()
    chosen = (level or s.log_level).upper()
    if not isinstance(logging.getLevelName(chosen), int):
        from orchestra.errors import ConfigError

        raise ConfigError(
            f"unknown log level {chosen!r}; use DEBUG, INFO, WARNING, ERROR or CRITICAL",
            field="ORCHESTRA_LOG_LEVEL" if level is None else "--loglevel",
        )
    configure_logging(chosen, json=s.log_json, **kwargs)
    return chosen


class _Stderr:
    """``sys.stderr`` as it is when a line is written (a test runner or a CLI test harness
    may swap it after logging was configured, and close the one it swapped in)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def _isatty(out: Any) -> bool:
    isatty = getattr(out, "isatty", None)
    return bool(isatty()) if callable(isatty) else False


def _route_stdlib(shared: list[Any], renderer: Any, out: Any, level: int) -> None:
    """One root handler rendering stdlib records through the structlog processors."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(out)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for h in list(root.handlers):
        if h.get_name() == _HANDLER_NAME:
            root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)


def _default() -> None:
    if not structlog.is_configured():
        configure_logging("WARNING")
