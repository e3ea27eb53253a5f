"""Latency: an EWMA of observed calls (else the declared latency), worth 1¢ per second."""

from __future__ import annotations

import pytest

from orchestra import Graph, skill
from orchestra.monitors import HealthBoard, LatencyMonitor
from orchestra.monitors.base import MonitorContext


@skill(cost=0.01, latency_ms=200)
def api(x: int) -> int:
    """Declared at 200 ms."""
    return x


def _ctx(board: HealthBoard) -> MonitorContext:
    g = Graph("lat")
    g.step("s", [api])
    return MonitorContext(graph=g.compile(), health=board)


class TestEwma:
    def test_the_board_keeps_an_exponentially_weighted_average_alpha_0_3(self) -> None:
        board = HealthBoard()
        board.record_success("api", 100.0)
        assert board.get("api").ewma_ms == 100.0  # the first observation
        board.record_success("api", 200.0)
        assert board.get("api").ewma_ms == pytest.approx(0.3 * 200 + 0.7 * 100)
        board.record_success("api", 400.0)
        assert board.get("api").ewma_ms == pytest.approx(0.3 * 400 + 0.7 * 130)


class TestLatencyMonitor:
    async def test_declared_latency_until_calls_are_observed(self) -> None:
        (sig,) = await LatencyMonitor().check(_ctx(HealthBoard()))
        assert sig.kind == "penalize" and sig.skill == "api"
        assert sig.extra == pytest.approx(0.01 * 0.200)  # one cent per second, by default
        assert sig.reason == "api latency 200 ms (declared)"

    async def test_the_ewma_replaces_the_declared_latency(self) -> None:
        board = HealthBoard()
        board.record_success("api", 100.0)
        board.record_success("api", 200.0)
        (sig,) = await LatencyMonitor().check(_ctx(board))
        assert sig.extra == pytest.approx(0.01 * 0.130)
        assert sig.reason == "api latency 130 ms (EWMA)"

    async def test_a_skill_three_times_slower_than_declared_gets_a_note(self) -> None:
        board = HealthBoard()
        board.record_success("api", 900.0)
        signals = await LatencyMonitor(latency_weight=0.1).check(_ctx(board))
        penalty = next(s for s in signals if s.kind == "penalize")
        assert penalty.extra == pytest.approx(0.1 * 0.9)
        (note,) = [s for s in signals if s.kind == "note"]
        assert note.reason == "api is slow: 900 ms vs 200 ms declared"
