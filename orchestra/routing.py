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

    A route that follows a precomputed static path keeps that part unmaterialised until
    :attr:`nodes` is read, so that choosing the next hop does not cost the path's length;
    :meth:`head`, :attr:`last` and ``len()`` read it without materialising it.
    """

    __slots__ = ("_length", "_nodes", "_rest", "cost")

    def __init__(
        self,
        nodes: Sequence[Hashable],
        cost: float,
        *,
        rest: Callable[[], tuple[Hashable, ...]] | None = None,
        length: int | None = None,
        last: Hashable = None,
    ):
        self._nodes: tuple[Hashable, ...] = tuple(nodes)
        self._rest = rest
        self._length = len(self._nodes) if rest is None or length is None else length
        self.cost = cost
        if rest is not None:
            self._nodes = (*self._nodes, last)  # the last node is known; the middle is not

    @property
    def nodes(self) -> tuple[Hashable, ...]:
        if self._rest is not None:
            self._nodes = (*self._nodes[:-1], *self._rest())
            self._rest = None
        return self._nodes

    @property
    def first(self) -> Hashable:
        return self._nodes[0]

    @property
    def last(self) -> Hashable:
        return self._nodes[-1]

    def head(self, n: int) -> tuple[Hashable, ...]:
        """The first ``n`` nodes (all of them if the route is shorter)."""
        if self._rest is not None and n >= len(self._nodes) - 1:
            return self.nodes[:n]
        return self._nodes[:n]

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
    # per target: each node's next hop on a static shortest path (-1: none), with its weight
    _tight: dict[int, list[tuple[int, float]]] = field(default_factory=dict)
    # per target: whether every node after this one on its static path carries no dynamic weight
    _clean: dict[int, dict[int, bool]] = field(default_factory=dict)
    # per target: hops and static cost from each node along its static path
    _tails: dict[int, dict[int, tuple[int, float]]] = field(default_factory=dict)

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
        self._tight.clear()
        self._clean.clear()
        self._tails.clear()

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
        if (self._extra[i] == 0.0 and self._factor[i] == 1.0) != (extra == 0.0 and factor == 1.0):
            self._clean.clear()
        self._extra[i] = extra
        self._factor[i] = factor

    def reset_dynamic(self) -> None:
        for i in range(len(self._keys)):
            self._extra[i] = 0.0
            self._factor[i] = 1.0
        self._clean.clear()

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

    def _tight_of(self, t: int) -> list[tuple[int, float]]:
        """Each node's next hop on a static shortest path to ``t``, ties broken as the search
        breaks them (cheaper edge, then lower index)."""
        tight = self._tight.get(t)
        if tight is None:
            pot = self.potential(self._keys[t])
            tight = []
            for u, succ in enumerate(self._succ):
                best: tuple[float, float, int] | None = None
                if u != t and pot[u] != INF:
                    for v, w in succ:
                        if pot[v] == INF:
                            continue
                        cand = (w + pot[v], w, v)
                        if best is None or cand < best:
                            best = cand
                tight.append((best[2], best[1]) if best is not None else (-1, 0.0))
            self._tight[t] = tight
        return tight

    def _clean_from(self, u: int, t: int, tight: list[tuple[int, float]]) -> bool:
        """Whether every node after ``u`` on its static path to ``t`` has no dynamic weight
        (then that path is still a shortest one from ``u``)."""
        memo = self._clean.setdefault(t, {})
        extra, factor = self._extra, self._factor
        walk: list[int] = []
        v, ok = u, True
        while v != t:
            hit = memo.get(v)
            if hit is not None:
                ok = hit
                break
            walk.append(v)
            nxt = tight[v][0]
            if nxt == -1 or extra[nxt] != 0.0 or factor[nxt] != 1.0:
                ok = False
                memo[v] = False
                walk.pop()
                break
            v = nxt
        for x in walk:
            memo[x] = ok
        return memo[u]

    def _follow(self, u: int, t: int, tight: list[tuple[int, float]]) -> tuple[Hashable, ...]:
        """The keys after ``u`` on its static path to ``t``."""
        out, v = [], u
        while v != t:
            v = tight[v][0]
            out.append(self._keys[v])
        return tuple(out)

    def _tail_of(self, u: int, t: int, tight: list[tuple[int, float]]) -> tuple[int, float]:
        """Hops and static cost from ``u`` to ``t`` along ``tight`` (memoised per target)."""
        memo = self._tails.setdefault(t, {})
        walk: list[int] = []
        v = u
        while v != t and v not in memo:
            walk.append(v)
            v = tight[v][0]
        hops, cost = (0, 0.0) if v == t else memo[v]
        for x in reversed(walk):
            hops += 1
            cost = tight[x][1] + cost
            memo[x] = (hops, cost)
        return memo[u] if u != t else (0, 0.0)

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
        tight = self._tight_of(t)
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
            if self._clean_from(u, t, tight):
                # on a static shortest path that nothing dynamic weighs on: following it costs
                # exactly the lower bound, so it is a shortest path (and its cost is known)
                path = [u]
                while parent[path[-1]] != -1:
                    path.append(parent[path[-1]])
                path.reverse()
                keys = self._keys
                hops, rest_cost = self._tail_of(u, t, tight)
                return Route(
                    tuple(keys[i] for i in path),
                    g + rest_cost,
                    rest=functools.partial(self._follow, u, t, tight),
                    length=len(path) + hops,
                    last=keys[t],
                )
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
