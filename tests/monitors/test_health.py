"""Tool health: circuit states, the −ln p̂ reliability penalty and the ×1.5 half-open factor."""

from __future__ import annotations

import math

import pytest

from orchestra import Graph, skill
from orchestra.monitors import HealthBoard, ToolHealthMonitor
from orchestra.monitors.base import MonitorContext, Priority, combine


@skill(cost=0.01, reliability=0.9)
def flaky(x: int) -> int:
    """A tool declared 90% reliable."""
    return x


@skill(cost=0.02)
def steady(x: int) -> int:
    """The alternative."""
    return x


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _ctx(board: HealthBoard) -> MonitorContext:
    g = Graph("h")
    g.step("s", [flaky, steady])
    return MonitorContext(graph=g.compile(), health=board)


async def _signals(board: HealthBoard, monitor: ToolHealthMonitor | None = None):
    return await (monitor or ToolHealthMonitor()).check(_ctx(board))


class TestReliabilityPenalty:
    async def test_an_unused_skill_is_penalised_by_its_declared_reliability(self) -> None:
        """p̂ starts at the declared reliability: extra = 0.1 × −ln(0.9)."""
        (sig,) = [s for s in await _signals(HealthBoard()) if s.skill == "flaky"]
        assert sig.kind == "penalize" and sig.factor == 1.0
        assert sig.extra == pytest.approx(0.1 * -math.log(0.9))
        assert "observed reliability 0.90" in sig.reason

    async def test_observed_failures_lower_p_hat_beta_smoothed_around_the_declared_rate(
        self,
    ) -> None:
        """p̂ = (successes + r×5) / (calls + 5): 2 of 4 calls failed, declared 0.9 → 6.5/9."""
        board = HealthBoard()
        for ok in (False, True, False, True):
            if ok:
                board.record_success("flaky", 10.0)
            else:
                board.record_failure("flaky", "boom")
        assert board.status("flaky") == "closed"
        (sig,) = [s for s in await _signals(board) if s.skill == "flaky"]
        p_hat = (2 + 0.9 * 5) / (4 + 5)
        assert sig.extra == pytest.approx(0.1 * -math.log(p_hat))
        assert sig.factor == 1.0

    async def test_a_fully_reliable_unused_skill_gets_no_penalty(self) -> None:
        """reliability 1 and no failures: −ln 1 = 0, so no signal at all."""
        assert [s for s in await _signals(HealthBoard()) if s.skill == "steady"] == []

    async def test_the_weight_is_configurable(self) -> None:
        (sig,) = [
            s
            for s in await _signals(HealthBoard(), ToolHealthMonitor(reliability_weight=1.0))
            if s.skill == "flaky"
        ]
        assert sig.extra == pytest.approx(-math.log(0.9))


class TestCircuit:
    async def test_an_open_circuit_blocks_then_half_open_multiplies_the_weight_by_1_5(
        self,
    ) -> None:
        clock = Clock()
        board = HealthBoard(cooldown_s=30.0, clock=clock)
        board.record_failure("flaky", "timeout")
        (block,) = [s for s in await _signals(board) if s.skill == "flaky"]
        assert block.kind == "block" and block.priority == Priority.HIGH
        assert "circuit open after 1 failure(s) (last: timeout); half-open in 30.0s" in block.reason

        clock.now += 30.0
        assert board.status("flaky") == "half_open"
        (trial,) = [s for s in await _signals(board) if s.skill == "flaky"]
        assert trial.kind == "penalize" and trial.factor == 1.5
        p_hat = (0 + 0.9 * 5) / (1 + 5)
        assert trial.extra == pytest.approx(0.1 * -math.log(p_hat))
        assert "half-open trial" in trial.reason
        w = combine([trial], [("s", "flaky"), ("s", "steady")])
        assert w[("s", "flaky")].factor == 1.5 and w[("s", "steady")].factor == 1.0

    async def test_a_failed_trial_doubles_the_cooldown_and_a_success_closes(self) -> None:
        clock = Clock()
        board = HealthBoard(cooldown_s=30.0, clock=clock)
        board.record_failure("flaky", "x")
        clock.now += 30.0
        board.record_failure("flaky", "x")  # the half-open trial failed
        assert board.get("flaky").cooldown_s == 60.0 and board.status("flaky") == "open"
        clock.now += 59.0
        assert board.status("flaky") == "open"
        clock.now += 1.0
        assert board.status("flaky") == "half_open"
        board.record_success("flaky", 5.0)
        assert board.status("flaky") == "closed" and board.get("flaky").cooldown_s == 0.0

    async def test_down_is_a_critical_block_with_the_probe_reason(self) -> None:
        board = HealthBoard()
        board.mark_down("flaky", "connection refused")
        (sig,) = [s for s in await _signals(board) if s.skill == "flaky"]
        assert sig.kind == "block" and sig.priority == Priority.CRITICAL
        assert sig.reason == "flaky is down (connection refused)"
        board.mark_up("flaky")
        assert board.status("flaky") == "closed"
