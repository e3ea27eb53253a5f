"""The self-healing benchmark: stand-ins, oracle, judge, baselines and the full runs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Literal

import pytest
from skip_policy import missing
from typer.testing import CliRunner

from orchestra.bench.baselines import (
    ReActPolicy,
    SystemRun,
    ToolGraph,
    run_react,
    run_static,
    static_plan,
)
from orchestra.bench.scenario_gen import generate, generate_file
from orchestra.bench.selfheal import Verdict, check_claim, judge, oracle, run_bench
from orchestra.bench.standins import CallRecorder, StandinOutput, build_standins, make_standin
from orchestra.scenario import Fault, Scenario, ScenarioFile, ScenarioGraph, load_scenario_file

ROOT = Path(__file__).resolve().parents[2]
PAPER19 = ROOT.parent / "shared" / "data" / "selfheal" / "paper19.json"
FAULTS = ROOT / "tests" / "data" / "faults_scenarios.json"


@pytest.fixture
def paper19() -> Path:
    """The paper's 19 scenarios (shared reference data beside the project)."""
    if not PAPER19.exists():
        missing(f"{PAPER19} is not on this machine (the shared reference data)")
    return PAPER19


@pytest.fixture(scope="module")
def faults_file() -> ScenarioFile:
    return load_scenario_file(FAULTS)


def _scenario(sf: ScenarioFile, sid: str) -> tuple[ScenarioGraph, Scenario]:
    s = next(s for s in sf.scenarios if s.id == sid)
    return sf.graphs[s.graph], s


LINE = ScenarioGraph.model_validate(
    {
        "start": "S",
        "goal": "G",
        "fallback_goals": ["F"],
        "edges": [
            {"source": "S", "target": "A", "cost": 0.1},
            {"source": "S", "target": "B", "cost": 0.5},
            {"source": "A", "target": "C", "cost": 0.1},
            {"source": "B", "target": "C", "cost": 0.1},
            {"source": "C", "target": "G", "cost": 0.1},
            {"source": "A", "target": "F", "cost": 0.1},
        ],
    }
)


PREV = "<previous token>"


def _sc(down: list[str] | None = None, faults: list[Fault] | None = None) -> Scenario:
    return Scenario(id="t", graph="line", down=down or [], faults=faults or [])


# --------------------------------------------------------------------------- stand-ins


class TestStandins:
    async def test_healthy_call_returns_a_unique_token_and_is_recorded(self) -> None:
        """Every successful call returns its own token and logs upstream and outcome."""
        rec = CallRecorder("sys")
        tool = make_standin("A", [], rec)
        a = tool.parse_output(await tool.acall({"token": "x"}))
        b = tool.parse_output(await tool.acall({"token": "y"}))
        assert a["token"] != b["token"]
        assert [(r.call_number, r.outcome, r.upstream) for r in rec.calls] == [
            (1, "ok", "x"),
            (2, "ok", "y"),
        ]
        assert rec.by_token(a["token"]) is rec.calls[0]

    async def test_exception_fault_raises_for_its_calls_only(self) -> None:
        """A finite exception fault hits calls from_call..from_call+count-1."""
        rec = CallRecorder("sys")
        tool = make_standin("A", [Fault(tool="A", kind="exception", from_call=2, count=1)], rec)
        await tool.acall({})
        with pytest.raises(RuntimeError):
            await tool.acall({})
        await tool.acall({})
        assert [r.outcome for r in rec.calls] == ["ok", "exception", "ok"]

    async def test_timeout_fault_outlasts_the_timeout(self) -> None:
        """A timeout fault does not answer within the skill's timeout."""
        rec = CallRecorder("sys")
        tool = make_standin("A", [Fault(tool="A", kind="timeout")], rec, timeout_s=0.1)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(tool.acall({}), tool.timeout_s)
        assert rec.calls[0].outcome == "timeout"

    async def test_a_healthy_call_the_caller_gives_up_on_is_recorded_as_a_timeout(self) -> None:
        """A slow healthy call cancelled by the caller's timeout still shows in the log."""
        rec = CallRecorder("sys")
        tool = make_standin("A", [], rec, latency_s=1.0)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(tool.acall({}), 0.01)
        assert [(r.outcome, r.token) for r in rec.calls] == [("timeout", None)]

    async def test_malformed_fault_fails_the_output_model_but_carries_a_token(self) -> None:
        """Malformed output fails validation; its token is known as a failed call's."""
        rec = CallRecorder("sys")
        tool = make_standin("A", [Fault(tool="A", kind="malformed")], rec)
        raw = await tool.acall({})
        with pytest.raises(ValueError):
            tool.parse_output(raw)
        assert raw["token"] in rec.failed_tokens
        assert tool.output_model is StandinOutput

    async def test_down_tool_always_raises_and_the_probe_reports_it(self) -> None:
        """A tool in ``down`` raises on every call and is reported by the health probe."""
        st = build_standins(LINE, _sc(down=["A"]), "sys")
        assert st.probe.is_down("A") and not st.probe.is_down("B")
        for _ in range(3):
            with pytest.raises(ConnectionError):
                await st.tools["A"].acall({})
        assert [r.outcome for r in st.recorder.calls] == ["down"] * 3
        assert set(st.tools) == {"A", "B", "C"}  # milestones call no tool


# --------------------------------------------------------------------------- oracle


class TestOracle:
    def test_goal_reachable_around_a_down_tool(self) -> None:
        truth = oracle(LINE, _sc(down=["A"]))
        assert truth.goal_reachable and truth.best_path == ("B", "C")
        assert truth.expected == "complete"

    def test_finite_faults_are_recoverable_forever_faults_are_not(self) -> None:
        """A fault with a count is recoverable by retrying; one without is a broken tool."""
        finite = oracle(LINE, _sc(faults=[Fault(tool="C", kind="timeout", count=2)]))
        forever = oracle(LINE, _sc(faults=[Fault(tool="C", kind="malformed")]))
        assert finite.goal_reachable and not finite.broken
        assert not forever.goal_reachable and forever.broken == {"C"}

    def test_from_call_count_and_the_attempt_limit_are_honoured(self) -> None:
        """A tool failing only from its 2nd call is healthy (its 1st call works); one failing
        4 times in a row is broken (3 attempts); one failing twice then working is healthy."""
        late = oracle(LINE, _sc(faults=[Fault(tool="C", kind="exception", from_call=2)]))
        four = oracle(LINE, _sc(faults=[Fault(tool="C", kind="exception", count=4)]))
        two = oracle(LINE, _sc(faults=[Fault(tool="C", kind="exception", count=2)]))
        split = oracle(
            LINE,
            _sc(
                faults=[
                    Fault(tool="C", kind="exception", count=1),
                    Fault(tool="C", kind="timeout", from_call=2),
                ]
            ),
        )
        assert late.goal_reachable and "C" not in late.broken
        assert not four.goal_reachable and four.broken == {"C"}
        assert two.goal_reachable and not two.broken
        assert not split.goal_reachable and split.broken == {"C"}

    def test_demote_when_only_a_fallback_goal_is_reachable(self) -> None:
        truth = oracle(LINE, _sc(down=["C"]))
        assert truth.reachable_fallbacks == ("F",) and truth.expected == "demote"

    def test_escalate_when_nothing_is_reachable(self) -> None:
        truth = oracle(LINE, _sc(down=["A", "B"]))
        assert not truth.goal_reachable and truth.reachable_fallbacks == ()
        assert truth.expected == "escalate"

    def test_paper19_has_seven_unreachable_scenarios(self, paper19: Path) -> None:
        """Hand-checked: CS-5/6/7, TB-4/6 and CM-5/6 cut every start-to-goal path."""
        sf = load_scenario_file(paper19)
        unreachable = {
            s.id for s in sf.scenarios if not oracle(sf.graphs[s.graph], s).goal_reachable
        }
        assert unreachable == {"CS-5", "CS-6", "CS-7", "TB-4", "TB-6", "CM-5", "CM-6"}

    def test_fallback_goal_on_the_way_is_passed_through(self, faults_file: ScenarioFile) -> None:
        """A milestone between tools (``Charged``) calls no tool and is walked through."""
        graph, s = _scenario(faults_file, "SP-6")
        truth = oracle(graph, s)
        assert truth.expected == "demote" and truth.reachable_fallbacks == ("Charged",)
        assert ToolGraph(graph).is_walk(["CRM", "Stripe", "Email"], "Complete")


# --------------------------------------------------------------------------- judge


class TestJudge:
    async def _rec_with(
        self, calls: list[tuple[str, str | None, bool]]
    ) -> tuple[CallRecorder, list[str]]:
        """Make calls (tool, upstream, healthy?) on fresh stand-ins; return recorder and tokens."""
        rec = CallRecorder("sys")
        tokens: list[str] = []
        for tool, up, healthy in calls:
            faults = [] if healthy else [Fault(tool=tool, kind="malformed")]
            upstream = tokens[-1] if up == PREV else up
            raw = await make_standin(tool, faults, rec).acall({"token": upstream})
            tokens.append(raw.token if isinstance(raw, StandinOutput) else raw["token"])
        return rec, tokens

    def _run(
        self,
        path: list[str],
        tokens: list[str],
        status: Literal["completed", "demoted"] = "completed",
        target: str = "G",
    ) -> SystemRun:
        return SystemRun(
            system="sys",
            status=status,
            claimed_success=True,
            target=target,
            path=path,
            tokens=tokens,
        )

    async def test_a_genuine_completion_is_correct(self) -> None:
        rec, tokens = await self._rec_with([("A", None, True), ("C", PREV, True)])
        run = self._run(["A", "C"], tokens)
        v = judge(run, rec, ToolGraph(LINE), oracle(LINE, _sc()))
        assert v.correct and not v.silent_failure, v.problems

    async def test_a_skipped_step_is_a_silent_failure(self) -> None:
        """Claiming S > A > G (C skipped) is no walk of the graph."""
        rec, (ta,) = await self._rec_with([("A", None, True)])
        v = judge(self._run(["A"], [ta]), rec, ToolGraph(LINE), oracle(LINE, _sc()))
        assert v.silent_failure and not v.correct
        assert any("walk" in p for p in v.problems)

    async def test_using_a_failed_calls_output_is_a_silent_failure(self) -> None:
        rec, (ta, tc) = await self._rec_with([("A", None, True), ("C", PREV, False)])
        problems = check_claim(self._run(["A", "C"], [ta, tc]), rec, ToolGraph(LINE))
        assert any("failed call" in p for p in problems)

    async def test_consuming_something_else_than_the_previous_output_is_caught(self) -> None:
        rec, (ta, tc) = await self._rec_with([("A", None, True), ("C", "forged", True)])
        problems = check_claim(self._run(["A", "C"], [ta, tc]), rec, ToolGraph(LINE))
        assert any("consumed" in p for p in problems)

    def test_escalating_when_the_goal_was_reachable_is_wrong(self) -> None:
        run = SystemRun(system="sys", status="escalated", claimed_success=False, escalations=1)
        assert not judge(run, CallRecorder("sys"), ToolGraph(LINE), oracle(LINE, _sc())).correct
        assert judge(
            run, CallRecorder("sys"), ToolGraph(LINE), oracle(LINE, _sc(down=["A", "B"]))
        ).correct

    def test_escalating_when_a_fallback_goal_was_reachable_is_wrong(self) -> None:
        """With F reachable (C down), only a demotion is correct, not an escalation."""
        run = SystemRun(system="sys", status="escalated", claimed_success=False, escalations=1)
        truth = oracle(LINE, _sc(down=["C"]))
        assert truth.reachable_fallbacks == ("F",)
        assert not judge(run, CallRecorder("sys"), ToolGraph(LINE), truth).correct


# --------------------------------------------------------------------------- baselines


class TestReAct:
    async def test_reroutes_around_down_tools_one_model_call_per_decision(self) -> None:
        st = build_standins(LINE, _sc(down=["A"]), "react")
        run = await run_react(LINE, st.tools)
        assert run.status == "completed" and run.path == ["B", "C"]
        # A (fails), A retried? no: B is untried; then C; then the final answer
        assert [r.tool for r in st.recorder.calls] == ["A", "B", "C"]
        assert run.llm_calls == 4 and run.reroutes == 1

    async def test_retries_a_transient_fault_when_no_untried_option_is_left(self) -> None:
        st = build_standins(LINE, _sc(faults=[Fault(tool="C", kind="timeout", count=1)]), "react")
        run = await run_react(LINE, st.tools)
        assert run.status == "completed" and run.path == ["A", "C"]
        assert [r.outcome for r in st.recorder.calls_of("C")] == ["timeout", "ok"]

    async def test_demotes_then_escalates(self) -> None:
        st = build_standins(LINE, _sc(down=["C"]), "react")
        run = await run_react(LINE, st.tools)
        assert run.status == "demoted" and run.target == "F" and run.path == ["A"]
        st = build_standins(LINE, _sc(down=["A", "B"]), "react")
        run = await run_react(LINE, st.tools)
        assert run.status == "escalated" and not run.claimed_success

    async def test_backs_up_from_a_dead_end(self) -> None:
        """C broken for good: after its retries the agent leaves A and goes S > B > D > G."""
        diamond = ScenarioGraph.model_validate(
            {
                "start": "S",
                "goal": "G",
                "edges": [
                    {"source": "S", "target": "A", "cost": 0.1},
                    {"source": "S", "target": "B", "cost": 0.5},
                    {"source": "A", "target": "C", "cost": 0.1},
                    {"source": "B", "target": "D", "cost": 0.1},
                    {"source": "C", "target": "G", "cost": 0.1},
                    {"source": "D", "target": "G", "cost": 0.1},
                ],
            }
        )
        st = build_standins(diamond, _sc(faults=[Fault(tool="C", kind="exception")]), "react")
        run = await run_react(diamond, st.tools)
        assert run.status == "completed" and run.path == ["B", "D"]
        assert [r.tool for r in st.recorder.calls] == ["A", "C", "C", "C", "B", "D"]
        assert run.llm_calls == 7
        # the first decision of the policy alone, from an empty history
        assert ReActPolicy(ToolGraph(diamond)).decide([]).tool_calls[0]["name"] == "A"


class TestStatic:
    def test_plan_takes_the_cheapest_path_with_aligned_fallbacks(self) -> None:
        plan = static_plan(ToolGraph(LINE))
        assert plan is not None
        assert [(h.primary, h.fallback) for h in plan] == [("A", "B"), ("C", None)]

    async def test_fallback_then_retry_policy(self) -> None:
        """A down → fallback B; C's transient fault is absorbed by the node's RetryPolicy."""
        sc = _sc(down=["A"], faults=[Fault(tool="C", kind="exception", count=1)])
        st = build_standins(LINE, sc, "static")
        run = await run_static(LINE, st.tools)
        assert run.status == "completed" and run.path == ["B", "C"] and run.reroutes == 1
        assert [r.outcome for r in st.recorder.calls_of("C")] == ["exception", "ok"]

    async def test_escalates_instead_of_skipping_a_failed_hop(self) -> None:
        st = build_standins(LINE, _sc(faults=[Fault(tool="C", kind="malformed")]), "static")
        run = await run_static(LINE, st.tools)
        assert run.status == "escalated" and not run.claimed_success
        assert [r.outcome for r in st.recorder.calls_of("C")] == ["malformed"] * 3


# --------------------------------------------------------------------------- full runs


async def test_paper19_all_three_systems(paper19: Path) -> None:
    """Acceptance (the README's figures): orchestra 19/19 with 0 LLM calls (every paper
    scenario is healed by routing alone, or escalated: none has a reachable fallback goal to
    demote to), no silent failure; baselines measured."""
    report = await run_bench(paper19)
    orch = report["systems"]["orchestra"]
    assert orch["scenarios"] == 19 and orch["correct"] == orch["best_outcome"] == 19
    assert orch["llm_calls"] == 0 and orch["demotions"] == 0
    assert orch["silent_failures"] == 0
    react, static = report["systems"]["react"], report["systems"]["static"]
    assert react["correct"] == 19 and react["silent_failures"] == 0
    # one model call per decision, final answers included (down tools are known up front)
    assert react["llm_calls"] >= sum(
        len(s["systems"]["react"]["path"]) + 1 for s in report["per_scenario"]
    )
    assert static["silent_failures"] == 0 and static["llm_calls"] == 0
    for s in report["per_scenario"]:  # orchestra never calls a tool the probe reported down
        assert not set(s["down"]) & set(s["systems"]["orchestra"]["path"])


async def test_faults_file_all_three_systems() -> None:
    """Acceptance: with runtime faults, orchestra 0 silent and at most a tenth of react's LLM calls."""
    report = await run_bench(FAULTS, timeout_s=0.1)
    orch, react = report["systems"]["orchestra"], report["systems"]["react"]
    assert orch["silent_failures"] == 0
    assert orch["llm_calls"] * 10 <= react["llm_calls"]
    assert orch["correct"] == orch["scenarios"] and orch["demotions"] >= 1
    assert react["silent_failures"] == 0 and report["systems"]["static"]["silent_failures"] == 0
    kinds = {f["kind"] for s in report["per_scenario"] for f in s["faults"]}
    assert kinds == {"exception", "timeout", "malformed"}
    assert {s["expected"] for s in report["per_scenario"]} == {"complete", "demote", "escalate"}


async def test_generated_file_orchestra_never_fails_silently() -> None:
    """A random layered file with faults: orchestra 0 silent, LLM calls <= react's / 10."""
    sf = ScenarioFile.model_validate(generate(11, graphs=2, scenarios_per_graph=6))
    report = await run_bench(sf, ("orchestra", "react"), timeout_s=0.1)
    orch, react = report["systems"]["orchestra"], report["systems"]["react"]
    assert orch["silent_failures"] == 0 and orch["failed"] == 0
    assert orch["llm_calls"] * 10 <= react["llm_calls"]


def test_generator_is_seeded_and_valid() -> None:
    a, b = generate(3), generate(3)
    assert a == b and a != generate(4)
    sf = ScenarioFile.model_validate(a)
    assert any(s.faults for s in sf.scenarios)


def test_cli_writes_the_json_report(tmp_path: Path) -> None:
    import typer

    from orchestra.bench import selfheal

    app = typer.Typer()
    app.callback()(lambda: None)
    selfheal.register(app)
    scenarios = generate_file(tmp_path / "small.json", 1, graphs=1, scenarios_per_graph=3)
    out = tmp_path / "r.json"
    res = CliRunner().invoke(
        app,
        [
            "selfheal",
            "--scenarios",
            str(scenarios),
            "--systems",
            "react,static",
            "--json",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert set(data) >= {"systems", "per_scenario"}
    for s in data["systems"].values():
        assert set(s) >= {
            "scenarios",
            "correct",
            "llm_calls",
            "silent_failures",
            "reroutes",
            "escalations",
            "wall_ms",
        }


# --------------------------------------------------------------------------- fairness and side effects

SHIP = ScenarioGraph.model_validate(
    {
        "start": "S",
        "goal": "G",
        "fallback_goals": ["Paid"],
        "side_effects": {"Pay": {"compensate": "Refund"}, "Ship": {}},
        "edges": [
            {"source": "S", "target": "Pay", "cost": 0.1},
            {"source": "Pay", "target": "Paid", "cost": 0.0},
            {"source": "Paid", "target": "Ship", "cost": 0.1},
            {"source": "Ship", "target": "Mail", "cost": 0.1},
            {"source": "Mail", "target": "G", "cost": 0.1},
        ],
    }
)


class TestSideEffects:
    def test_a_compensation_must_not_be_a_node(self) -> None:
        from pydantic import ValidationError

        with pytest.raises(ValidationError, match="compensation is a tool of its own"):
            ScenarioGraph.model_validate(
                {**SHIP.model_dump(), "side_effects": {"Pay": {"compensate": "Mail"}}}
            )
        with pytest.raises(ValidationError, match="no tool of the graph"):
            ScenarioGraph.model_validate({**SHIP.model_dump(), "side_effects": {"Paid": {}}})

    def test_standins_declare_side_effects_and_provide_recorded_compensations(self) -> None:
        st = build_standins(SHIP, _sc(), "sys")
        assert not st.tools["Pay"].idempotent and st.tools["Pay"].compensate == "Refund"
        assert not st.tools["Ship"].idempotent and st.tools["Ship"].compensate is None
        assert st.tools["Mail"].idempotent
        assert set(st.compensations) == {"Refund"} and "Refund" not in st.tools

    async def _demoted_past(self, compensate: bool, listed: bool) -> Verdict:
        st = build_standins(SHIP, _sc(down=["Mail"]), "sys")
        pay = st.tools["Pay"].parse_output(await st.tools["Pay"].acall({}))
        await st.tools["Ship"].acall({"token": pay["token"]})
        if compensate:
            await st.compensations["Refund"].acall({"token": pay["token"]})
        run = SystemRun(
            system="sys",
            status="demoted",
            claimed_success=True,
            target="Paid",
            path=["Pay"],
            tokens=[pay["token"]],
            extra_steps=["Ship"] if listed else [],
        )
        return judge(run, st.recorder, ToolGraph(SHIP), oracle(SHIP, _sc(down=["Mail"])))

    async def test_work_beyond_a_demoted_goal_must_be_listed(self) -> None:
        """Ship acted beyond Paid and cannot be undone: left out, it is a silent failure."""
        hidden = await self._demoted_past(compensate=False, listed=False)
        assert hidden.silent_failure and any("Ship call 1 acted" in p for p in hidden.problems)
        listed = await self._demoted_past(compensate=False, listed=True)
        assert listed.correct and not listed.silent_failure and listed.extra_steps == ("Ship",)

    async def test_a_path_that_uses_a_compensated_call_is_a_silent_failure(self) -> None:
        v = await self._demoted_past(compensate=True, listed=True)
        assert v.silent_failure and v.compensations == ("Refund",)
        assert any("on the path but was compensated" in p for p in v.problems)


class TestSameHealthInformation:
    async def test_react_is_told_of_down_tools_and_never_calls_them(self) -> None:
        st = build_standins(LINE, _sc(down=["A"]), "react")
        run = await run_react(LINE, st.tools, down=["A"])
        assert run.status == "completed" and run.path == ["B", "C"]
        assert [r.tool for r in st.recorder.calls] == ["B", "C"]

    async def test_static_skips_a_down_fallback(self) -> None:
        st = build_standins(LINE, _sc(down=["A"]), "static")
        run = await run_static(LINE, st.tools, down=["A"])
        assert run.status == "completed" and run.path == ["B", "C"]
        assert not st.recorder.calls_of("A")

    async def test_react_undoes_a_side_effect_before_backing_up(self) -> None:
        """Pay1 acted, Ship1 is broken: the agent refunds Pay1, then goes Pay2 > Ship2."""
        g = ScenarioGraph.model_validate(
            {
                "start": "S",
                "goal": "G",
                "side_effects": {"Pay1": {"compensate": "Void1"}},
                "edges": [
                    {"source": "S", "target": "Pay1", "cost": 0.1},
                    {"source": "S", "target": "Pay2", "cost": 0.5},
                    {"source": "Pay1", "target": "Ship1", "cost": 0.1},
                    {"source": "Pay2", "target": "Ship2", "cost": 0.1},
                    {"source": "Ship1", "target": "G", "cost": 0.1},
                    {"source": "Ship2", "target": "G", "cost": 0.1},
                ],
            }
        )
        sc = _sc(faults=[Fault(tool="Ship1", kind="exception")])
        st = build_standins(g, sc, "react")
        run = await run_react(g, st.tools, compensations=st.compensations)
        assert run.status == "completed" and run.path == ["Pay2", "Ship2"]
        tools = [r.tool for r in st.recorder.calls]
        assert tools == ["Pay1", "Ship1", "Ship1", "Ship1", "Void1", "Pay2", "Ship2"]
        assert judge(run, st.recorder, ToolGraph(g), oracle(g, sc)).correct


HEALING = ROOT / "tests" / "data" / "healing_scenarios.json"


async def test_healing_file_orchestra_correct_and_best() -> None:
    """Acceptance: backtracking, compensation declared and missing, late failures past a
    fallback goal, from_call/count faults: orchestra all correct and best, 0 silent, at most
    a tenth of react's LLM calls; compensations and extra steps show per system."""
    sf = load_scenario_file(HEALING)
    assert any(g.side_effects for g in sf.graphs.values())
    faults = [f for s in sf.scenarios for f in s.faults]
    assert any(f.from_call > 1 for f in faults) and any(f.count for f in faults)
    report = await run_bench(sf, timeout_s=0.1)
    orch, react = report["systems"]["orchestra"], report["systems"]["react"]
    assert orch["correct"] == orch["best_outcome"] == orch["scenarios"] == len(sf.scenarios)
    assert orch["silent_failures"] == 0 and orch["failed"] == 0
    assert orch["llm_calls"] * 10 <= react["llm_calls"]
    assert (
        orch["correct"] >= react["correct"]
        and orch["correct"] > report["systems"]["static"]["correct"]
    )
    by_id = {s["id"]: s["systems"]["orchestra"] for s in report["per_scenario"]}
    assert by_id["SH-1"]["compensations"] == ["VoidA"]  # backtracked over a paid order
    assert by_id["SH-1"]["path"] == ["CRM", "PayB", "ShipB", "Notify"]
    assert by_id["SH-5"]["extra_steps"] == ["ShipA"]  # shipped, cannot be undone, listed
    assert by_id["SH-5"]["path"] == ["CRM", "PayA"]  # a walk to Paid
    assert by_id["FF-1"]["compensations"] == ["Recall"]  # beyond Charged, undone
    assert by_id["FF-6"]["extra_steps"] == ["Label"]
    assert by_id["BT-1"]["path"] == ["FetchMirror", "ParseSafe", "Load"]  # idempotent backtrack
    for s in report["per_scenario"]:
        for v in s["systems"].values():
            assert {"compensations", "extra_steps"} <= set(v)
