"""Per-step work proportional to what changed: incremental monitoring decides as whole rounds do,
monitors that finish at once cost no task, and the health board says what changed."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestra import Graph, HealthBoard, Runner, Skill
from orchestra.monitors import (
    BudgetMonitor,
    LatencyMonitor,
    Monitor,
    MonitorContext,
    RiskMonitor,
    Signal,
    ToolHealthMonitor,
)
from orchestra.monitors.base import gather_signals
from orchestra.testing import misbehave

from .helpers import Out


class Whole:
    """Wraps a monitor so that the runtime treats it as not incremental (a whole round)."""

    incremental = False

    def __init__(self, inner: Monitor):
        self.inner = inner
        self.name = inner.name

    async def check(self, ctx: MonitorContext) -> list[Signal]:
        return await self.inner.check(ctx)


class ForgetfulBoard(HealthBoard):
    """A board that never knows what changed: every round is a whole round."""

    def changed_since(self, mark: int) -> set[str] | None:
        return None


def monitors() -> list[Monitor]:
    # latency weighs nothing: run times differ between two runs, decisions must not
    return [ToolHealthMonitor(), LatencyMonitor(latency_weight=0.0), RiskMonitor(), BudgetMonitor()]


def random_graph(seed: int) -> tuple[Graph, float | None]:
    rnd = random.Random(seed)
    pool: list[Skill] = []

    def noop(name: str) -> Skill:
        async def fn(**kw: Any) -> Out:
            return Out(value=name)

        return Skill(
            name=name,
            fn=fn,
            output_model=Out,
            cost=round(rnd.uniform(0.01, 1.0), 2),
            reliability=rnd.choice([1.0, 0.9, 0.6]),
        )

    for i in range(rnd.randint(3, 7)):
        sk = noop(f"k{i}")
        fault = rnd.random()
        if fault < 0.25:
            sk = misbehave(sk, "exception")
        elif fault < 0.45:
            sk = misbehave(sk, "exception", count=rnd.randint(1, 2), from_call=rnd.randint(1, 2))
        elif fault < 0.55:
            sk = misbehave(sk, "malformed", count=1)
        pool.append(sk)
    # transition costs make a step's best skill depend on what lies after it
    transitions = {
        (a.name, b.name): round(rnd.uniform(0, 2), 2)
        for a in pool
        for b in pool
        if rnd.random() < 0.5
    }
    g = Graph(f"random{seed}", transitions=transitions)
    steps: list[str] = []
    for i in range(rnd.randint(2, 9)):
        cands = rnd.sample(pool, rnd.randint(1, min(3, len(pool))))
        # each step after the previous one (one step in flight at a time: steps that finish
        # together are handled in no set order, which would make two runs differ anyway)
        deps = sorted({*rnd.sample(steps, min(1, len(steps))), *steps[-1:]})
        g.step(f"s{i}", cands, after=deps)
        steps.append(f"s{i}")
    if rnd.random() < 0.5:
        g.fallback(rnd.choice(steps[:-1] or steps))
    budget = rnd.choice([None, None, round(rnd.uniform(0.5, 6.0), 2)])
    return g, budget


def trail(decisions: Sequence[Any]) -> list[tuple[Any, ...]]:
    return [
        (d.kind, d.step, d.skill, d.route, d.error_kind)
        for d in decisions
        if d.kind not in ("note",)
    ]


class TestSameDecisionsAsWholeRounds:
    @settings(max_examples=80, deadline=None)
    @given(seed=st.integers(0, 100_000))
    def test_incremental_rounds_decide_as_whole_rounds_do(self, seed: int) -> None:
        """Two runs of the same graph with the same faults, one monitoring incrementally and
        one looking at every skill and weighing every node every round, make the same
        decisions in the same order."""
        try:
            g1, budget = random_graph(seed)
            g2, _ = random_graph(seed)
        except Exception:  # a random graph that does not compile is not this test's concern
            return
        r1 = asyncio.run(
            Runner(health=HealthBoard(), monitors=monitors()).run(g1, {}, budget_usd=budget)
        )
        r2 = asyncio.run(
            Runner(
                health=ForgetfulBoard(), monitors=[Whole(m) for m in monitors()], incremental=False
            ).run(g2, {}, budget_usd=budget)
        )
        assert (r1.status, r1.goal, r1.chosen) == (r2.status, r2.goal, r2.chosen)
        assert trail(r1.decisions) == trail(r2.decisions)

    def test_a_failure_changes_the_plan_of_the_steps_before_its_other_uses_at_once(self) -> None:
        """z fails at s0: s1 must already avoid the skill whose only cheap way on is z at s2."""

        def noop(name: str, cost: float) -> Skill:
            async def fn(**kw: Any) -> Out:
                return Out(value=name)

            return Skill(name=name, fn=fn, output_model=Out, cost=cost)

        def graph() -> Graph:
            z = misbehave(noop("z", 0.1), "exception")
            a, x, y, w = noop("a", 0.5), noop("x", 0.1), noop("y", 0.2), noop("w", 0.5)
            g = Graph(
                "later",
                transitions={("x", "z"): 0.0, ("y", "z"): 5.0, ("x", "w"): 5.0, ("y", "w"): 0.0},
            )
            g.step("s0", [z, a])
            g.step("s1", [x, y], after="s0")
            g.step("s2", [z, w], after="s1")
            return g

        r1 = asyncio.run(Runner(monitors=monitors()).run(graph(), {}))
        r2 = asyncio.run(
            Runner(
                health=ForgetfulBoard(), monitors=[Whole(m) for m in monitors()], incremental=False
            ).run(graph(), {})
        )
        assert r1.chosen == r2.chosen == {"s0": "a", "s1": "y", "s2": "w"}
        assert trail(r1.decisions) == trail(r2.decisions)


class TestGatherSignals:
    def test_checks_that_wait_run_together_and_results_keep_the_monitors_order(self) -> None:
        """A monitor that waits for another one's event does not deadlock; results come in
        the monitors' order; a monitor that raises, at once or later, gives a note."""
        first, second = asyncio.Event(), asyncio.Event()

        def sig(name: str) -> Signal:
            return Signal(monitor=name, kind="note", reason=name)

        class Immediate:
            name = "immediate"

            async def check(self, ctx: MonitorContext) -> list[Signal]:
                return [sig(self.name)]

        class WaitsForSecond:
            name = "waits"

            async def check(self, ctx: MonitorContext) -> list[Signal]:
                first.set()
                await second.wait()
                return [sig(self.name)]

        class SetsSecond:
            name = "sets"

            async def check(self, ctx: MonitorContext) -> list[Signal]:
                await first.wait()
                second.set()
                await asyncio.sleep(0)
                return [sig(self.name)]

        class Broken:
            name = "broken"

            async def check(self, ctx: MonitorContext) -> list[Signal]:
                raise ValueError("at once")

        class BrokenLater:
            name = "later"

            async def check(self, ctx: MonitorContext) -> list[Signal]:
                await asyncio.sleep(0)
                raise ValueError("after a wait")

        g = Graph("one")
        g.step("s", [Skill(name="k", fn=lambda: Out(value="k"), output_model=Out)])
        ctx = MonitorContext(graph=g.compile(), health=HealthBoard())
        ms = [WaitsForSecond(), Immediate(), Broken(), SetsSecond(), BrokenLater()]
        out = asyncio.run(gather_signals(ms, ctx))
        assert [[s.reason for s in sigs] for sigs in out] == [
            ["waits"],
            ["immediate"],
            ["monitor failed: ValueError('at once')"],
            ["sets"],
            ["monitor failed: ValueError('after a wait')"],
        ]


class TestHealthChanges:
    def test_the_board_names_the_skills_written_since_a_mark(self) -> None:
        board = HealthBoard()
        board.record_success("a", 1.0)
        mark = board.mark()
        assert board.changed_since(mark) == set()
        board.record_failure("b", "boom")
        board.mark_down("c", "probe failed")
        assert board.changed_since(mark) == {"b", "c"}
        assert board.changed_since(board.mark()) == set()

    def test_a_snapshot_keeps_what_it_read(self) -> None:
        board = HealthBoard()
        snap = board.snapshot(["a"])
        board.record_failure("a", "boom")
        assert not snap["a"].open and board.snapshot(["a"])["a"].open
