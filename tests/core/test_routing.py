"""The router returns exactly networkx's shortest path under the current dynamic weights."""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Any

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestra import routing
from orchestra.routing import RouteGraph


@dataclass
class Case:
    """A DAG on nodes 0..n-1 (edges go from lower to higher numbers) and dynamic weights."""

    n: int
    edges: dict[tuple[int, int], float]
    extra: dict[int, float]
    factor: dict[int, float]

    def route_graph(self) -> RouteGraph:
        rg = RouteGraph()
        for i in range(self.n):
            rg.add_node(i)
        for (u, v), w in self.edges.items():
            rg.add_edge(u, v, w)
        rg.potential(self.n - 1)  # potentials computed before the weights change, as in a run
        for v in range(self.n):
            if self.extra[v] or self.factor[v] != 1.0:
                rg.set_dynamic(v, extra=self.extra[v], factor=self.factor[v])
        return rg

    def networkx(self) -> nx.DiGraph:
        g = nx.DiGraph()
        g.add_nodes_from(range(self.n))
        g.add_weighted_edges_from((u, v, w) for (u, v), w in self.edges.items())
        return g


weights = st.floats(0, 2, allow_nan=False, allow_infinity=False)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """Small DAGs with static weights and dynamic penalties (∞ blocks included); hypothesis
    shrinks a failure to the fewest nodes, edges and penalties."""
    n = draw(st.integers(2, 25))
    pairs = [(u, v) for u in range(n) for v in range(u + 1, n)]
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=min(len(pairs), 80)))
    edges = {e: draw(weights) for e in chosen}
    nodes = st.integers(0, n - 1)
    extra = dict.fromkeys(range(n), 0.0)
    factor = dict.fromkeys(range(n), 1.0)
    for v, kind, x in draw(
        st.lists(
            st.tuples(nodes, st.sampled_from(["block", "factor", "extra"]), weights), max_size=6
        )
    ):
        if kind == "block":
            factor[v] = math.inf
        elif kind == "factor":
            factor[v] = 1.0 + 1.5 * x
        else:
            extra[v] = x / 2
    return Case(n, edges, extra, factor)


@settings(max_examples=200, deadline=None)
@given(case=cases())
def test_route_matches_networkx_under_dynamic_weights(case: Case) -> None:
    rg, g = case.route_graph(), case.networkx()
    n, extra, factor = case.n, case.extra, case.factor

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


class CountingHeap:
    """``heapq`` for :mod:`orchestra.routing`, counting pushes: one per edge relaxation that
    improves a tentative distance (the work a shortest-path search does)."""

    def __init__(self) -> None:
        self.pushes = 0

    def heappush(self, heap: list[Any], item: Any) -> None:
        self.pushes += 1
        heapq.heappush(heap, item)

    heappop = staticmethod(heapq.heappop)


class TestExploresOnlyAroundTheHole:
    """After a failure the search relaxes about (route length × out-degree) edges, where a
    search from scratch (the same Dijkstra without the static potential) relaxes most of the
    graph: the README's "explores only around the hole"."""

    def test_relaxations_after_a_failure_vs_from_scratch(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from orchestra.bench.routing_scale import layered_graph

        layers, degree = 20, 20
        rg, _ = layered_graph(1000, layers, degree)
        goal = ("GOAL", "goal")
        best = rg.route({("START",): 0.0}, goal)
        assert best is not None and len(best.nodes) == layers + 2
        pos, failed = best.nodes[5], best.nodes[6]
        rg.set_dynamic(failed, factor=math.inf)
        sources = {v: w for v, w in rg.successors(pos) if v != failed}

        counter = CountingHeap()
        monkeypatch.setattr(routing, "heapq", counter)
        around = rg.route(sources, goal)
        informed = counter.pushes

        counter.pushes = 0
        monkeypatch.setattr(rg, "potential", lambda target: [0.0] * len(rg))
        scratch = rg.route(sources, goal)
        blind = counter.pushes

        assert around is not None and scratch is not None
        assert around.cost == pytest.approx(scratch.cost)  # the same exact answer
        assert failed not in around.nodes
        remaining = layers - 6  # layers from the failed hop to the goal
        assert informed <= (remaining + 2) * degree * 2
        assert blind > 5 * informed, (informed, blind)


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
