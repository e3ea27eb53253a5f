"""The graph registry of runs as a service: names only, errors that say what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestra.errors import ConfigError
from orchestra.results import Decision, RunState, StepRecord
from orchestra.service import GraphRegistry, UnknownGraphError
from orchestra.service.client import result_from_state

ROOT = Path(__file__).resolve().parents[2]
CHAIN = ROOT / "tests" / "fleet" / "chain_graph.py"


class TestRegistry:
    def test_a_graph_file_is_registered_under_the_graph_s_own_name(self) -> None:
        reg = GraphRegistry.from_sources([CHAIN])
        assert reg.names() == ["chain"]
        assert reg.get("chain").name == "chain"
        assert reg.limit("chain") is None

    def test_a_registry_file_names_graphs_and_their_limits_relative_to_itself(
        self, tmp_path: Path
    ) -> None:
        (tmp_path / "g").mkdir()
        (tmp_path / "g" / "chain.py").write_text(CHAIN.read_text().replace(
            'Path(__file__).with_name("fleet_skills.py")', f'Path("{CHAIN.parent}/fleet_skills.py")'
        ))  # fmt: skip
        f = tmp_path / "graphs.yaml"
        f.write_text("graphs:\n  chained: g/chain.py\n  capped: {file: g/chain.py, max_runs: 2}\n")
        reg = GraphRegistry.from_sources(registry_file=f)
        assert reg.names() == ["capped", "chained"]
        assert reg.limit("capped") == 2 and reg.limit("chained") is None
        assert reg.get("chained").name == "chain"

    def test_an_unknown_name_lists_the_registered_ones(self) -> None:
        reg = GraphRegistry.from_sources([CHAIN])
        with pytest.raises(UnknownGraphError, match=r"no registered graph 'x'.*registered: chain"):
            reg.get("x")

    @pytest.mark.parametrize(
        ("text", "match"),
        [
            ("graphs: {a: nowhere.py}\n", "no such graph file"),
            ("graphs: {a: {file: g.py, max_runs: 0}}\n", "greater than or equal to 1"),
            ("graph: {a: g.py}\n", "graphs: Field required"),
            ("graphs: [\n", "not valid YAML"),
        ],
    )
    def test_a_bad_registry_file_is_a_config_error_naming_the_problem(
        self, tmp_path: Path, text: str, match: str
    ) -> None:
        f = tmp_path / "graphs.yaml"
        f.write_text(text)
        with pytest.raises(ConfigError, match=match):
            GraphRegistry.from_sources(registry_file=f)

    def test_one_name_for_two_files_is_refused(self, tmp_path: Path) -> None:
        reg = GraphRegistry()
        reg.register("a", CHAIN)
        with pytest.raises(ConfigError, match="registered twice"):
            reg.register("a", tmp_path / "other.py")


def test_a_result_rebuilt_from_a_checkpoint_keeps_the_order_steps_finished_in() -> None:
    state = RunState(run_id="r", graph="g", status="cancelled", reason="stop")
    state.completed["b"] = StepRecord(step="b", skill="kb", output={"x": 2})
    state.completed["a"] = StepRecord(step="a", skill="ka", output={"x": 1})
    state.decisions = [
        Decision(kind="execute", step="a", skill="ka", reason=""),
        Decision(kind="succeed", step="a", skill="ka", reason=""),
        Decision(kind="execute", step="b", skill="kb", reason=""),
        Decision(kind="succeed", step="b", skill="kb", reason=""),
        Decision(kind="cancel", reason="stop"),
    ]
    res = result_from_state(state)
    assert list(res.outputs) == ["a", "b"] and res.path == ["ka", "kb"]
    assert res.status == "cancelled" and res.reason == "stop"


def test_the_bundled_registry_names_the_bundled_graphs() -> None:
    reg = GraphRegistry.from_sources(registry_file=ROOT / "workers" / "graphs.yaml")
    assert reg.names() == ["refund", "support-triage"]
    assert reg.limit("refund") == 20
    assert reg.get("refund").name == "refund"
