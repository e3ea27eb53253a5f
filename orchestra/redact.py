"""Secret scrubbing, shared by log lines and exported spans.

Two rules, applied together:

* **By name.** A string under a key that names a secret (``api_key``, ``OPENAI_API_KEY``,
  ``token``, ``client_secret``, ``password``, ``Authorization``, ``cookie``…) is replaced
  whole.  Numbers are kept, so ``gen_ai.usage.input_tokens=12`` survives.
* **By shape.** Inside any string: payment card numbers (13-19 digits, spaces or dashes
  allowed, that pass the Luhn check), sealed secrets (``orchestra-sealed:…``, see
  :mod:`orchestra.secrets`), provider API keys (``sk-…``, ``sk-ant-…``, ``sk_live_…``,
  ``ghp_…``, ``xoxb-…``, ``AKIA…``, ``AIza…``, ``hf_…``), JSON web tokens, ``Bearer``/``Basic``
  credentials, the password of a URL (``redis://user:pass@host`` →
  ``redis://user:[REDACTED]@host``), ``key=value`` pairs whose key names a secret, and the
  exact value of every secret-named environment variable (``OPENAI_API_KEY``…) that this
  process can see.

::

    >>> redact_text("calling https://u:hunter2@db/x with Bearer abc.def.ghi123")
    'calling https://u:[REDACTED]@db/x with Bearer [REDACTED]'
    >>> redact({"api_key": "sk-live", "max_tokens": 100})
    {'api_key': '[REDACTED]', 'max_tokens': 100}

Scrubbing errs on the side of hiding: a harmless value under a secret-looking name is
hidden too.  Register secrets that have no recognizable shape with :func:`add_secret`.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import traceback
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

__all__ = [
    "REDACTED",
    "add_secret",
    "is_secret_key",
    "luhn",
    "redact",
    "redact_mapping",
    "redact_text",
    "refresh_env_secrets",
    "scrub_stdlib_records",
]

REDACTED = "[REDACTED]"
"""What a secret is replaced with."""

# A key names a secret when it contains one of these (case-insensitive).  ``token`` is not
# followed by ``s`` so that usage counters (``input_tokens``) are not mistaken for secrets;
# their values are numbers anyway, and numbers are never hidden.
_SECRET_KEY = re.compile(
    r"key|token(?!s)|secret|passw|pwd|authoriz|credential|cookie|signature|private",
    re.IGNORECASE,
)

# Names in free text (``api_key=...``) are matched more narrowly than dict keys, so that
# prose such as "the key step" stays readable.
_TEXT_KEY = (
    r"[A-Za-z0-9_.\-]*(?:api[_\-]?key|apikey|access[_\-]?key|secret|token(?!s)|"
    r"passw(?:or)?d|pwd|credential)[A-Za-z0-9_.\-]*"
)

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # scheme://user:password@host  (keep the user, hide the password)
    (
        re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):(?P<pw>[^@/\s]+)@"),
        r"\g<head>:" + REDACTED + "@",
    ),
    # Authorization schemes: "Bearer abc…", "Basic dXNlcjpwYXNz"
    (
        re.compile(r"\b(?P<scheme>Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=\-]{6,}", re.IGNORECASE),
        r"\g<scheme> " + REDACTED,
    ),
    # key=value / "key": "value" / key: value, where key names a secret
    (
        re.compile(
            r"(?P<key>" + _TEXT_KEY + r")(?P<sep>[\"']?\s*[=:]\s*[\"']?)(?P<val>[^\s\"'&,;}\]]+)",
            re.IGNORECASE,
        ),
        r"\g<key>\g<sep>" + REDACTED,
    ),
    # Provider keys and tokens with a recognizable shape.
    (
        re.compile(
            r"\b(?:"
            r"sk-[A-Za-z0-9_\-]{12,}"  # OpenAI, Anthropic (sk-ant-…), DeepSeek, …
            r"|(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{10,}"  # Stripe
            r"|gh[pousr]_[A-Za-z0-9]{20,}"  # GitHub
            r"|github_pat_[A-Za-z0-9_]{20,}"
            r"|xox[abposr]-[A-Za-z0-9\-]{10,}"  # Slack
            r"|AKIA[0-9A-Z]{16}"  # AWS access key id
            r"|AIza[0-9A-Za-z_\-]{30,}"  # Google
            r"|hf_[A-Za-z0-9]{20,}"  # Hugging Face
            r"|gsk_[A-Za-z0-9]{20,}"  # Groq
            r"|eyJ[A-Za-z0-9_\-]{6,}\.[A-Za-z0-9_\-]{6,}\.[A-Za-z0-9_\-]{6,}"  # JWT
            r")"
        ),
        REDACTED,
    ),
    # A sealed secret (ciphertext, but nobody needs to read it in a log)
    (re.compile(r"orchestra-sealed:v1:[sbr]:[A-Za-z0-9_\-=]+"), REDACTED),
)

# Quick reject: text without any of these substrings cannot match a pattern above.
_TRIGGERS = re.compile(
    r"://|bearer|basic|token|key|secret|passw|pwd|credential|sk-|sk_|pk_|rk_|gh[pousr]_|"
    r"github_pat|xox|AKIA|AIza|hf_|gsk_|eyJ|orchestra-sealed",
    re.IGNORECASE,
)
_DIGITS = re.compile(r"\d{4}")  # a card number has at least one run of four digits

_lock = threading.Lock()
_known: frozenset[str] = frozenset()  # exact secret values: environment and add_secret()
_added: set[str] = set()
_MIN_SECRET_LEN = 8


@lru_cache(maxsize=4096)
def is_secret_key(name: str) -> bool:
    """True when a key or attribute ``name`` says its value is a secret."""
    return _SECRET_KEY.search(name) is not None


def add_secret(value: str | None) -> None:
    """Hide this exact value wherever it appears (values shorter than 8 are ignored)."""
    global _known
    if not value or len(value) < _MIN_SECRET_LEN:
        return
    with _lock:
        _added.add(value)
        _known = _known | {value}
        _redact_short.cache_clear()


def refresh_env_secrets(environ: Mapping[str, str] | None = None) -> None:
    """Collect the values of secret-named environment variables (``*_API_KEY``, ``*_TOKEN``…).

    Reads ``os.environ`` and, when given, ``environ`` as well.
    """
    global _known
    items = list(os.environ.items()) + list((environ or {}).items())
    found = {
        v
        for k, v in items
        if is_secret_key(k) and v and len(v) >= _MIN_SECRET_LEN and not _boring(v)
    }
    with _lock:
        new = frozenset(found | _added)
        if new != _known:
            _known = new
            _redact_short.cache_clear()


def _boring(value: str) -> bool:
    # Values that are plainly not secrets (flags, paths) would only make every line noisy.
    return value.lower() in ("true", "false", "none", "null") or value.startswith("/")


def redact_text(text: str) -> str:
    """``text`` with every secret it contains replaced by ``[REDACTED]``."""
    if len(text) <= _CACHE_MAX_LEN:
        return _redact_short(text)
    return _redact_text(text)


# Span attributes and log fields repeat (skill names, step ids, statuses): short strings are
# scrubbed once.  The cache is cleared whenever the set of known secrets changes.
_CACHE_MAX_LEN = 200


@lru_cache(maxsize=8192)
def _redact_short(text: str) -> str:
    return _redact_text(text)


def luhn(digits: str) -> bool:
    """Whether a string of digits passes the Luhn check (as every payment card number does)."""
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# 13 to 19 digits, single spaces or dashes between them, not inside a longer number
_CARD = re.compile(r"(?<![\d.\-])\d(?:[ \-]?\d){12,18}(?![\d])")


def _card(m: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", m.group(0))
    return REDACTED if luhn(digits) else m.group(0)


def _redact_text(text: str) -> str:
    known = _known
    if known:
        for secret in known:
            if secret in text:
                text = text.replace(secret, REDACTED)
    if _DIGITS.search(text) is not None:
        text = _CARD.sub(_card, text)
    if _TRIGGERS.search(text) is None:
        return text
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def redact(value: Any, key: str | None = None) -> Any:
    """Scrub a value (recursing into mappings and sequences); ``key`` is the name it sits under.

    Strings and bytes under a secret-looking ``key`` are hidden whole; other strings are
    scrubbed by shape; numbers, booleans and ``None`` are returned as they are.
    """
    if isinstance(value, str):
        if key is not None and value and is_secret_key(key):
            return REDACTED
        return redact_text(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, (bytes, bytearray)):
        return REDACTED if key is not None and is_secret_key(key) else value
    if isinstance(value, Mapping):
        return redact_mapping(value)
    if isinstance(value, (list, tuple)):
        items = [redact(v, key) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, (set, frozenset)):
        return [redact(v, key) for v in value]
    if key is not None and is_secret_key(key):
        return REDACTED
    return value


def redact_mapping(mapping: Mapping[Any, Any]) -> dict[Any, Any]:
    """A copy of ``mapping`` with every value scrubbed (see :func:`redact`)."""
    return {k: redact(v, k if isinstance(k, str) else None) for k, v in mapping.items()}


def scrub_stdlib_records() -> None:
    """Scrub every standard-library log record as it is created, whichever handler prints it.

    Libraries such as litellm attach their own handlers, which no structlog processor sees;
    wrapping the record factory covers them: the message (with its arguments) and the
    exception text are scrubbed.  Only records that pass their logger's level are touched.
    Idempotent.
    """
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_orchestra_scrubs", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler to complain
            return record
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact_text(
                "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            )
        return record

    factory._orchestra_scrubs = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


refresh_env_secrets()
