"""Healing that makes sense: substitutes that fit, missing inputs as step failures, budget
blocks, compensation declared on skills, backtracking and honest demotion."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, create_model

from orchestra import Graph, Runner, Skill, skill
from orchestra.errors import GraphSpecError, SkillSpecError, UnknownSkillError


class FakeRetriever:
    """A retriever whose substitutes are a fixed list, best first (the runtime filters)."""

    def __init__(self, skills: Sequence[Skill]):
        self.skills = list(skills)
        self.asked = 0

    def substitutes(
        self, query: str, available: set[str], exclude: set[str], k: int = 3
    ) -> list[Skill]:
        self.asked += 1
        out = []
        for s in self.skills:
            req = {n for n, f in s.input_model.model_fields.items() if f.is_required()}
            if s.name not in exclude and req <= available:
                out.append(s)
        return out[:k]


def _model(name: str, fields: Sequence[str]) -> type[BaseModel]:
    return create_model(name, **{f: (str, ...) for f in fields})  # type: ignore[call-overload,no-any-return]


def tool(
    name: str,
    takes: Sequence[str] = (),
    gives: Sequence[str] = (),
    *,
    capability: str = "",
    cost: float = 0.0,
    fails: bool = False,
    log: list[str] | None = None,
    **kw: Any,
) -> Skill:
    """A skill taking ``takes`` (strings) and returning ``gives`` (each ``"<name>.<field>"``)."""
    out_model = _model(f"{name}_out", gives)

    async def fn(**kwargs: Any) -> Any:
        if log is not None:
            log.append(name)
        if fails:
            raise RuntimeError(f"{name} is broken")
        return {g: f"{name}.{g}" for g in gives}

    fn.__name__ = name
    return Skill(
        name=name,
        capability=capability,
        cost=cost,
        fn=fn,
        input_model=_model(f"{name}_in", takes),
        output_model=out_model,
        **kw,
    )


# --------------------------------------------------------------------------- substitutes


class TestSubstitutesFit:
    def _graph(self, retriever: FakeRetriever) -> Graph:
        g = Graph("refunds", retriever=retriever)
        g.step("lookup", [tool("crm", [], ["order_id", "amount"])])
        g.step(
            "refund",
            [
                tool(
                    "stripe",
                    ["order_id", "amount"],
                    ["refund_id"],
                    capability="pay.refund",
                    fails=True,
                )
            ],
            after="lookup",
        )
        g.step("draft", [tool("draft", ["refund_id", "amount"], ["text"])], after="refund")
        return g

    async def test_a_match_of_another_capability_is_not_chosen(self) -> None:
        """A skill that takes the step's inputs but does another job never stands in."""
        wrong = tool("classify", ["amount"], ["refund_id"], capability="support.classify")
        right = tool("adyen", ["order_id", "amount"], ["refund_id"], capability="pay.refund")
        r = await Runner().run(self._graph(FakeRetriever([wrong, right])), {})
        assert r.status == "completed", [str(d) for d in r.decisions]
        assert r.chosen["refund"] == "adyen"

    async def test_a_match_that_starves_a_later_step_is_not_chosen(self) -> None:
        """Its output lacks a field a later step takes from this one: rejected up front."""
        starving = tool("adyen_lite", ["order_id"], ["receipt"], capability="pay.refund")
        r = await Runner().run(self._graph(FakeRetriever([starving])), {})
        assert r.status == "escalated"
        assert "refund" not in r.chosen
        assert not [d for d in r.decisions if d.kind == "reroute" and d.skill == "adyen_lite"]

    def test_misfit_names_the_field_and_the_step_that_needs_it(self) -> None:
        from orchestra.substitution import misfit

        c = self._graph(FakeRetriever([])).compile()
        why = misfit(
            c,
            "refund",
            tool("adyen_lite", ["order_id"], ["receipt"], capability="pay.refund"),
            run_input={},
            outputs={"lookup": {"order_id": "o", "amount": "1"}},
        )
        assert why is not None and "'refund_id'" in why and "'draft'" in why
        why = misfit(
            c,
            "refund",
            tool("classify", [], ["refund_id"], capability="support.classify"),
            run_input={},
            outputs={},
        )
        assert why is not None and "pay.refund" in why

    async def test_an_unaffordable_candidate_is_a_budget_block_not_a_substitute_trigger(
        self,
    ) -> None:
        """The budget stops the refund: no substitute is sought, the reason names the budget."""
        cheap = tool("cheap_refund", ["order_id", "amount"], ["refund_id"], capability="pay.refund")
        retriever = FakeRetriever([cheap])
        g = Graph("refunds", retriever=retriever)
        g.step("lookup", [tool("crm", [], ["order_id", "amount"])])
        g.step(
            "refund",
            [
                tool(
                    "stripe",
                    ["order_id", "amount"],
                    ["refund_id"],
                    capability="pay.refund",
                    cost=0.01,
                )
            ],
            after="lookup",
        )
        r = await Runner().run(g, {}, budget_usd=0.005)
        assert r.status == "escalated"
        assert retriever.asked == 0
        assert (
            "stripe ($0.0100) costs more than the $0.0050 left" in r.reason and "budget" in r.reason
        )
        assert len(r.reason) < 400


class TestMissingInputIsAStepFailure:
    def _graph(self) -> Graph:
        from orchestra.skills import AnyOutput

        g = Graph("late", fallback_goals=["a"])
        loose = tool("a2", [], [])
        loose = loose.model_copy(update={"output_model": AnyOutput})
        g.step("a", [tool("a1", [], ["x"], fails=True), loose])
        g.step("b", [tool("b1", ["x"], ["y"])], after="a")
        return g

    async def test_a_rerouted_step_that_does_not_feed_the_next_one_is_healed_not_a_crash(
        self,
    ) -> None:
        """a2 (open output) serves a after a1 fails; b then lacks x: a logged step failure,
        then demotion, never a RunInputError."""
        r = await Runner().run(self._graph(), {})
        assert r.status == "demoted" and r.goal == "a", [str(d) for d in r.decisions]
        fails = [d for d in r.decisions if d.kind == "fail" and d.step == "b"]
        assert fails and fails[0].error_kind == "input" and "'x'" in fails[0].reason


# property: a chosen substitute's output always satisfies downstream inputs

FIELDS = ["f0", "f1", "f2", "f3", "f4", "f5"]


@st.composite
def _healing_case(draw: st.DrawFn) -> tuple[Graph, str, list[Skill]]:
    n = draw(st.integers(2, 5))
    stuck = draw(st.integers(0, n - 2))
    g = Graph("prop")
    produced: list[str] = []
    for i in range(n):
        takes = (
            draw(st.lists(st.sampled_from(produced), unique=True, max_size=2)) if produced else []
        )
        gives = draw(st.lists(st.sampled_from(FIELDS), unique=True, min_size=1, max_size=3))
        cap = draw(st.sampled_from(["", "c1"]))
        cands = [
            tool(f"s{i}k{j}", takes, gives, capability=cap, fails=(i == stuck))
            for j in range(draw(st.integers(1, 2)))
        ]
        g.step(f"s{i}", cands, after=[f"s{i - 1}"] if i else [])
        produced += gives
    pool = []
    for j in range(draw(st.integers(1, 6))):
        takes = draw(st.lists(st.sampled_from(FIELDS), unique=True, max_size=2))
        gives = draw(st.lists(st.sampled_from(FIELDS), unique=True, max_size=4))
        cap = draw(st.sampled_from(["", "c1", "c2"]))
        pool.append(tool(f"sub{j}", takes, gives, capability=cap))
    g.retriever = FakeRetriever(pool)
    return g, f"s{stuck}", pool


@given(_healing_case())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_property_a_chosen_substitute_always_satisfies_downstream_inputs(
    case: tuple[Graph, str, list[Skill]],
) -> None:
    """Whatever the catalog offers, a substitute the run takes never leaves a later step
    without an input: the run never crashes, and never fails a step for a missing input."""
    import asyncio

    g, stuck, _pool = case
    try:
        g.compile()
    except GraphSpecError:
        return  # not a valid graph to begin with
    r = asyncio.run(Runner().run(g, {}))
    subs = [d.skill for d in r.decisions if d.kind == "reroute" and "substitute" in d.reason]
    assert not [d for d in r.decisions if d.kind == "fail" and d.error_kind == "input"]
    if subs:
        assert r.chosen.get(stuck) in subs
        assert r.status == "completed", [str(d) for d in r.decisions]


# --------------------------------------------------------------------------- compensation specs


class TestCompensateSpec:
    def test_skill_decorator_takes_a_skill_and_registers_it_with_the_graph(self) -> None:
        @skill(idempotent=False)
        def void_charge(charge_id: str) -> dict[str, Any]:
            return {}

        @skill(idempotent=False, compensate=void_charge)
        def charge(amount: float) -> dict[str, Any]:
            return {}

        assert charge.compensate == "void_charge"
        g = Graph("g")
        g.step("charge", [charge])
        assert "void_charge" in g.skills
        g.compile()

    def test_a_compensation_that_names_no_skill_fails_at_compile(self) -> None:
        @skill(compensate="void_charge")
        def charge(amount: float) -> dict[str, Any]:
            return {}

        g = Graph("g")
        g.step("charge", [charge])
        with pytest.raises(UnknownSkillError, match="void_charge") as exc:
            g.compile()
        assert "compensate" in str(exc.value)

    def test_skill_md_compensate_must_name_a_skill_of_the_catalog(self, tmp_path: Any) -> None:
        from orchestra.catalog import load_catalog

        for name, extra in (("charge", "compensate: void_charge\n"), ("void_charge", "")):
            d = tmp_path / name
            d.mkdir()
            (d / "SKILL.md").write_text(
                f"---\nname: {name}\ndescription: {name} things\nidempotent: false\n{extra}---\n"
            )
            (d / "skill.py").write_text("def run(**kw):\n    return {}\n")
        skills = {s.name: s for s in load_catalog(tmp_path)}
        assert skills["charge"].compensate == "void_charge"
        (tmp_path / "void_charge" / "SKILL.md").unlink()
        (tmp_path / "void_charge" / "skill.py").unlink()
        (tmp_path / "void_charge").rmdir()
        with pytest.raises(SkillSpecError, match="void_charge") as exc:
            load_catalog(tmp_path)
        assert exc.value.field == "compensate"


# --------------------------------------------------------------------------- backtracking


def _two_lanes(
    log: list[str],
    *,
    a1: dict[str, Any] | None = None,
    c_fails: bool = False,
    fallback: Sequence[str] = (),
) -> Graph:
    """lookup -> a (a1 cheap | a2) -> b (b1 only after a1, broken | b2 only after a2) -> c.

    Once a1 is done, the only way on is to abandon it for a2."""
    voids = [
        tool("void_a1", ["x"], [], log=log, cost=0.01),
        tool("void_lookup", ["k"], [], log=log, cost=0.01),
    ]
    lookup = tool("lookup", [], ["k"], log=log, **(a1 or {}).get("lookup", {}))
    g = Graph(
        "lanes",
        skills=voids,
        strict_transitions=True,
        transitions={
            ("lookup", "a1"): 0.0,
            ("lookup", "a2"): 0.0,
            ("a1", "b1"): 0.0,
            ("a2", "b2"): 0.0,
            ("b1", "c1"): 0.0,
            ("b2", "c1"): 0.0,
        },
        fallback_goals=list(fallback),
    )
    g.step("lookup", [lookup])
    g.step(
        "a",
        [
            tool(
                "a1",
                ["k"],
                ["x"],
                log=log,
                cost=0.1,
                **{k: v for k, v in (a1 or {}).items() if k != "lookup"},
            ),
            tool("a2", ["k"], ["x"], log=log, cost=0.5),
        ],
        after="lookup",
    )
    g.step(
        "b",
        [tool("b1", ["x"], ["y"], log=log, fails=True), tool("b2", ["x"], ["y"], log=log)],
        after="a",
    )
    g.step("c", [tool("c1", ["y"], ["z"], log=log, fails=c_fails)], after="b")
    return g


class TestBacktracking:
    async def test_idempotent_work_is_abandoned_for_the_route_that_remains(self) -> None:
        """b1 is broken and only follows a1: the run abandons a1 and goes a2 > b2 > c1."""
        log: list[str] = []
        r = await Runner().run(_two_lanes(log), {})
        assert r.status == "completed", [str(d) for d in r.decisions]
        assert r.path == ["lookup", "a2", "b2", "c1"]
        bt = [d for d in r.decisions if d.kind == "backtrack"]
        assert len(bt) == 1 and "abandon a (a1)" in bt[0].reason
        assert r.compensations == [] and "void_a1" not in log

    async def test_side_effects_are_compensated_and_paid_for(self) -> None:
        """a1 is not idempotent but compensable: void_a1 runs before a2, once, and its cost
        is in the route's cost and in the spend."""
        log: list[str] = []
        r = await Runner().run(
            _two_lanes(log, a1={"idempotent": False, "compensate": "void_a1"}), {}
        )
        assert r.status == "completed", [str(d) for d in r.decisions]
        assert log.index("void_a1") < log.index("a2") and log.count("void_a1") == 1
        assert [(c.step, c.skill, c.by) for c in r.compensations] == [("a", "a1", "void_a1")]
        comp = [d for d in r.decisions if d.kind == "compensate"]
        assert len(comp) == 1 and comp[0].skill == "void_a1" and comp[0].step == "a"
        bt = next(d for d in r.decisions if d.kind == "backtrack")
        assert bt.cost is not None and bt.cost == pytest.approx(0.5 + 0.01)  # a2 + void_a1
        assert r.spent_usd == pytest.approx(0.1 + 0.01 + 0.5)

    async def test_compensations_run_in_reverse_completion_order(self) -> None:
        """When the cheapest way out abandons two compensable steps, the later one is undone
        first."""
        log: list[str] = []
        g = _two_lanes(
            log,
            a1={
                "idempotent": False,
                "compensate": "void_a1",
                "lookup": {"idempotent": False, "compensate": "void_lookup"},
            },
        )
        # make a2 reachable only through a fresh lookup: drop lookup -> a2, add a second lookup
        g.transitions.pop(("lookup", "a2"))
        g.steps[0].candidates.append("lookup2")
        g.skills.add(tool("lookup2", [], ["k"], log=log, cost=0.2))
        g.transitions[("lookup2", "a2")] = 0.0
        r = await Runner().run(g, {})
        assert r.status == "completed", [str(d) for d in r.decisions]
        assert [c.by for c in r.compensations] == ["void_a1", "void_lookup"]
        assert r.path == ["lookup2", "a2", "b2", "c1"]

    async def test_a_side_effect_without_compensation_is_never_abandoned(self) -> None:
        """a1 acted and cannot be undone: no backtrack; the run demotes to the goal it can
        reach from where it stands (or escalates), and a1 ran once."""
        log: list[str] = []
        r = await Runner().run(_two_lanes(log, a1={"idempotent": False}, fallback=["a"]), {})
        assert r.status == "demoted" and r.goal == "a", [str(d) for d in r.decisions]
        assert not [d for d in r.decisions if d.kind == "backtrack"]
        assert log.count("a1") == 1 and "a2" not in log
        assert r.path == ["lookup", "a1"]

    async def test_a_failed_compensation_escalates_naming_what_a_human_must_undo(self) -> None:
        log: list[str] = []
        g = _two_lanes(log, a1={"idempotent": False, "compensate": "void_a1"})
        g.skills.add(tool("void_a1", ["x"], [], log=log, fails=True), replace=True)
        r = await Runner().run(g, {})
        assert r.status == "escalated"
        assert "void_a1 could not undo a1 at a" in r.reason
        assert [c.ok for c in r.compensations] == [False]
        assert "a2" not in log

    async def test_compensation_is_a_span(self) -> None:
        from orchestra.tracing import capture_spans

        log: list[str] = []
        with capture_spans() as cap:
            await Runner().run(
                _two_lanes(log, a1={"idempotent": False, "compensate": "void_a1"}), {}
            )
        spans = cap.named("compensate a")
        assert len(spans) == 1
        assert spans[0].attributes is not None
        assert spans[0].attributes["orchestra.compensates"] == "a1"
        assert spans[0].attributes["orchestra.skill"] == "void_a1"


class TestHonestDemotion:
    async def test_work_beyond_the_goal_is_compensated_or_listed_and_the_path_walks_to_it(
        self,
    ) -> None:
        """c1 fails for good after b: demoted to 'a'. b's work is beyond 'a': compensated when
        b declares how, else listed in extra_steps; the path ends at a."""
        for compensable in (True, False):
            log: list[str] = []
            g = _two_lanes(log, c_fails=True, fallback=["a"])
            g.transitions[("a1", "b2")] = 0.0  # b2 follows a1 too
            b2 = g.skills["b2"]
            undo = tool("void_b2", ["y"], [], log=log)
            g.skills.add(undo)
            g.skills.add(
                b2.model_copy(
                    update={"idempotent": False, "compensate": "void_b2" if compensable else None}
                ),
                replace=True,
            )
            r = await Runner().run(g, {})
            assert r.status == "demoted" and r.goal == "a", [str(d) for d in r.decisions]
            assert r.path == ["lookup", "a1"] and set(r.chosen) == {"lookup", "a"}
            if compensable:
                assert [c.by for c in r.compensations] == ["void_b2"] and not r.extra_steps
            else:
                assert [(e.step, e.skill) for e in r.extra_steps] == [("b", "b2")]
                assert not r.compensations


class Health:
    """A health view from a mapping (every other skill closed)."""

    def __init__(self, statuses: dict[str, Any] | None = None):
        self.statuses = statuses or {}

    def status(self, skill: str) -> Any:
        return self.statuses.get(skill, "closed")


class TestBacktrackDecision:
    """planner.backtrack is pure: a run state in, a decision out, no event loop."""

    def _stuck(self, a1: dict[str, Any]) -> tuple[Any, Any]:
        from orchestra import planner
        from orchestra.results import RunState, StepRecord
        from orchestra.routing import INF

        c = _two_lanes([], a1=a1).compile()
        state = RunState(run_id="r", graph="lanes")
        state.completed["lookup"] = StepRecord(step="lookup", skill="lookup", output={"k": "1"})
        state.completed["a"] = StepRecord(step="a", skill="a1", output={"x": "a1.x"})
        state.attempts["b:b1"] = 3
        view = planner.RunView(c, state)
        c.route.set_dynamic(("b", "b1"), factor=INF)
        plan = planner.plan_routes(view, view.goal(), planner.ready_steps(view, view.goal()))
        assert not plan.feasible
        return view, plan

    def test_the_route_cost_includes_the_compensations(self) -> None:
        from orchestra import planner

        view, plan = self._stuck({"idempotent": False, "compensate": "void_a1"})
        rec = planner.backtrack(view, plan, Health())
        assert rec is not None and rec.kind == "backtrack"
        bt = rec.detail
        assert bt.abandon == (planner.Undo("a", "a1", "void_a1"),)
        assert bt.route_cost == pytest.approx(0.5)  # a2 (b2, c1 cost nothing)
        assert bt.cost == pytest.approx(0.5 + 0.01)
        assert "abandon a (a1, undone by void_a1)" in rec.reason

    def test_no_backtrack_past_a_side_effect_nothing_undoes(self) -> None:
        from orchestra import planner

        view, plan = self._stuck({"idempotent": False})
        assert planner.backtrack(view, plan, Health()) is None

    def test_no_backtrack_when_the_compensation_is_down(self) -> None:
        from orchestra import planner

        view, plan = self._stuck({"idempotent": False, "compensate": "void_a1"})
        assert planner.backtrack(view, plan, Health({"void_a1": "down"})) is None
