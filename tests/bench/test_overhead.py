"""``orchestra bench overhead`` at the smallest sizes: every figure of the issue's JSON is
there and measured (real Redis and two real workers for the fleet part); the ReAct baseline
names the extra it needs when LangChain is missing."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestra import ConfigError
from orchestra.cli import app


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_the_overhead_bench_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "overhead.json"
    result = CliRunner().invoke(
        app,
        ["bench", "overhead", "--sizes", "3,8", "--fleet-steps", "40", "--json", str(out)],
    )
    assert result.exit_code == 0, result.output
    r = json.loads(out.read_text())
    for shape in ("chain", "fanout"):
        assert set(r[shape]) == {"3", "8"}
        for f in r[shape].values():
            assert set(f) == {"orchestra_ms_per_step", "langgraph_ms_per_step", "ratio"}
            assert f["orchestra_ms_per_step"] > 0 and f["langgraph_ms_per_step"] > 0
            assert f["ratio"] == pytest.approx(
                f["orchestra_ms_per_step"] / f["langgraph_ms_per_step"], rel=0.01
            )
    assert set(r["checkpoint_bytes_per_step"]) == {"3", "8"}
    assert all(b > 0 for b in r["checkpoint_bytes_per_step"].values())
    fleet = r["fleet"]
    assert {"orchestra_steps_per_s", "celery_steps_per_s", "ratio"} <= set(fleet)
    assert fleet["orchestra_steps_per_s"] > 0 and fleet["celery_steps_per_s"] > 0
    assert set(r["start"]) == {"import_s", "help_s", "python_s"}
    assert r["chain_growth"] == pytest.approx(
        r["chain"]["8"]["orchestra_ms_per_step"] / r["chain"]["3"]["orchestra_ms_per_step"],
        rel=0.01,
    )
    assert "fleet fan-out of 40 steps" in result.output
    assert "per-step cost of the 8-step chain / the 3-step chain" in result.output


def test_bad_sizes_are_refused() -> None:
    result = CliRunner().invoke(app, ["bench", "overhead", "--sizes", "ten", "--no-fleet"])
    assert result.exit_code == 2 and "--sizes takes numbers" in result.output


def test_the_react_baseline_names_the_bench_extra_without_langchain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from orchestra.bench.baselines import _create_agent

    monkeypatch.setitem(sys.modules, "langchain", None)
    monkeypatch.setitem(sys.modules, "langchain.agents", None)
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[bench\]'"):
        _create_agent()
