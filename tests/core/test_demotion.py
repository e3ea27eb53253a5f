"""Demotion without a model: the first reachable fallback goal, in declared order, no LLM call."""

from __future__ import annotations

import pytest

from orchestra import Graph, HealthBoard, Runner
from orchestra.testing import misbehave

from .helpers import recording


def _branches(log: list[str], fallbacks: list[str]) -> Graph:
    """root → (left, right) → join → ship; ``ship`` always fails."""
    g = Graph("branches", fallback_goals=fallbacks)
    g.step("root", [recording("r", log)])
    g.step("left", [recording("l", log)], after="root")
    g.step("right", [recording("rt", log)], after="root")
    g.step("join", [recording("j", log)], after=["left", "right"])
    g.step("ship", [misbehave(recording("s", log), "exception")], after="join")
    return g


@pytest.mark.parametrize(
    ("declared", "chosen"),
    [(["join", "left"], "join"), (["left", "join"], "left"), (["right", "join"], "right")],
)
async def test_the_first_reachable_fallback_in_declared_order_is_taken(
    declared: list[str], chosen: str
) -> None:
    log: list[str] = []
    r = await Runner(max_attempts=1).run(_branches(log, declared))
    assert r.status == "demoted" and r.goal == chosen
    assert r.llm_calls == 0
    demote = next(d for d in r.decisions if d.kind == "demote")
    assert f"first reachable fallback goal {chosen!r} (no demotion model configured)" in (
        demote.reason
    )


async def test_an_unreachable_fallback_is_passed_over_for_the_next_one() -> None:
    """``left`` is declared first but its only skill is down: ``right`` is the first reachable."""
    log: list[str] = []
    board = HealthBoard()
    board.mark_down("l", "probe failed")
    r = await Runner(health=board, max_attempts=1).run(_branches(log, ["left", "right"]))
    assert r.status == "demoted" and r.goal == "right"
    assert r.llm_calls == 0 and "l" not in log


async def test_no_reachable_fallback_escalates() -> None:
    log: list[str] = []
    board = HealthBoard()
    board.mark_down("r", "probe failed")
    r = await Runner(health=board, max_attempts=1).run(_branches(log, ["left", "right"]))
    assert r.status == "escalated" and r.llm_calls == 0 and log == []
