"""The cost-weighted tool graph and the shortest-path router over it.

A :class:`RouteGraph` is what a :class:`~orchestra.graph.Graph` compiles into: nodes are
``(step, skill)`` choices plus pseudo nodes (``START`` and one sink per goal), edges are
allowed moves.  The weight of moving into node ``v`` is::

    w(u → v) = (transition(u, v) + cost(v) + extra(v)) × factor(v)        (∞ when v is blocked)

``transition`` and ``cost`` are static (declared); ``extra(v) ≥ 0`` and ``factor(v) ≥ 1`` are
dynamic and come from the health monitors (latency EWMA, observed reliability, penalties).
See :mod:`orchestra.monitors` for how signals become ``extra``/``factor``/blocks.

Routing is Dijkstra's algorithm on reduced costs (Johnson's reweighting, i.e. A* with an
exact-on-static-weights potential).  The potential ``h(v)`` is the distance from ``v`` to the
target over the *static* weights, computed once per target with networkx.  Because the
dynamic part only ever adds weight, ``h`` is a consistent lower bound: the search returns the
exact shortest path under the current weights, yet while nothing is penalised it walks
straight down the optimal path, and after a failure it only explores around the hole.  A
next-hop decision after a failure therefore costs about (path length × out-degree) edge
relaxations instead of a whole-graph Dijkstra (``orchestra bench routing-scale``).

Everything here is pure: no I/O, no clocks.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field

import networkx as nx

__all__ = ["INF", "Route", "RouteGraph"]

INF = math.inf


@dataclass(frozen=True)
class Route:
    """A shortest path: node keys from the first source to the target sink, and its cost."""

    nodes: tuple[Hashable, ...]
    cost: float

    @property
    def first(self) -> Hashable:
        return self.nodes[0]


@dataclass
class RouteGraph:
    """A directed graph with static edge weights and dynamic per-node weights.

    Build it with :meth:`add_node` / :meth:`add_edge`, then route with :meth:`route`.
    Node keys are any hashables (``(step, skill)`` tuples, ``"START"``, ``("GOAL", name)``).
    """

    _index: dict[Hashable, int] = field(default_factory=dict)
    _keys: list[Hashable] = field(default_factory=list)
    _succ: list[list[tuple[int, float]]] = field(default_factory=list)
    _pred: list[list[tuple[int, float]]] = field(default_factory=list)
    _extra: list[float] = field(default_factory=list)
    _factor: list[float] = field(default_factory=list)
    _potentials: dict[int, list[float]] = field(default_factory=dict)

    # ------------------------------------------------------------------ building

    def add_node(self, key: Hashable) -> int:
        if key in self._index:
            return self._index[key]
        i = len(self._keys)
        self._index[key] = i
        self._keys.append(key)
        self._succ.append([])
        self._pred.append([])
        self._extra.append(0.0)
        self._factor.append(1.0)
        self._potentials.clear()
        return i

    def add_edge(self, u: Hashable, v: Hashable, weight: float) -> None:
        if not (weight >= 0 and math.isfinite(weight)):
            raise ValueError(f"edge {u!r} -> {v!r}: weight must be finite and >= 0, got {weight}")
        iu, iv = self.add_node(u), self.add_node(v)
        self._succ[iu].append((iv, weight))
        self._pred[iv].append((iu, weight))
        self._potentials.clear()

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def nodes(self) -> list[Hashable]:
        return list(self._keys)

    def successors(self, key: Hashable) -> list[tuple[Hashable, float]]:
        return [(self._keys[j], w) for j, w in self._succ[self._index[key]]]

    def edge_count(self) -> int:
        return sum(len(s) for s in self._succ)

    def to_networkx(self) -> nx.DiGraph:
        """The static graph as a networkx ``DiGraph`` (edge attribute ``weight``)."""
        g = nx.DiGraph()
        g.add_nodes_from(self._keys)
        for i, succ in enumerate(self._succ):
            for j, w in succ:
                g.add_edge(self._keys[i], self._keys[j], weight=w)
        return g

    # ------------------------------------------------------------------ dynamic weights

    def set_dynamic(self, key: Hashable, *, extra: float = 0.0, factor: float = 1.0) -> None:
        """Set the dynamic part of the weight into ``key``; ``factor=inf`` blocks it.

        ``extra`` must be >= 0 and ``factor`` >= 1: dynamic weight only ever adds, which keeps
        the static potentials admissible.
        """
        if extra < 0 or not factor >= 1:
            raise ValueError("dynamic weight must add: extra >= 0 and factor >= 1")
        i = self._index[key]
        self._extra[i] = extra
        self._factor[i] = factor

    def reset_dynamic(self) -> None:
        for i in range(len(self._keys)):
            self._extra[i] = 0.0
            self._factor[i] = 1.0

    def blocked(self, key: Hashable) -> bool:
        return self._factor[self._index[key]] == INF

    def weight_into(self, key: Hashable, static: float) -> float:
        i = self._index[key]
        return (static + self._extra[i]) * self._factor[i]

    # ------------------------------------------------------------------ routing

    def potential(self, target: Hashable) -> list[float]:
        """Static distance from every node to ``target`` (cached; networkx Dijkstra)."""
        t = self._index[target]
        pot = self._potentials.get(t)
        if pot is None:
            rev = nx.DiGraph()
            rev.add_nodes_from(range(len(self._keys)))
            for i, succ in enumerate(self._succ):
                for j, w in succ:
                    # keep the cheapest parallel edge
                    if not rev.has_edge(j, i) or rev[j][i]["weight"] > w:
                        rev.add_edge(j, i, weight=w)
            dist = nx.single_source_dijkstra_path_length(rev, t, weight="weight")
            pot = [dist.get(i, INF) for i in range(len(self._keys))]
            self._potentials[t] = pot
        return pot

    def route(self, sources: Mapping[Hashable, float], target: Hashable) -> Route | None:
        """Cheapest path from any of ``sources`` (each with its entry cost) to ``target``.

        The entry cost of a source is added to the dynamic weight of entering it.  Returns
        ``None`` when no finite path exists under the current weights.
        """
        pot = self.potential(target)
        t = self._index[target]
        succ, extra, factor = self._succ, self._extra, self._factor
        best: dict[int, float] = {}
        parent: dict[int, int] = {}
        heap: list[tuple[float, float, int]] = []
        for key, entry in sources.items():
            i = self._index[key]
            g = (entry + extra[i]) * factor[i]
            if g == INF or pot[i] == INF:
                continue
            if g < best.get(i, INF):
                best[i] = g
                parent[i] = -1
                heapq.heappush(heap, (g + pot[i], g, i))
        done: set[int] = set()
        while heap:
            _, g, u = heapq.heappop(heap)
            if u in done or g > best.get(u, INF):
                continue
            if u == t:
                path = [u]
                while parent[path[-1]] != -1:
                    path.append(parent[path[-1]])
                path.reverse()
                return Route(tuple(self._keys[i] for i in path), g)
            done.add(u)
            for v, w in succ[u]:
                if v in done:
                    continue
                fv = factor[v]
                if fv == INF or pot[v] == INF:
                    continue
                ng = g + (w + extra[v]) * fv
                if ng < best.get(v, INF):
                    best[v] = ng
                    parent[v] = u
                    heapq.heappush(heap, (ng + pot[v], ng, v))
        return None

    def reachable(self, sources: Iterable[Hashable], target: Hashable) -> bool:
        """Whether ``target`` can be reached from any source under the current weights."""
        return self.route({s: 0.0 for s in sources}, target) is not None
