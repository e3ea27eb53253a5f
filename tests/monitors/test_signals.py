"""Signals fold in priority order: the logged reason for a block is the most urgent one."""

from __future__ import annotations

from orchestra import Graph, HealthBoard, Runner, skill
from orchestra.monitors import default_monitors
from orchestra.monitors.base import MonitorContext, Priority, Signal, combine, run_monitors


def _block(reason: str, priority: int, **target: str) -> Signal:
    return Signal(monitor="m", kind="block", reason=reason, priority=priority, **target)


class TestCombine:
    def test_the_most_urgent_block_gives_the_reason_whatever_the_order(self) -> None:
        nodes = [("pay", "stripe"), ("pay", "paypal")]
        low = _block("maintenance window", Priority.LOW, skill="stripe")
        critical = _block("stripe is down", Priority.CRITICAL, skill="stripe")
        high = _block("amount over limit", Priority.HIGH, step="pay")
        for signals in ([low, critical, high], [high, low, critical], [critical, high, low]):
            w = combine(signals, nodes)
            assert w[("pay", "stripe")].blocked_by == critical
            assert w[("pay", "paypal")].blocked_by == high  # a step block reaches every skill

    def test_penalties_stack_and_notes_and_halts_change_no_weight(self) -> None:
        nodes = [("s", "a")]
        signals = [
            Signal(monitor="m", kind="penalize", reason="x", skill="a", factor=1.5, extra=0.1),
            Signal(monitor="m", kind="penalize", reason="y", skill="a", factor=2.0, extra=0.2),
            Signal(monitor="m", kind="note", reason="z", skill="a"),
            Signal(monitor="m", kind="halt", reason="budget spent"),
        ]
        w = combine(signals, nodes)[("s", "a")]
        assert w.factor == 3.0 and abs(w.extra - 0.3) < 1e-12 and w.blocked_by is None

    async def test_run_monitors_returns_signals_most_urgent_first_and_a_crash_as_a_note(
        self,
    ) -> None:
        class Emits:
            def __init__(self, name: str, priorities: list[int]) -> None:
                self.name, self.priorities = name, priorities

            async def check(self, ctx: MonitorContext) -> list[Signal]:
                return [_block(f"{self.name}{p}", p, skill="a") for p in self.priorities]

        class Crashes:
            name = "crashes"

            async def check(self, ctx: MonitorContext) -> list[Signal]:
                raise RuntimeError("bug")

        @skill
        def a() -> int:
            return 1

        g = Graph("g")
        g.step("s", [a])
        ctx = MonitorContext(graph=g.compile(), health=HealthBoard())
        out = await run_monitors([Emits("x", [30, 0]), Crashes(), Emits("y", [10])], ctx)
        assert [s.priority for s in out] == sorted(s.priority for s in out)
        assert [s.reason for s in out if s.kind == "block"] == ["x0", "y10", "x30"]
        (note,) = [s for s in out if s.kind == "note"]
        assert note.monitor == "crashes" and "RuntimeError('bug')" in note.reason


class TestInARun:
    async def test_the_escalation_names_the_critical_reason_not_an_earlier_minor_one(
        self,
    ) -> None:
        """A minor block (listed first) and a probe's 'down' on the only skill: the run's
        reason is the critical one."""

        class Maintenance:
            name = "maintenance"

            async def check(self, ctx: MonitorContext) -> list[Signal]:
                return [
                    Signal(
                        monitor=self.name,
                        kind="block",
                        priority=Priority.LOW,
                        skill="a",
                        reason="a is in its maintenance window",
                    )
                ]

        calls: list[str] = []

        @skill
        def a() -> int:
            calls.append("a")
            return 1

        g = Graph("g")
        g.step("s", [a])
        board = HealthBoard()
        board.mark_down("a", "probe: connection refused")
        r = await Runner(health=board, monitors=[Maintenance(), *default_monitors()]).run(g)
        assert r.status == "escalated" and calls == []
        assert "a is down (probe: connection refused)" in r.reason
        assert "maintenance window" not in r.reason
