"""The router returns exactly networkx's shortest path under the current dynamic weights."""

from __future__ import annotations

import math
import random
from typing import Any

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


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2, 40),
    width=st.integers(1, 3),
    hits=st.lists(st.tuples(st.integers(0, 39), st.integers(0, 2), st.floats(1, 4)), max_size=5),
)
def test_a_route_along_an_untouched_static_path_matches_a_full_search(
    n: int, width: int, hits: list[tuple[int, int, float]]
) -> None:
    """Routing reuses the static shortest path while nothing dynamic lies on it, and searches
    again, past the change, once a node ahead is penalised or blocked (any order of changes)."""
    rg, g = RouteGraph(), nx.DiGraph()
    rnd = random.Random(n * 7 + width)
    for i in range(n - 1):
        for a in range(width):
            for b in range(width):
                w = round(rnd.uniform(0, 2), 3)
                rg.add_edge((i, a), (i + 1, b), w)
                g.add_edge((i, a), (i + 1, b), weight=w)
    for b in range(width):
        rg.add_edge((n - 1, b), "T", 0.0)
        g.add_edge((n - 1, b), "T", weight=0.0)
    sources = {(0, a): 0.0 for a in range(width)}
    dyn: dict[Any, tuple[float, float]] = {}
    for step, (i, a, f) in enumerate([(0, 0, 1.0), *hits]):
        node = (i % n, a % width)
        factor = math.inf if step % 3 == 2 else f
        rg.set_dynamic(node, factor=factor)
        dyn[node] = (0.0, factor)
        r = rg.route(sources, "T")

        def w(u: Any, v: Any, d: dict[str, float]) -> float | None:
            e, fv = dyn.get(v, (0.0, 1.0))
            return None if fv == math.inf else (d["weight"] + e) * fv

        best = math.inf
        for s in sources:
            if dyn.get(s, (0.0, 1.0))[1] == math.inf:
                continue
            try:
                best = min(
                    best, nx.dijkstra_path_length(g, s, "T", weight=w) * 1.0
                )  # entry of a source is 0, its own factor multiplies 0
            except nx.NetworkXNoPath:
                continue
        if best == math.inf:
            assert r is None
            continue
        assert r is not None
        assert r.cost == pytest.approx(best)
        assert len(r) == len(r.nodes) == n + 1
        assert r.last == "T" and r.head(2) == r.nodes[:2]
        total = sum(
            (g[u][v]["weight"] + dyn.get(v, (0.0, 1.0))[0]) * dyn.get(v, (0.0, 1.0))[1]
            for u, v in zip(r.nodes, r.nodes[1:], strict=False)
        )
        assert r.cost == pytest.approx(total)


def test_a_graph_with_a_cycle_is_routed_by_the_search() -> None:
    """Distances are memoised on acyclic graphs only; a cycle falls back to the search."""
    rg = RouteGraph()
    rg.add_edge("a", "b", 1.0)
    rg.add_edge("b", "a", 1.0)
    rg.add_edge("b", "t", 5.0)
    rg.add_edge("a", "t", 9.0)
    r = rg.route({"a": 0.0}, "t")
    assert r is not None and r.nodes == ("a", "b", "t") and r.cost == pytest.approx(6.0)
    rg.set_dynamic("b", factor=math.inf)
    r = rg.route({"a": 0.0}, "t")
    assert r is not None and r.nodes == ("a", "t")


def test_a_route_is_read_before_the_weights_change() -> None:
    rg = RouteGraph()
    for i in range(5):
        rg.add_edge(i, i + 1, 1.0)
    r = rg.route({0: 0.0}, 5)
    assert r is not None and len(r) == 6
    rg.set_dynamic(3, extra=1.0)
    with pytest.raises(RuntimeError, match="after the weights changed"):
        _ = r.nodes
    again = rg.route({0: 0.0}, 5)
    assert again is not None and again.nodes == (0, 1, 2, 3, 4, 5) and again.cost == 6.0
