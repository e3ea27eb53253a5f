"""The first hour of a new user, point by point (issue 16): what they type works as written,
errors say what to fix, and nothing of the test suite leaks into their own history."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestra.cli import app

ROOT = Path(__file__).resolve().parents[1]


def orchestra(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``orchestra ARGS`` as a user runs it (a subprocess in the checkout, 200 columns)."""
    return subprocess.run(
        [sys.executable, "-m", "orchestra", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


# ------------------------------------------------------------------ make demo


def _fake_venv(tmp: Path) -> Path:
    """A venv whose pip records each install and whose orchestra only says it ran."""
    venv = tmp / "venv"
    (venv / "bin").mkdir(parents=True)
    scripts = {
        "python": "#!/bin/sh\nexit 0\n",
        "pip": f'#!/bin/sh\necho "$@" >> {tmp}/pip-calls\n',
        "orchestra": '#!/bin/sh\necho "orchestra ran: $@"\n',
    }
    for name, body in scripts.items():
        f = venv / "bin" / name
        f.write_text(body)
        f.chmod(0o755)
    return venv


def test_make_demo_installs_once_and_says_how_to_run_orchestra(tmp_path: Path) -> None:
    """A second `make demo` does not reinstall; both tell where `orchestra` is and how to
    put it on PATH."""
    venv = _fake_venv(tmp_path)
    outputs = []
    for _ in range(2):
        p = subprocess.run(
            ["make", "--no-print-directory", "demo", f"VENV={venv}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 0, p.stdout + p.stderr
        outputs.append(p.stdout)
    calls = (tmp_path / "pip-calls").read_text().splitlines()
    assert calls == ["install -q -e ."], "the second make demo reinstalled"
    for out in outputs:
        assert "orchestra ran: run graphs/support_triage.py" in out
        assert f"{venv}/bin/orchestra" in out
        assert f"source {venv}/bin/activate" in out


# ------------------------------------------------------------------ YAML graphs


def test_the_yaml_example_graph_runs_and_reroutes() -> None:
    p = orchestra(
        "run",
        "graphs/refund.yaml",
        "-i",
        '{"customer_id": "C-1001", "order_id": "O-17", "amount": 30}',
        "--fail",
        "stripe_refund",
        env={"ORCHESTRA_TRUSTED_PATHS": str(ROOT / "skills")},  # the catalog it names
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "rerouted to" in p.stdout and "COMPLETED" in p.stdout


@pytest.mark.parametrize("key", ["after", "depends_on"])
def test_a_yaml_step_names_its_dependencies_with_after_or_depends_on(
    tmp_path: Path, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestra.loaders import load_graph

    monkeypatch.setenv("ORCHESTRA_TRUSTED_PATHS", str(ROOT / "skills"))  # a graph outside

    spec = (ROOT / "graphs" / "refund.yaml").read_text().replace("after:", f"{key}:")
    f = tmp_path / "g.yaml"
    f.write_text(spec.replace("catalog: ../skills", f"catalog: {ROOT / 'skills'}"))
    g = load_graph(f)
    assert [s.depends_on for s in g.steps] == [[], ["customer"], ["refund"]]


def test_an_unknown_step_key_lists_the_keys_a_step_takes(tmp_path: Path) -> None:
    from orchestra.errors import GraphSpecError
    from orchestra.loaders import load_graph

    f = tmp_path / "g.yaml"
    f.write_text("name: g\nsteps:\n  - id: a\n    candidates: [x]\n    needs: b\n")
    with pytest.raises(GraphSpecError) as e:
        load_graph(f)
    msg = str(e.value)
    assert "steps[0].needs" in msg and "unknown key" in msg
    assert "after" in msg and "candidates" in msg and "inputs" in msg


# ------------------------------------------------------------------ error text


def test_brackets_in_an_error_are_printed_not_eaten_as_markup(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("name: t\nsteps:\n  - id: a\n    candidates: [x, y: [z]\n")
    p = orchestra("run", str(f))
    assert p.returncode == 2, p.stdout + p.stderr
    assert "candidates: [x, y: [z]" in p.stdout + p.stderr
    assert "expected ',' or ']', but got" in p.stdout + p.stderr


def test_did_you_mean_offers_the_misspelt_skill() -> None:
    p = orchestra("run", "graphs/refund.py", "--fail", "stripe_refnd")
    assert p.returncode == 2
    assert "did you mean: stripe_refund" in p.stdout + p.stderr


def test_a_worker_queue_naming_no_skill_offers_the_close_one() -> None:
    res = CliRunner().invoke(
        app, ["worker", "--graph", "graphs/refund.py", "-Q", "stripe_refnd"], env={"COLUMNS": "200"}
    )
    assert res.exit_code == 2, res.output
    assert "did you mean: stripe_refund" in res.output


def test_no_run_id_is_printed_before_an_input_error() -> None:
    p = orchestra("run", "graphs/refund.py", "-i", '{"customer_id": "c-1"}')
    assert p.returncode == 2, p.stdout + p.stderr
    assert "amount" in p.stdout + p.stderr
    assert not re.search(r"^run [0-9a-f]{12}", p.stdout + p.stderr, re.M)


def test_help_shows_no_bool_placeholder_for_flags() -> None:
    for cmd in (["--help"], ["run", "--help"], ["resume", "--help"], ["trace", "--help"]):
        res = CliRunner().invoke(app, cmd, env={"COLUMNS": "200"})
        assert res.exit_code == 0
        assert "<bool>" not in res.output, cmd


# ------------------------------------------------------------------ escalation


def test_an_escalation_says_how_to_resume_and_names_each_reason_once(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    p = orchestra(
        "run",
        "graphs/refund.py",
        "-i",
        '{"customer_id": "c-1", "amount": 5000}',
        "--json",
        str(out),
        env={"ORCHESTRA_MAX_AMOUNT": "1000"},
    )
    assert p.returncode == 4, p.stdout + p.stderr
    result = json.loads(out.read_text())
    assert f"orchestra resume {result['run_id']} --answer" in p.stdout
    # both refund providers are blocked by the same limit: the reason says so once
    assert result["reason"].count("exceeds the limit 1000") == 1, result["reason"]
    assert p.stdout.count("exceeds the limit 1000") == 1, p.stdout  # in the summary only


# ------------------------------------------------------------------ logs


def test_orchestra_log_level_and_json_are_honoured() -> None:
    p = orchestra(
        "run",
        "graphs/refund.py",
        "-q",
        "-i",
        '{"customer_id": "c-1", "amount": 12}',
        env={"ORCHESTRA_LOG_LEVEL": "INFO", "ORCHESTRA_LOG_JSON": "true"},
    )
    assert p.returncode == 0, p.stdout + p.stderr
    lines = [json.loads(x) for x in p.stderr.splitlines() if x.startswith("{")]
    decisions = [x for x in lines if x.get("event") == "decision"]
    assert decisions and all(d["level"] == "info" for d in decisions)
    assert {d["kind"] for d in decisions} >= {"execute", "succeed", "complete"}

    quiet = orchestra("run", "graphs/refund.py", "-q", "-i", '{"customer_id": "c-1", "amount": 12}')
    assert '"decision"' not in quiet.stderr and "decision" not in quiet.stderr


def test_a_bad_log_level_is_a_clear_error() -> None:
    res = CliRunner().invoke(app, ["trace"], env={"ORCHESTRA_LOG_LEVEL": "LOUD"})
    assert res.exit_code == 2
    assert "ORCHESTRA_LOG_LEVEL" in res.output and "LOUD" in res.output


# ------------------------------------------------------------------ the suite's own history


def test_the_suite_keeps_its_runs_out_of_the_users_history() -> None:
    """`make test` checkpoints into a temporary store, never .orchestra/ or the user's."""
    from orchestra.config import Settings

    url = Settings().checkpoint_url
    path = Path(url.removeprefix("sqlite:///"))
    assert url.startswith("sqlite:///")
    assert path.is_relative_to(tempfile.gettempdir()), url
    assert not path.is_relative_to(ROOT)


# ------------------------------------------------------------------ install hints, progress


def test_the_embed_hint_names_a_command_that_installs_this_project(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from structlog.testing import capture_logs

    from orchestra.retrieval import embedders

    monkeypatch.setattr(embedders, "_embed_extra_installed", lambda: False)
    with capture_logs() as logs:
        assert embedders.default_embedder() is None
    (line,) = [x for x in logs if x["log_level"] == "warning"]
    assert "orchestra[embed]" not in line["hint"]
    assert "pip install -e '.[embed]'" in line["hint"]


def test_a_large_first_embedding_build_reports_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    from orchestra.retrieval import index

    lines: list[tuple[str, str, dict[str, object]]] = []

    class Recorder:
        def warning(self, event: str, **kw: object) -> None:
            lines.append(("warning", event, kw))

        def info(self, event: str, **kw: object) -> None:
            lines.append(("info", event, kw))

    monkeypatch.setattr(index, "log", Recorder())
    store = index.EmbeddingStore(tmp_path, "fake")
    texts = [f"skill {i}" for i in range(450)]
    vecs = store.embed(texts, lambda xs: np.ones((len(xs), 4), dtype=np.float32))
    assert vecs.shape == (450, 4)
    level, event, kw = lines[0]
    assert level == "warning" and "embedding 450" in event and kw["total"] == 450
    progress = [kw for _, e, kw in lines if e == "dense retrieval: embedding"]
    assert len(progress) > 1 and progress[-1]["done"] == 450 and progress[-1]["percent"] == 100
    lines.clear()
    store.embed(texts, lambda xs: np.ones((len(xs), 4), dtype=np.float32))
    assert lines == [], "a rebuilt index embeds nothing new and says nothing"


# ------------------------------------------------------------------ the files a project has


def test_the_license_file_is_the_license_pyproject_names() -> None:
    import tomllib

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
