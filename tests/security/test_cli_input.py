"""Bad input to the command line ends with exit 2 and a message naming what to fix, never a
Python traceback (unless ``--debug``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def orchestra(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestra", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "PATH": "/usr/bin:/bin",
            "COLUMNS": "200",
            "HOME": str(ROOT / ".orchestra" / "home"),
            "ORCHESTRA_CHECKPOINT_URL": "none",
            "PYTHONPATH": str(ROOT),
        },
    )


def clean_exit_2(p: subprocess.CompletedProcess[str], *needles: str) -> str:
    text = p.stdout + p.stderr
    assert p.returncode == 2, text
    assert "Traceback" not in text, text
    for n in needles:
        assert n in text, f"{n!r} not in: {text}"
    return text


class TestRunInput:
    def test_json_that_is_not_an_object(self) -> None:
        """``-i '[1,2,3]'``: the input must be a JSON object, and the message says so."""
        p = orchestra("run", "graphs/refund.py", "-i", "[1,2,3]")
        clean_exit_2(p, "--input", "JSON object", "list")

    def test_missing_input_file(self) -> None:
        """``-i @missing.json``: the message names the file that is not there."""
        p = orchestra("run", "graphs/refund.py", "-i", "@missing.json")
        clean_exit_2(p, "--input", "missing.json")

    def test_input_that_is_not_json(self) -> None:
        p = orchestra("run", "graphs/refund.py", "-i", "{customer_id: c-1}")
        clean_exit_2(p, "--input", "not valid JSON")


class TestGraphFileErrors:
    def test_name_error_in_a_python_graph_names_file_and_line(self, tmp_path: Path) -> None:
        """A graph file that raises while it is imported: exit 2 with ``file:line`` and the
        error, no traceback; ``--debug`` shows the traceback."""
        g = tmp_path / "broken.py"
        g.write_text("from orchestra import Graph\n\ngraph = Graph(nme)\n")
        text = clean_exit_2(orchestra("run", str(g)), f"{g}:3", "NameError", "nme")
        assert "is not defined" in text
        debug = orchestra("--debug", "run", str(g))
        assert debug.returncode == 2
        assert "Traceback" in debug.stdout + debug.stderr

    def test_syntax_error_in_a_python_graph_names_file_and_line(self, tmp_path: Path) -> None:
        g = tmp_path / "syntax.py"
        g.write_text("graph = (\n")
        clean_exit_2(orchestra("run", str(g)), f"{g}:1", "SyntaxError")

    def test_missing_graph_file(self) -> None:
        clean_exit_2(orchestra("run", "no/such/graph.yaml"), "no/such/graph.yaml", "no such file")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["skills", "list", "--catalog", "no/such/dir"], ["no/such/dir"]),
        (["resume", "nope-run", "--answer", "maybe"], ["--answer"]),
        (["worker", "--skills", "no/such/skills.py"], ["no/such/skills.py"]),
        (["worker", "--fleet-file", "no/such/fleet.yaml", "--role", "x"], ["no/such/fleet.yaml"]),
    ],
)
def test_other_commands_refuse_bad_input_with_exit_2(args: list[str], needles: list[str]) -> None:
    """Every command that reads a file or an option names what is wrong, with exit 2."""
    clean_exit_2(orchestra(*args), *needles)


def test_a_secret_input_without_a_key_is_refused_with_exit_2(tmp_path: Path) -> None:
    """The run needs ORCHESTRA_SECRET_KEY to seal its SecretStr: the message says how to set
    one, and the password is printed nowhere."""
    data = tmp_path / "in.json"
    data.write_text('{"user": "ann", "password": "Pl4nted-S3cret-pw-7c1e", "card": "4111"}')
    p = orchestra("run", "tests/fleet/login_graph.py", "-i", f"@{data}")
    text = clean_exit_2(p, "ORCHESTRA_SECRET_KEY is not set", "orchestra keygen")
    assert "Pl4nted" not in text
