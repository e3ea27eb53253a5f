"""Settings from the environment reach the runner: ORCHESTRA_COOLDOWN_S, ORCHESTRA_MAX_ATTEMPTS."""

from __future__ import annotations

import pytest

from orchestra import Graph, build_runner, skill
from orchestra.testing import misbehave

from .helpers import Out


@skill(cost=0.001)
def cheap() -> Out:
    """The cheaper provider."""
    return Out(value="cheap")


@skill(cost=1.0)
def dear() -> Out:
    """The far dearer one: a half-open trial of ``cheap`` (×1.5) still weighs less."""
    return Out(value="dear")


def _graph(calls: list[int]) -> Graph:
    g = Graph("cfg")
    g.step("pay", [misbehave(cheap, "exception", count=1, calls=calls), dear])
    return g


@pytest.fixture(autouse=True)
def _no_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRA_CHECKPOINT_URL", "none")


class TestCooldown:
    async def test_an_opened_circuit_stays_open_for_the_cooldown(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """ORCHESTRA_COOLDOWN_S=600: after one failure the next run routes around the skill."""
        monkeypatch.setenv("ORCHESTRA_COOLDOWN_S", "600")
        runner = build_runner()
        calls: list[int] = []
        g = _graph(calls)
        first = await runner.run(g)
        assert first.path == ["dear"] and calls == [1]
        record = runner.health.get("cheap")
        assert record.cooldown_s == 600.0 and runner.health.status("cheap") == "open"
        second = await runner.run(g)
        assert second.path == ["dear"] and calls == [1]  # not called: its circuit is open

    async def test_a_zero_cooldown_makes_the_circuit_half_open_at_once(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """ORCHESTRA_COOLDOWN_S=0: the failed skill is half-open right after its failure, and
        its trial (weight ×1.5) still beats the far dearer alternative, in the same run."""
        monkeypatch.setenv("ORCHESTRA_COOLDOWN_S", "0")
        runner = build_runner()
        calls: list[int] = []
        r = await runner.run(_graph(calls))
        assert r.status == "completed" and r.path == ["cheap"] and calls == [1, 2]
        assert [d.kind for d in r.decisions].count("fail") == 1
        assert runner.health.status("cheap") == "closed"  # the trial succeeded


class TestMaxAttempts:
    @pytest.mark.parametrize("attempts", [1, 2, 4])
    async def test_a_skill_is_tried_at_most_max_attempts_times_per_step(
        self, monkeypatch: pytest.MonkeyPatch, attempts: int
    ) -> None:
        monkeypatch.setenv("ORCHESTRA_MAX_ATTEMPTS", str(attempts))
        calls: list[int] = []
        g = Graph("one")
        g.step("pay", [misbehave(cheap, "exception", calls=calls)])
        r = await build_runner().run(g)
        assert r.status == "escalated"
        assert calls == list(range(1, attempts + 1))
        assert f"Step 'pay' cannot be done: cheap failed {attempts} time(s)." in r.reason

    def test_a_bad_value_is_a_clear_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from pydantic import ValidationError

        monkeypatch.setenv("ORCHESTRA_MAX_ATTEMPTS", "many")
        with pytest.raises(ValidationError, match="max_attempts"):
            build_runner()
