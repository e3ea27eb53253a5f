"""Probes block a skill before it is called; the budget monitor blocks what the run cannot pay."""

from __future__ import annotations

import asyncio
import socket

from orchestra import Graph, HealthBoard, skill
from orchestra.monitors import BudgetMonitor, ProbeMonitor
from orchestra.monitors.base import MonitorContext, Priority
from orchestra.monitors.probe import tcp_probe


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _ctx(*skills: object, budget: float | None = None, spent: float = 0.0) -> MonitorContext:
    g = Graph("m")
    g.step("s", list(skills))  # type: ignore[arg-type]
    return MonitorContext(
        graph=g.compile(), health=HealthBoard(), budget_usd=budget, spent_usd=spent
    )


class TestProbeMonitor:
    async def test_a_failing_probe_blocks_with_its_reason_and_is_cached(self) -> None:
        answers = ["connection refused", None]
        calls: list[int] = []

        def probe() -> str | None:
            calls.append(1)
            return answers[min(len(calls) - 1, 1)]

        @skill
        def api() -> int:
            return 1

        api = api.model_copy(update={"probe": probe})
        clock = Clock()
        mon = ProbeMonitor(interval_s=10.0, clock=clock)
        ctx = _ctx(api)
        (sig,) = await mon.check(ctx)
        assert sig.kind == "block" and sig.priority == Priority.CRITICAL
        assert sig.reason == "api is down (connection refused)"
        clock.now = 9.9
        assert len(await mon.check(ctx)) == 1 and len(calls) == 1  # cached
        clock.now = 10.0
        assert await mon.check(ctx) == [] and len(calls) == 2  # probed again: up

    async def test_a_probe_that_raises_or_hangs_is_down(self) -> None:
        async def hangs() -> None:
            await asyncio.sleep(60)

        def raises() -> None:
            raise OSError("no route to host")

        @skill
        def a() -> int:
            return 1

        @skill
        def b() -> int:
            return 2

        mon = ProbeMonitor(timeout_s=0.05)
        reasons = {
            s.skill: s.reason
            for s in await mon.check(
                _ctx(a.model_copy(update={"probe": hangs}), b.model_copy(update={"probe": raises}))
            )
        }
        assert reasons == {
            "a": "a is down (probe raised TimeoutError: )",
            "b": "b is down (probe raised OSError: no route to host)",
        }

    async def test_tcp_probe_passes_when_anything_listens(self) -> None:
        with socket.socket() as srv:
            srv.bind(("127.0.0.1", 0))
            srv.listen()
            port = srv.getsockname()[1]
            assert await tcp_probe(f"http://127.0.0.1:{port}/v1")() is None
        closed = await tcp_probe(f"http://127.0.0.1:{port}/v1")()
        assert closed == f"nothing answers at 127.0.0.1:{port}"


class TestBudgetMonitor:
    async def test_skills_dearer_than_what_is_left_are_blocked(self) -> None:
        @skill(cost=0.04)
        def dear() -> int:
            return 1

        @skill(cost=0.01)
        def cheap() -> int:
            return 2

        (sig,) = await BudgetMonitor().check(_ctx(dear, cheap, budget=0.1, spent=0.07))
        assert sig.kind == "block" and sig.skill == "dear" and sig.priority == Priority.HIGH
        assert sig.reason == "dear costs $0.0400, only $0.0300 of the run's $0.1000 budget left"

    async def test_without_a_budget_nothing_is_blocked(self) -> None:
        @skill(cost=5.0)
        def dear() -> int:
            return 1

        assert await BudgetMonitor().check(_ctx(dear, spent=100.0)) == []
