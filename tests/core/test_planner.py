"""The planner's pure decisions, called without an event loop: frontier, route choice,
why a skill is blocked, and the recovery ladder (substitute → probe → fallback)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from pydantic import BaseModel, create_model

from orchestra import Graph, RunInputError, Skill, planner
from orchestra.graph import CompiledGraph
from orchestra.monitors import Signal, combine
from orchestra.monitors.health import HealthStatus
from orchestra.results import HUMAN, RunState, StepRecord

from .helpers import Out, pipeline, recording


class Health:
    """A health view from a mapping: every skill not named is closed."""

    def __init__(self, statuses: dict[str, HealthStatus] | None = None):
        self.statuses = statuses or {}

    def status(self, skill: str) -> HealthStatus:
        return self.statuses.get(skill, "closed")


class Catalog:
    """A retriever that offers fixed skills and records what it was asked."""

    def __init__(self, skills: Sequence[Skill]):
        self.skills = list(skills)
        self.asked: list[tuple[str, set[str], set[str]]] = []

    def substitutes(
        self, query: str, available: set[str], exclude: set[str], k: int
    ) -> list[Skill]:
        self.asked.append((query, available, exclude))
        return [s for s in self.skills if s.name not in exclude][:k]


def view_of(
    graph: Graph | CompiledGraph, *, completed: Sequence[tuple[str, str]] = (), **state: Any
) -> planner.RunView:
    c = graph if isinstance(graph, CompiledGraph) else graph.compile()
    s = RunState(run_id="r", graph=c.name, **state)
    for step, skill in completed:
        s.completed[step] = StepRecord(step=step, skill=skill, output={"value": skill})
    return planner.RunView(c, s, max_attempts=3)


def block(skill: str, reason: str) -> Signal:
    return Signal(monitor="test", kind="block", skill=skill, reason=reason)


def weighed(view: planner.RunView, signals: Sequence[Signal] = ()) -> planner.RunView:
    view.weights = combine(signals, view.graph.nodes())
    planner.weigh(view, view.weights)
    return view


def diamond() -> Graph:
    log: list[str] = []
    g = Graph("diamond")
    g.step("root", [recording("r", log)])
    for b in ("left", "right"):
        g.step(
            b, [recording(f"{b}1", log, cost=0.1), recording(f"{b}2", log, cost=0.5)], after="root"
        )
    g.step("join", [recording("j", log)], after=["left", "right"])
    return g


class TestFrontier:
    def test_only_steps_whose_dependencies_are_done_are_ready(self) -> None:
        v = view_of(diamond())
        assert planner.ready_steps(v, v.goal()) == ["root"]
        v = view_of(diamond(), completed=[("root", "r")])
        assert planner.ready_steps(v, v.goal()) == ["left", "right"]

    def test_running_and_completed_steps_are_not_ready(self) -> None:
        v = view_of(diamond(), completed=[("root", "r"), ("left", "left1")])
        assert planner.ready_steps(v, v.goal(), running={"right"}) == []
        assert planner.ready_steps(v, v.goal()) == ["right"]

    def test_steps_the_goal_does_not_require_are_not_ready(self) -> None:
        log: list[str] = []
        g = pipeline([[recording("a", log)], [recording("b", log)]], fallback=["s0"])
        v = view_of(g)
        lesser = v.graph.goals["s0"]
        v2 = view_of(g, completed=[("s0", "a")])
        assert planner.ready_steps(v, lesser) == ["s0"]
        assert planner.ready_steps(v2, lesser) == []

    def test_a_human_step_stands_in_as_the_candidate_with_most_ways_onward(self) -> None:
        v = view_of(diamond(), completed=[("root", HUMAN)])
        assert planner.chosen(v.graph, v.state) == {"root": "r"}


class TestRouteChoice:
    def test_the_cheapest_candidate_is_chosen_while_all_are_healthy(self) -> None:
        v = weighed(view_of(diamond(), completed=[("root", "r")]))
        plan = planner.plan_routes(v, v.goal(), ["left", "right"])
        assert plan.feasible
        assert {s: k for s, (k, _) in plan.choices.items()} == {"left": "left1", "right": "right1"}

    def test_a_blocked_skill_is_routed_around_and_named_as_the_reason(self) -> None:
        v = weighed(
            view_of(diamond(), completed=[("root", "r")]), [block("left1", "left1 is down")]
        )
        plan = planner.plan_routes(v, v.goal(), ["left"])
        assert plan.choices["left"][0] == "left2"
        assert planner.preferred(v, "left", v.goal()) == "left1"
        assert planner.why_blocked(v, "left", "left1") == "left1 is down"

    def test_a_step_with_every_candidate_blocked_is_stuck_with_each_reason(self) -> None:
        v = weighed(
            view_of(diamond(), completed=[("root", "r")]),
            [block("right1", "right1 is down"), block("right2", "right2 circuit open")],
        )
        plan = planner.plan_routes(v, v.goal(), ["left", "right"])
        assert not plan.feasible
        assert plan.stuck == {"right": "right1 is down; right2 circuit open"}

    def test_a_later_blocked_step_makes_the_goal_infeasible_now(self) -> None:
        v = weighed(view_of(diamond()), [block("j", "j is down")])
        plan = planner.plan_routes(v, v.goal(), ["root"])
        assert plan.stuck == {"join": "j is down"}

    def test_used_up_attempts_block_a_skill_and_say_so(self) -> None:
        v = view_of(diamond(), completed=[("root", "r")], attempts={"left:left1": 3})
        weighed(v)
        assert planner.plan_routes(v, v.goal(), ["left"]).choices["left"][0] == "left2"
        assert planner.why_blocked(v, "left", "left1") == (
            "left1 gave up after 3 attempt(s) in this run"
        )

    def test_a_refusal_is_the_first_reason_given(self) -> None:
        v = view_of(diamond(), attempts={"left:left1": 3})
        v.refused = {("left", "left1"): "over budget"}
        assert planner.why_blocked(v, "left", "left1") == "over budget"


class TestRecoveryLadder:
    def stuck_view(self, **state: Any) -> tuple[planner.RunView, planner.Plan]:
        log: list[str] = []
        g = pipeline(
            [[recording("a", log)], [recording("b1", log), recording("b2", log)]], fallback=["s0"]
        )
        v = view_of(g, completed=[("s0", "a")], **state)
        weighed(v, [block("b1", "b1 circuit open"), block("b2", "b2 circuit open")])
        plan = planner.plan_routes(v, v.goal(), ["s1"])
        assert plan.stuck
        return v, plan

    def test_a_healthy_catalog_substitute_comes_first(self) -> None:
        v, plan = self.stuck_view(attempts={"s1:b1": 1})
        sub = recording("z", [])
        down = recording("y", [])
        catalog = Catalog([down, sub])
        health = Health({"b1": "open", "y": "down"})
        options = list(planner.recoveries(v, plan, health, retriever=catalog))
        assert [o.kind for o in options] == ["substitute", "probe", "fallback"]
        assert options[0].step == "s1" and options[0].skill.name == "z"
        assert catalog.asked[0][1] == {"value"}, "the step can hand over what s0 returned"
        assert catalog.asked[0][2] == {"b1", "b2"}

    def test_only_circuits_tried_in_this_run_with_attempts_left_are_probed(self) -> None:
        v, plan = self.stuck_view(attempts={"s1:b1": 1, "s1:b2": 3})
        health = Health({"b1": "open", "b2": "open"})
        probes = [o for o in planner.recoveries(v, plan, health) if o.kind == "probe"]
        assert [(o.step, o.skill) for o in probes] == [("s1", "b1")]
        assert "attempt 2/3" in probes[0].reason
        v2, plan2 = self.stuck_view()
        assert [o.kind for o in planner.recoveries(v2, plan2, health)] == ["fallback"]

    def test_the_fallback_lists_reachable_lesser_goals_not_yet_tried(self) -> None:
        v, plan = self.stuck_view()
        options = list(planner.recoveries(v, plan, Health()))
        assert options[-1].kind == "fallback"
        assert options[-1].goals == (("s0", ["s0"]),)
        v.state.tried_goals.append("s0")
        assert list(planner.recoveries(v, plan, Health()))[-1].goals == ()

    def test_a_halt_skips_straight_to_the_fallback(self) -> None:
        v, plan = self.stuck_view(attempts={"s1:b1": 1})
        catalog = Catalog([recording("z", [])])
        options = list(
            planner.recoveries(v, plan, Health({"b1": "open"}), retriever=catalog, halted=True)
        )
        assert [o.kind for o in options] == ["fallback"]
        assert catalog.asked == [], "the catalog is not searched when the run is halted"

    def test_the_escalation_names_steps_a_risk_limit_stopped(self) -> None:
        v, plan = self.stuck_view()
        v.weights = combine(
            [Signal(monitor="risk", kind="block", step="s1", reason="amount over limit")],
            v.graph.nodes(),
        )
        info = planner.escalation_info(v, "stuck", plan.stuck, "risk")
        assert info.risk_blocked == ["s1"]
        assert info.steps == plan.stuck
        assert planner.escalation_info(v, "stuck", plan.stuck, "other").risk_blocked == []

    def test_a_substitute_joins_the_step_and_becomes_routable(self) -> None:
        v, _ = self.stuck_view()
        sub = recording("z", [])
        planner.add_substitute(v.graph, "s1", sub, planner.chosen(v.graph, v.state))
        assert v.graph.candidates["s1"] == ("b1", "b2", "z")
        again = planner.plan_routes(v, v.goal(), ["s1"])
        assert again.choices["s1"][0] == "z"


def needs(name: str, param: str) -> Skill:
    """A skill with one required string parameter ``param``."""
    model = create_model(f"{name}_in", **{param: (str, ...)})
    return Skill(name=name, fn=lambda **kw: Out(value="x"), input_model=model, output_model=Out)


class TestInputs:
    def test_a_mapped_input_is_taken_from_the_named_step(self) -> None:
        g = Graph("m")
        g.step("a", [recording("a", [])])
        g.step("b", [needs("b", "text")], after="a", inputs={"text": "a.value"})
        v = view_of(g, completed=[("a", "a")])
        assert planner.arguments(v.graph, v.state, "b", "b") == {"text": "a"}

    def test_a_missing_required_input_names_the_parameter(self) -> None:
        g = Graph("m")
        g.step("a", [recording("a", [])])
        g.step("b", [needs("b", "order_id")], after="a")
        v = view_of(g, completed=[("a", "a")])
        with pytest.raises(RunInputError, match="needs 'order_id'"):
            planner.arguments(v.graph, v.state, "b", "b")
        assert planner.merged_arguments(v.graph, v.state, "b") == {}


class _Note(BaseModel):
    note: str = "from a step"
    value: int = 1


class _Bare(BaseModel):
    value: int = 1


class TestArgumentsIndex:
    """``RunView.returned`` only skips the search through earlier outputs for a parameter no
    completed step returned: the arguments are the same with it as without it."""

    @staticmethod
    def _chain() -> CompiledGraph:
        from orchestra import skill

        @skill(name="says_note")
        def says_note(value: int = 0) -> _Note:
            return _Note()

        def take(i: int) -> Skill:
            def fn(value: int = 0, note: str = "", tag: str = "none") -> _Bare:
                return _Bare()

            fn.__name__ = f"take{i}"
            return skill(name=f"take{i}")(fn)

        g = Graph("args_index")
        g.step("first", [says_note])
        for i in range(6):
            g.step(f"s{i}", [take(i)], after="first" if i == 0 else f"s{i - 1}")
        return g.compile()

    def test_same_arguments_with_the_index_as_without(self) -> None:
        c = self._chain()
        s = RunState(run_id="r", graph=c.name, input={"tag": "from input", "value": 7})
        view = planner.RunView(c, s)
        s.completed["first"] = StepRecord(
            step="first", skill="says_note", output={"note": "far back", "value": 2}
        )
        view.completed("first")
        for i in range(6):
            step, sk = f"s{i}", f"take{i}"
            fast = planner.arguments(c, s, step, sk, view.returned)
            assert fast == planner.arguments(c, s, step, sk)
            # the far ancestor's note, the nearest value, the input's tag (no step returns it)
            assert fast == {"value": 2 if i == 0 else 1, "note": "far back", "tag": "from input"}
            s.completed[step] = StepRecord(step=step, skill=sk, output={"value": 1})
            view.completed(step)
        assert "tag" not in view.returned and view.returned["note"] == {"first"}

    def test_a_record_replaced_without_a_refresh_is_still_read(self) -> None:
        """A superset, never short: a step recorded again lists its new fields."""
        c = self._chain()
        s = RunState(run_id="r", graph=c.name, input={"tag": "from input"})
        view = planner.RunView(c, s)
        s.completed["first"] = StepRecord(step="first", skill="says_note", output={"value": 2})
        view.completed("first")
        s.completed["first"] = StepRecord(
            step="first", skill="says_note", output={"value": 2, "tag": "from first"}
        )
        view.completed("first")
        assert planner.arguments(c, s, "s0", "take0", view.returned)["tag"] == "from first"
