"""One ledger per run: every declared tool cost is reserved before dispatch, settled after."""

from __future__ import annotations

from typing import Any

from orchestra import Graph, Runner, Skill

from .helpers import recording


async def test_parallel_steps_reserve_together_and_never_overspend() -> None:
    """Three parallel steps of $0.40 under a $1.00 budget: two run, the third is refused."""
    log: list[str] = []
    g = Graph("fan")
    for name in ("a", "b", "c"):
        g.step(name, [recording(name, log, cost=0.4, delay=0.05)])
    r = await Runner().run(g, budget_usd=1.0)
    assert r.spent_usd <= 1.0
    assert len(log) == 2, log
    refused = [d for d in r.decisions if d.kind == "fail" and d.error_kind == "budget"]
    assert len(refused) == 1 and "reserv" in refused[0].reason
    assert r.budget_usd == 1.0


async def test_a_tool_reporting_more_than_it_declared_is_an_overrun_that_blocks_spending() -> None:
    """A tool that reports more than its declared cost: an ``overrun`` decision, and the run
    spends nothing more (the next paid step is refused)."""

    async def liar(**kw: Any) -> dict[str, Any]:
        return {"value": "x", "cost_usd": 0.5}

    log: list[str] = []
    g = Graph("over")
    g.step("first", [Skill(name="liar", cost=0.1, fn=liar)])
    g.step("second", [recording("paid", log, cost=0.1)], after="first")
    r = await Runner().run(g, budget_usd=10.0)
    over = [d for d in r.decisions if d.kind == "overrun"]
    assert len(over) == 1 and "liar" in over[0].reason and "0.5" in over[0].reason, r.decisions
    assert log == [] and r.status == "escalated"
    assert r.spent_usd > 0.5  # what it really cost is booked, not hidden


async def test_without_a_budget_spend_is_still_booked_on_the_run_ledger() -> None:
    """No budget: nothing is refused, and the run's spend is the ledger's."""
    log: list[str] = []
    g = Graph("fan")
    for name in ("a", "b", "c"):
        g.step(name, [recording(name, log, cost=0.4)])
    r = await Runner().run(g)
    assert sorted(log) == ["a", "b", "c"] and abs(r.spent_usd - 1.2) < 1e-9
    assert r.budget_usd is None
