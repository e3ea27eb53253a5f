"""The router returns exactly networkx's shortest path under the current dynamic weights."""

from __future__ import annotations

import math
import random

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestra.routing import RouteGraph


def _random_dag(seed: int, n: int, p: float) -> tuple[RouteGraph, nx.DiGraph]:
    rnd = random.Random(seed)
    rg, g = RouteGraph(), nx.DiGraph()
    for i in range(n):
        rg.add_node(i)
        g.add_node(i)
    for u in range(n):
        for v in range(u + 1, n):
            if rnd.random() < p:
                w = round(rnd.uniform(0, 2), 3)
                rg.add_edge(u, v, w)
                g.add_edge(u, v, weight=w)
    return rg, g


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(2, 25),
    p=st.floats(0.1, 0.7),
    penalties=st.integers(0, 6),
)
def test_route_matches_networkx_under_dynamic_weights(
    seed: int, n: int, p: float, penalties: int
) -> None:
    rg, g = _random_dag(seed, n, p)
    rnd = random.Random(seed + 1)
    extra = {v: 0.0 for v in range(n)}
    factor = {v: 1.0 for v in range(n)}
    rg.potential(n - 1)  # potentials computed before the weights change, as in a run
    for _ in range(penalties):
        v = rnd.randrange(n)
        choice = rnd.random()
        if choice < 0.3:
            factor[v] = math.inf
        elif choice < 0.6:
            factor[v] = rnd.uniform(1, 4)
        else:
            extra[v] = rnd.uniform(0, 1)
        rg.set_dynamic(v, extra=extra[v], factor=factor[v])

    def w(u: int, v: int, d: dict[str, float]) -> float | None:
        if factor[v] == math.inf:
            return None
        return (d["weight"] + extra[v]) * factor[v]

    r = rg.route({0: 0.0}, n - 1)
    if factor[0] == math.inf:
        assert r is None
        return
    try:
        expected = nx.dijkstra_path_length(g, 0, n - 1, weight=w) + extra[0] * factor[0]
    except nx.NetworkXNoPath:
        assert r is None
        return
    assert r is not None
    assert r.nodes[0] == 0 and r.nodes[-1] == n - 1
    assert r.cost == pytest.approx(expected)
    # the returned path is a real path whose cost is what the router says
    total = extra[0] * factor[0]
    for u, v in zip(r.nodes, r.nodes[1:], strict=False):
        assert g.has_edge(u, v)
        total += (g[u][v]["weight"] + extra[v]) * factor[v]
    assert total == pytest.approx(r.cost)


def test_dynamic_weight_may_only_add() -> None:
    rg = RouteGraph()
    rg.add_edge("a", "b", 1.0)
    with pytest.raises(ValueError):
        rg.set_dynamic("b", extra=-1)
    with pytest.raises(ValueError):
        rg.set_dynamic("b", factor=0.5)


def test_negative_or_infinite_edge_weight_is_rejected() -> None:
    rg = RouteGraph()
    with pytest.raises(ValueError):
        rg.add_edge("a", "b", -0.1)
    with pytest.raises(ValueError):
        rg.add_edge("a", "b", math.inf)


def test_multiple_sources_pick_the_cheapest_entry() -> None:
    rg = RouteGraph()
    rg.add_edge("x", "t", 1.0)
    rg.add_edge("y", "t", 1.0)
    r = rg.route({"x": 5.0, "y": 0.5}, "t")
    assert r is not None and r.nodes == ("y", "t") and r.cost == pytest.approx(1.5)
