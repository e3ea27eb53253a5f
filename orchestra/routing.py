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

import functools
import heapq
import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import networkx as nx

__all__ = ["INF", "Route", "RouteGraph"]

INF = math.inf


class Route:
    """A shortest path: node keys from the first source to the target sink, and its cost.

    A route read from memoised distances keeps the nodes after its first unmaterialised
    until :attr:`nodes` is read, so that choosing the next hop does not cost the path's
    length; :meth:`head`, :attr:`last` and ``len()`` read it without materialising it.
    """

    __slots__ = ("_length", "_more", "_nodes", "cost")

    def __init__(
        self,
        nodes: Sequence[Hashable],
        cost: float,
        *,
        more: Callable[[int | None], tuple[Hashable, ...]] | None = None,
        length: int | None = None,
        last: Hashable = None,
    ):
        self._nodes: tuple[Hashable, ...] = tuple(nodes)
        self._more = more  # the nodes after ``_nodes[:-1]``, at most the given number
        self._length = len(self._nodes) if more is None or length is None else length
        self.cost = cost
        if more is not None:
            self._nodes = (*self._nodes, last)  # the last node is known; the middle is not

    @property
    def nodes(self) -> tuple[Hashable, ...]:
        if self._more is not None:
            self._nodes = (*self._nodes[:-1], *self._more(None))
            self._more = None
        return self._nodes

    @property
    def first(self) -> Hashable:
        return self._nodes[0]

    @property
    def last(self) -> Hashable:
        return self._nodes[-1]

    def head(self, n: int) -> tuple[Hashable, ...]:
        """The first ``n`` nodes (all of them if the route is shorter)."""
        if self._more is None:
            return self._nodes[:n]
        known = self._nodes[:-1]
        return (*known, *self._more(max(0, n - len(known))))[:n]

    def __len__(self) -> int:
        return self._length

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Route):
            return NotImplemented
        return self.cost == other.cost and self.nodes == other.nodes

    def __hash__(self) -> int:
        return hash((self.nodes, self.cost))

    def __repr__(self) -> str:
        return f"Route(nodes={self.nodes!r}, cost={self.cost!r})"


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
    # per target: each node's distance to it under the current weights (leaving the node),
    # its next hop and the hops left, computed on demand; a weight change forgets the nodes
    # upstream of it
    _dyn: dict[int, dict[int, tuple[float, int, int]]] = field(default_factory=dict)
    _dyn_version: int = 0
    _cyclic: bool = False

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
        self._forget_static()
        return i

    def add_edge(self, u: Hashable, v: Hashable, weight: float) -> None:
        if not (weight >= 0 and math.isfinite(weight)):
            raise ValueError(f"edge {u!r} -> {v!r}: weight must be finite and >= 0, got {weight}")
        iu, iv = self.add_node(u), self.add_node(v)
        self._succ[iu].append((iv, weight))
        self._pred[iv].append((iu, weight))
        self._forget_static()

    def _forget_static(self) -> None:
        self._potentials.clear()
        self._dyn.clear()
        self._dyn_version += 1
        self._cyclic = False

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
        if self._extra[i] == extra and self._factor[i] == factor:
            return
        self._extra[i] = extra
        self._factor[i] = factor
        self._forget_upstream(i)

    def reset_dynamic(self) -> None:
        for i in range(len(self._keys)):
            self._extra[i] = 0.0
            self._factor[i] = 1.0
        self._dyn.clear()
        self._dyn_version += 1

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

    def _forget_upstream(self, v: int) -> None:
        """The weight into ``v`` changed: forget the distances of the nodes that can reach it."""
        if not self._dyn:
            return
        self._dyn_version += 1
        pred = self._pred
        for memo in self._dyn.values():
            todo = [v]
            while todo:
                for p, _ in pred[todo.pop()]:
                    if memo.pop(p, None) is not None:
                        todo.append(p)

    def _dynamic(self, u: int, t: int) -> tuple[float, int, int] | None:
        """(distance from ``u`` to ``t`` under the current weights, next hop, hops), or
        ``None`` when the graph has a cycle (then only the search applies).

        A depth-first pass over what ``u`` reaches, memoised per target: after a weight
        change only the nodes upstream of it are computed again.  Ties go to the cheaper
        next edge, then to the node added first.
        """
        if self._cyclic:
            return None
        memo = self._dyn.setdefault(t, {})
        hit = memo.get(u)
        if hit is not None:
            return hit
        succ, extra, factor = self._succ, self._extra, self._factor
        memo[t] = (0.0, -1, 0)
        stack: list[tuple[int, int]] = [(u, 0)]
        open_: set[int] = {u}
        while stack:
            v, i = stack[-1]
            edges = succ[v]
            if v != t and i < len(edges):
                stack[-1] = (v, i + 1)
                x = edges[i][0]
                if x in memo or factor[x] == INF:
                    continue
                if x in open_:
                    self._cyclic = True
                    self._dyn.clear()
                    return None
                stack.append((x, 0))
                open_.add(x)
                continue
            stack.pop()
            open_.discard(v)
            if v == t:
                continue
            best: tuple[float, float, int] = (INF, INF, -1)
            hops = 0
            for x, w in edges:
                fx = factor[x]
                if fx == INF:
                    continue
                d = memo[x]
                if d[0] == INF:
                    continue
                hop = (w + extra[x]) * fx
                cand = (hop + d[0], hop, x)
                if cand < best:
                    best, hops = cand, d[2] + 1
            memo[v] = (best[0], best[2], hops)
        return memo[u]

    def _follow(self, u: int, t: int, version: int, limit: int | None) -> tuple[Hashable, ...]:
        """At most ``limit`` keys after ``u`` on its path to ``t`` (as computed at
        ``version``); all of them for ``None``."""
        if version != self._dyn_version:
            raise RuntimeError("a route's nodes were read after the weights changed")
        memo = self._dyn[t]
        out: list[Hashable] = []
        v = u
        while v != t and (limit is None or len(out) < limit):
            v = memo[v][1]
            out.append(self._keys[v])
        return tuple(out)

    def route(self, sources: Mapping[Hashable, float], target: Hashable) -> Route | None:
        """Cheapest path from any of ``sources`` (each with its entry cost) to ``target``.

        The entry cost of a source is added to the dynamic weight of entering it.  Returns
        ``None`` when no finite path exists under the current weights.
        """
        t = self._index[target]
        if not self._cyclic:
            found = self._route_dag(sources, t)
            if found is not False:
                assert found is not True
                return found
        pot = self.potential(target)
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

    def _route_dag(self, sources: Mapping[Hashable, float], t: int) -> Route | bool | None:
        """:meth:`route` from the memoised distances; ``False`` if the graph has a cycle."""
        extra, factor = self._extra, self._factor
        best: tuple[float, float, int] | None = None
        hops = 0
        for key, entry in sources.items():
            i = self._index[key]
            g = (entry + extra[i]) * factor[i]
            if not g < INF:  # blocked (a zero entry times ∞ is NaN)
                continue
            d = self._dynamic(i, t)
            if d is None:
                return False
            if d[0] == INF:
                continue
            cand = (g + d[0], g, i)
            if best is None or cand < best:
                best, hops = cand, d[2]
        if best is None:
            return None
        u = best[2]
        keys = self._keys
        if u == t:
            return Route((keys[u],), best[0])
        return Route(
            (keys[u],),
            best[0],
            more=functools.partial(self._follow, u, t, self._dyn_version),
            length=1 + hops,
            last=keys[t],
        )

    def reachable(self, sources: Iterable[Hashable], target: Hashable) -> bool:
        """Whether ``target`` can be reached from any source under the current weights."""
        return self.route({s: 0.0 for s in sources}, target) is not None
