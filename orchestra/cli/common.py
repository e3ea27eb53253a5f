"""What every command shares: reading JSON options, refusing bad input, printing errors.

Bad input ends a command with exit code 2 and one line naming what to fix; a Python
traceback is shown only with ``orchestra --debug ...``.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any

from orchestra.errors import OrchestraError
from orchestra.redact import redact_text

__all__ = ["BadInput", "check_answer", "debug", "print_error", "read_json_object", "set_debug"]

_DEBUG = False


class BadInput(OrchestraError, ValueError):
    """A command-line value that cannot be used; the message names the option and the fix."""


def set_debug(on: bool) -> None:
    """Show Python tracebacks with errors (``orchestra --debug``)."""
    global _DEBUG
    _DEBUG = on


def debug() -> bool:
    return _DEBUG


def read_json_object(value: str, option: str) -> dict[str, Any]:
    """The JSON object given to ``option``, inline or as ``@file.json``."""
    where = option
    text = value
    if value.startswith("@"):
        path = Path(value[1:])
        where = f"{option} @{path}"
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise BadInput(f"{option}: no such file {str(path)!r}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"{option}: cannot read {str(path)!r}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(
            f"{where} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(data, dict):
        raise BadInput(
            f"{where} must be a JSON object like '{{\"field\": value}}', not a {_json_kind(data)}"
        )
    return data


def _json_kind(value: Any) -> str:
    return {list: "list", str: "string", bool: "boolean", int: "number", float: "number"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def check_answer(answer: str) -> None:
    """Refuse an ``--answer`` that is none of the answers a run understands."""
    text = answer.strip()
    if text in ("retry", "approve") or text.startswith(("goal:", "output:")):
        if text.startswith("output:"):
            body = text.removeprefix("output:").strip()
            step, eq, rest = body.partition("=")
            if eq and not body.startswith(("{", "[", '"')) and step.strip():
                body = rest  # output:STEP={json}
            read_json_object(body.strip(), "--answer output:")
        return
    raise BadInput(
        f"--answer {answer!r} is not an answer: use retry, approve, goal:NAME, "
        f"output:{{json}} or output:STEP={{json}}"
    )


def print_error(console: Any, exc: object, *, label: str = "error") -> None:
    """Print an error for a person: ``label: message``, scrubbed, printed as it is (never read
    as rich markup, so ``[...]`` in it survives); the traceback too with ``--debug``."""
    from rich.text import Text

    if _DEBUG and isinstance(exc, BaseException):
        traceback.print_exception(exc, file=sys.stderr)
    text = Text(f"{label}:", style="red bold")
    text.append(f" {redact_text(str(exc))}")
    console.print(text, highlight=False, soft_wrap=True)
