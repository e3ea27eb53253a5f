"""Per-step work proportional to what changed: incremental monitoring decides as whole rounds do,
monitors that finish at once cost no task, and the health board says what changed."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Hashable, Sequence
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from orchestra import Graph, HealthBoard, Runner, Skill, planner
from orchestra.executors.base import StepOutcome, StepTask
from orchestra.executors.local import LocalExecutor
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
from orchestra.results import RunResult
from orchestra.routing import INF, RouteGraph
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


# --------------------------------------------------------------------------- beyond chains


class OneAtATime:
    """An executor that lets the calls in flight finish one at a time, the least
    (step, skill, attempt) first, once the run has nothing else to do.

    Steps that run together would otherwise finish in no set order (``asyncio.wait`` hands
    back a set), and two runs of a graph with fan-outs could differ for that reason alone.
    """

    name = "one-at-a-time"

    def __init__(self) -> None:
        self.inner = LocalExecutor()
        self.waiting: dict[tuple[str, str, int], asyncio.Future[None]] = {}
        self.pump: asyncio.Task[None] | None = None

    async def execute(self, task: StepTask, skill: Skill) -> StepOutcome:
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting[(task.step_id, task.skill, task.attempt)] = turn
        if self.pump is None or self.pump.done():
            self.pump = asyncio.ensure_future(self.release())
        await turn
        return await self.inner.execute(task, skill)

    async def release(self) -> None:
        loop = asyncio.get_running_loop()
        while self.waiting:
            # the run dispatches, monitors and plans in this loop: wait until it waits
            for _ in range(10_000):
                await asyncio.sleep(0)
                if not getattr(loop, "_ready", ()):
                    break
            if self.waiting:
                self.waiting.pop(min(self.waiting)).set_result(None)

    async def aclose(self) -> None:
        return None


class Clock:
    """The health board's clock; a skill may move it on (open circuits' cooldowns lapse)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Catalog:
    """A retriever that offers the same substitutes, in order, for every stuck step."""

    def __init__(self, skills: Sequence[Skill]):
        self.skills = list(skills)

    def substitutes(
        self, query: str, available: set[str], exclude: set[str], k: int
    ) -> list[Skill]:
        return [s for s in self.skills if s.name not in exclude][:k]


def random_world(seed: int, board: HealthBoard, clock: Clock) -> tuple[Graph, float | None]:
    """A random DAG (fan-outs, joins, diamonds) of steps with one to three candidates, faults
    that come and go, skills whose calls change other skills' health on ``board`` (down, up
    again, cooldowns lapsing) and catalog substitutes for stuck steps."""
    rnd = random.Random(seed)
    pool: list[Skill] = []
    names: list[str] = [f"k{i}" for i in range(rnd.randint(3, 8))]

    def noop(name: str, event: tuple[str, str] | None) -> Skill:
        async def fn(**kw: Any) -> Out:
            if event is not None:
                what, other = event
                if what == "down":
                    board.mark_down(other, "a probe says it is down")
                elif what == "up":
                    board.mark_up(other)
                elif what == "later":
                    clock.now += 100.0  # past every cooldown (30 s, doubling)
                else:
                    board.record_failure(other, "a failure reported elsewhere")
            return Out(value=name)

        return Skill(
            name=name,
            fn=fn,
            output_model=Out,
            cost=round(rnd.uniform(0.01, 1.0), 2),
            reliability=rnd.choice([1.0, 0.9, 0.6]),
        )

    def faulty(sk: Skill) -> Skill:
        fault = rnd.random()
        if fault < 0.25:
            return misbehave(sk, "exception")
        if fault < 0.5:
            return misbehave(sk, "exception", count=rnd.randint(1, 3), from_call=rnd.randint(1, 2))
        if fault < 0.6:
            return misbehave(sk, "malformed", count=1, from_call=rnd.randint(1, 3))
        return sk

    for name in names:
        event = None
        if rnd.random() < 0.4:
            event = (rnd.choice(["down", "up", "later", "fail"]), rnd.choice(names))
        pool.append(faulty(noop(name, event)))
    transitions = {
        (a.name, b.name): round(rnd.uniform(0, 2), 2)
        for a in pool
        for b in pool
        if rnd.random() < 0.4
    }
    subs = [faulty(noop(f"sub{i}", None)) for i in range(rnd.randint(0, 2))]
    g = Graph(f"world{seed}", transitions=transitions, retriever=Catalog(subs) if subs else None)
    steps: list[str] = []
    for i in range(rnd.randint(2, 9)):
        cands = rnd.sample(pool, rnd.randint(1, min(3, len(pool))))
        # 0, 1 or 2 earlier steps: roots, chains, fan-outs (two steps after one), joins
        deps = sorted(rnd.sample(steps, min(len(steps), rnd.choice([0, 1, 1, 2, 2]))))
        g.step(f"s{i}", cands, after=deps)
        steps.append(f"s{i}")
    if rnd.random() < 0.5:
        g.fallback(rnd.choice(steps[:-1] or steps))
    budget = rnd.choice([None, None, round(rnd.uniform(0.5, 8.0), 2)])
    return g, budget


def forgetful_routes() -> pytest.MonkeyPatch:
    """While in effect, each round's routes are computed from nothing: the memoised distances
    are dropped whenever the route graph is weighed (once a round, before it routes)."""
    weigh = planner.weigh

    def whole(view: planner.RunView, weights: Any) -> None:
        weigh(view, weights)
        rg = view.graph.route
        rg._dyn.clear()
        rg._dyn_version += 1

    mp = pytest.MonkeyPatch()
    mp.setattr(planner, "weigh", whole)
    return mp


def run_world(seed: int, *, incremental: bool) -> RunResult | None:
    clock = Clock()
    board = HealthBoard(clock=clock) if incremental else ForgetfulBoard(clock=clock)
    try:
        g, budget = random_world(seed, board, clock)
        g.compile()
    except Exception:  # a random graph that does not compile is not this test's concern
        return None
    if incremental:
        runner = Runner(health=board, monitors=monitors(), executor=OneAtATime())
        return asyncio.run(runner.run(g, {}, budget_usd=budget))
    runner = Runner(
        health=board,
        monitors=[Whole(m) for m in monitors()],
        incremental=False,
        executor=OneAtATime(),
    )
    patch = forgetful_routes()
    try:
        return asyncio.run(runner.run(g, {}, budget_usd=budget))
    finally:
        patch.undo()


class TestSameDecisionsBeyondChains:
    @settings(max_examples=150, deadline=None)
    @given(seed=st.integers(0, 1_000_000))
    @example(seed=86)  # a substitute joins a step that is not ready: its node must be weighed
    def test_incremental_rounds_decide_as_whole_recomputes_do_on_dags(self, seed: int) -> None:
        """Fan-outs, joins, several candidates per step, health that changes mid-run (skills
        marked down and up, failures reported from elsewhere, cooldowns lapsing) and catalog
        substitutes: the run that monitors incrementally, re-weighs only what changed and
        reads memoised distances decides as one that looks at every skill, weighs every node
        and computes every route from nothing, decision by decision."""
        r1 = run_world(seed, incremental=True)
        r2 = run_world(seed, incremental=False)
        if r1 is None or r2 is None:
            assert r1 is r2
            return
        assert trail(r1.decisions) == trail(r2.decisions)
        assert (r1.status, r1.goal, r1.chosen) == (r2.status, r2.goal, r2.chosen)

    def test_the_worlds_cover_what_they_claim(self) -> None:
        """The generator does make fan-outs, joins, health events, substitutes taken and
        steps finished while others ran (else the property above says little)."""
        seen: dict[str, int] = dict.fromkeys(("fanout", "join", "substitute", "probe", "two"), 0)
        for seed in range(60):
            r = run_world(seed, incremental=True)
            if r is None:
                continue
            g, _ = random_world(seed, HealthBoard(), Clock())
            c = g.compile()
            parents = {s: set(c.steps[s].depends_on) for s in c.order}
            if any(len(p) > 1 for p in parents.values()):
                seen["join"] += 1
            if any(sum(s in p for p in parents.values()) > 1 for s in c.order):
                seen["fanout"] += 1
            reasons = [d.reason for d in r.decisions if d.kind == "reroute"]
            if any("from the catalog" in why for why in reasons):
                seen["substitute"] += 1
            if r.count("probe"):
                seen["probe"] += 1
            inflight = 0
            for d in r.decisions:
                inflight += d.kind == "execute"
                inflight -= d.kind in ("succeed", "fail")
                if inflight > 1:
                    seen["two"] += 1
                    break
        assert all(n >= 2 for n in seen.values()), seen


class TestMemoisedDistances:
    @settings(max_examples=200, deadline=None)
    @given(seed=st.integers(0, 1_000_000))
    def test_routes_after_weight_changes_match_routes_computed_from_nothing(
        self, seed: int
    ) -> None:
        """A layered DAG whose node weights change (rise, fall back, block, unblock) between
        routes: the memoised route is the one a fresh graph finds, and costs what the
        Dijkstra search says."""
        rnd = random.Random(seed)
        layers = [[f"n{i}_{j}" for j in range(rnd.randint(1, 4))] for i in range(rnd.randint(2, 7))]

        def build() -> RouteGraph:
            r = random.Random(seed)
            g = RouteGraph()
            g.add_node("START")
            g.add_node("GOAL")
            for j, n in enumerate(layers[0]):
                g.add_edge("START", n, round(r.uniform(0, 3), 1) if j else 1.0)
            for a, b in itertools.pairwise(layers):
                for u in a:
                    for v in b:
                        if r.random() < 0.7 or v == b[0]:
                            g.add_edge(u, v, round(r.uniform(0, 3), 1))
                for v in b:  # skips a layer now and then: joins of paths of other lengths
                    if r.random() < 0.2 and a is not layers[0]:
                        g.add_edge(r.choice(layers[0]), v, round(r.uniform(0, 3), 1))
            for u in layers[-1]:
                g.add_edge(u, "GOAL", 0.0)
            return g

        memo = build()
        nodes = [n for layer in layers for n in layer]
        for _ in range(rnd.randint(1, 25)):
            for n in rnd.sample(nodes, rnd.randint(1, min(3, len(nodes)))):
                extra = rnd.choice([0.0, 0.0, round(rnd.uniform(0, 4), 1)])
                factor = rnd.choice([1.0, 1.0, 1.5, 3.0, INF])
                memo.set_dynamic(n, extra=extra, factor=factor)
            fresh = build()
            for n in nodes:
                i = memo._index[n]
                fresh.set_dynamic(n, extra=memo._extra[i], factor=memo._factor[i])
            sources: dict[Hashable, float] = {"START": 0.0}
            a, b = memo.route(sources, "GOAL"), fresh.route(sources, "GOAL")
            if a is None or b is None:
                assert a is b is None
                continue
            assert (a.nodes, a.cost) == (b.nodes, b.cost)
            fresh._cyclic = True  # the Dijkstra search over the same weights
            searched = fresh.route(sources, "GOAL")
            assert searched is not None and searched.cost == pytest.approx(a.cost)
