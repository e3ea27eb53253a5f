"""Backtracking with compensation on real workers: the compensating call goes to the fleet."""

from __future__ import annotations

from typing import Any

import pytest

from orchestra import Graph
from orchestra.fleet import fleet_runner

from .conftest import Fleet, load_test_skills

pytestmark = [pytest.mark.fleet]

SK: dict[str, Any] = load_test_skills()


def lanes() -> Graph:
    """charge (comp_charge | alt_charge) -> ship (ship_broken only after comp_charge,
    ship_ok only after alt_charge)."""
    g = Graph(
        "lanes",
        skills=[SK["void_charge"]],
        strict_transitions=True,
        transitions={("comp_charge", "ship_broken"): 0.0, ("alt_charge", "ship_ok"): 0.0},
    )
    g.step("charge", [SK["comp_charge"], SK["alt_charge"]], inputs={"token": "$input.token"})
    g.step("ship", [SK["ship_broken"], SK["ship_ok"]], after="charge")
    return g


async def test_a_charge_is_voided_on_a_worker_before_the_other_lane_runs(
    shared_fleet: Fleet,
) -> None:
    runner = fleet_runner(shared_fleet.settings)
    try:
        r = await runner.run(lanes(), {"token": "bt-1"})
    finally:
        await runner.executor.aclose()
    assert r.status == "completed", [str(d) for d in r.decisions]
    assert r.path == ["alt_charge", "ship_ok"]
    assert [(c.step, c.skill, c.by, c.ok) for c in r.compensations] == [
        ("charge", "comp_charge", "void_charge", True)
    ]
    side = shared_fleet.side()
    assert shared_fleet.count("done", "comp_charge", "bt-1") == 1
    assert shared_fleet.count("done", "void_charge", "bt-1") == 1
    assert shared_fleet.count("done", "alt_charge", "bt-1") == 1
    order = [e[1] for e in side if e[0] == "done" and e[2] == "bt-1"]
    assert order.index("void_charge") < order.index("alt_charge")  # undone first, then redone
    assert [d.kind for d in r.decisions].count("compensate") == 1
