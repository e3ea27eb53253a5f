"""The router returns exactly networkx's shortest path under the current dynamic weights."""

from __future__ import annotations

import heapq
import math
import random
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
    """After a failure the router does about (route length × out-degree) work, where routing
    from scratch covers most of the graph: the README's "explores only around the hole".  On
    an acyclic route graph (every compiled graph) the work is the distances computed again
    (only upstream of the change is forgotten); on a graph with a cycle it is the search's
    relaxations (the same Dijkstra without the static potential relaxes most of the graph)."""

    def test_distances_computed_again_after_a_failure_vs_from_scratch(self) -> None:
        from orchestra.bench.routing_scale import layered_graph

        layers, degree = 20, 20
        rg, _ = layered_graph(1000, layers, degree)
        goal = ("GOAL", "goal")
        best = rg.route({("START",): 0.0}, goal)
        assert best is not None and len(best.nodes) == layers + 2
        pos, failed = best.nodes[5], best.nodes[6]
        rg.set_dynamic(failed, factor=math.inf)
        sources = {v: w for v, w in rg.successors(pos) if v != failed}
        t = rg._index[goal]

        before = len(rg._dyn[t])
        around = rg.route(sources, goal)
        informed = len(rg._dyn[t]) - before

        rg._dyn.clear()
        scratch = rg.route(sources, goal)
        blind = len(rg._dyn[t])

        assert around is not None and scratch is not None
        assert around.cost == pytest.approx(scratch.cost)  # the same exact answer
        assert failed not in around.nodes
        remaining = layers - 6  # layers from the failed hop to the goal
        assert informed <= (remaining + 2) * degree * 2
        assert blind > 5 * max(informed, 1), (informed, blind)

    def test_relaxations_after_a_failure_vs_from_scratch(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from orchestra.bench.routing_scale import layered_graph

        layers, degree = 20, 20
        rg, _ = layered_graph(1000, layers, degree)
        rg._cyclic = True  # route as on a graph with a cycle: the search
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
