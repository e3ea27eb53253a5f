"""The public surface is curated: `__all__` is sorted and lists exactly the public names, and
`import orchestra` stays light (each name is imported from its module on first use)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import orchestra

# what `import orchestra` and `orchestra --help` must not pull in (each costs tenths of a second)
HEAVY = (
    "litellm",
    "celery",
    "langgraph",
    "langchain",
    "langchain_core",
    "opentelemetry.sdk",
    "torch",
    "onnxruntime",
    "fastapi",
    "networkx",
)


def test_all_is_sorted_and_complete() -> None:
    assert orchestra.__all__ == sorted(orchestra.__all__)
    for name in orchestra.__all__:  # every public name resolves (and is kept once resolved)
        assert getattr(orchestra, name) is not None
    public = {n for n in vars(orchestra) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(orchestra, n)).__name__ == "module"}
    assert set(orchestra.__all__) == public - modules
    assert set(orchestra.__all__) <= set(dir(orchestra))


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = orchestra.Nope  # type: ignore[attr-defined]


def _loaded(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport json, sys; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _heavy(mods: set[str]) -> list[str]:
    return sorted(h for h in HEAVY if any(m == h or m.startswith(h + ".") for m in mods))


def test_import_orchestra_pulls_in_no_heavy_library() -> None:
    assert _heavy(_loaded("import orchestra")) == []


def test_the_command_line_help_pulls_in_no_heavy_library() -> None:
    code = (
        "import contextlib, io\n"
        "from orchestra.cli import app\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    app(['--help'])\n"
    )
    assert _heavy(_loaded(code)) == []
