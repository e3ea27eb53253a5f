"""``orchestra bench routing-scale``: the next-hop decision after a failure, at scale.

On layered tool graphs of about 100, 1,000 and 10,000 tools, the run stands at some node of
its current route, the next hop fails, and a new next hop must be chosen.  Orchestra's
router (Dijkstra on potential-reduced costs, :mod:`orchestra.routing`) is timed against
``networkx.dijkstra_path`` recomputed from scratch on the same graph without the failed
tool, in the same process, on the same positions.  Both must agree on the route's cost.
"""

from __future__ import annotations

import gc
import json
import random
import statistics
import time
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["SIZES", "layered_graph", "register", "run_routing_scale"]

# (tools, layers, out-degree): ~100/500, ~1,000/20,000 and ~10,000/1,000,000 edges
SIZES: dict[str, tuple[int, int, int]] = {
    "100": (100, 10, 5),
    "1000": (1000, 20, 20),
    "10000": (10000, 10, 100),
}


def layered_graph(tools: int, layers: int, degree: int, seed: int = 7) -> tuple[Any, Any]:
    """A RouteGraph and the equivalent networkx DiGraph: START → layers → GOAL."""
    import networkx as nx

    from orchestra.routing import RouteGraph

    rnd = random.Random(seed)
    width = tools // layers
    rg = RouteGraph()
    g = nx.DiGraph()
    start, goal = ("START",), ("GOAL", "goal")
    rg.add_node(start)
    g.add_node(start)
    names = [[(f"L{i}", f"t{i}_{j}") for j in range(width)] for i in range(layers)]
    for n in names[0]:
        w = rnd.uniform(0.1, 1.0)
        rg.add_edge(start, n, w)
        g.add_edge(start, n, weight=w)
    for i in range(layers - 1):
        for u in names[i]:
            for v in rnd.sample(names[i + 1], min(degree, width)):
                w = rnd.uniform(0.1, 1.0)
                rg.add_edge(u, v, w)
                g.add_edge(u, v, weight=w)
    for u in names[-1]:
        rg.add_edge(u, goal, 0.0)
        g.add_edge(u, goal, weight=0.0)
    return rg, g


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def _one_failure(rg: Any, g: Any, goal: Any, pos: Any, failed: Any) -> tuple[float, float, bool]:
    """Fail ``failed``; time both next-hop decisions from ``pos``; say if they agree."""
    import networkx as nx

    rg.reset_dynamic()
    rg.set_dynamic(failed, factor=float("inf"))
    t0 = time.perf_counter()
    sources = {v: w for v, w in rg.successors(pos) if v != failed}
    r = rg.route(sources, goal)
    ours = (time.perf_counter() - t0) * 1e3
    saved_in = list(g.in_edges(failed, data="weight"))
    saved_out = list(g.out_edges(failed, data="weight"))
    g.remove_node(failed)
    t0 = time.perf_counter()
    try:
        p = nx.dijkstra_path(g, pos, goal, weight="weight")
        cost: float | None = nx.path_weight(g, p, weight="weight")
    except nx.NetworkXNoPath:
        cost = None
    base = (time.perf_counter() - t0) * 1e3
    g.add_node(failed)
    g.add_weighted_edges_from(saved_in)
    g.add_weighted_edges_from(saved_out)
    ours_cost = None if r is None else r.cost
    agree = (ours_cost is None) == (cost is None) and (
        cost is None or ours_cost is None or abs(ours_cost - cost) <= 1e-9
    )
    return ours, base, agree


def run_routing_scale(
    sizes: list[str] | None = None, trials: int | None = None, seed: int = 11
) -> dict[str, Any]:
    """Time next-hop decisions after a failure; returns the JSON-able result."""
    out: dict[str, Any] = {"sizes": {}}
    for label in sizes or list(SIZES):
        tools, layers, degree = SIZES[label]
        t0 = time.perf_counter()
        rg, g = layered_graph(tools, layers, degree)
        build_s = time.perf_counter() - t0
        goal = ("GOAL", "goal")
        t0 = time.perf_counter()
        rg.potential(goal)
        prepare_ms = (time.perf_counter() - t0) * 1e3
        n = trials or {"100": 300, "1000": 150, "10000": 12}[label]
        rnd = random.Random(seed)
        base_route = rg.route({("START",): 0.0}, goal)
        assert base_route is not None
        ours: list[float] = []
        base: list[float] = []
        mismatches = 0
        gc.collect()
        gc.disable()  # as timeit does: time the algorithms, not the collector (both sides alike)
        try:
            for _ in range(n):
                # stand somewhere on the current best route; its next hop fails
                k = rnd.randrange(0, len(base_route.nodes) - 2)
                o, b, agree = _one_failure(
                    rg, g, goal, base_route.nodes[k], base_route.nodes[k + 1]
                )
                ours.append(o)
                base.append(b)
                mismatches += not agree
        finally:
            gc.enable()
            rg.reset_dynamic()
        out["sizes"][label] = {
            "tools": tools,
            "edges": rg.edge_count(),
            "trials": n,
            "build_s": round(build_s, 3),
            "prepare_ms": round(prepare_ms, 3),
            "orchestra_ms_p50": round(statistics.median(ours), 4),
            "orchestra_ms_p99": round(_pct(ours, 0.99), 4),
            "networkx_ms_p50": round(statistics.median(base), 4),
            "networkx_ms_p99": round(_pct(base, 0.99), 4),
            "speedup_p50": round(statistics.median(base) / statistics.median(ours), 2),
            "route_cost_mismatches": mismatches,
        }
    return out


def register(app: typer.Typer) -> None:
    @app.command("routing-scale")
    def routing_scale(
        json_out: Annotated[
            Path | None, typer.Option("--json", help="Write the figures as JSON here")
        ] = None,
        sizes: Annotated[
            str, typer.Option(help="Comma-separated sizes (100,1000,10000)")
        ] = "100,1000,10000",
        trials: Annotated[
            int | None, typer.Option(help="Failures per size (default: 300/150/12)")
        ] = None,
    ) -> None:
        """Next-hop decision after a failure vs networkx.dijkstra_path from scratch."""
        from rich.console import Console
        from rich.table import Table

        wanted = [s.strip() for s in sizes.split(",") if s.strip()]
        unknown = [s for s in wanted if s not in SIZES]
        if unknown or not wanted:
            raise typer.BadParameter(
                f"unknown size {', '.join(map(repr, unknown)) or 'none'}; use {', '.join(SIZES)}",
                param_hint="--sizes",
            )
        result = run_routing_scale(wanted, trials)
        table = Table(title="next hop after a failure (ms)")
        for col in (
            "tools",
            "edges",
            "orchestra p50",
            "orchestra p99",
            "networkx p50",
            "networkx p99",
            "speed-up (p50)",
            "potentials ms",
            "cost mismatches",
        ):
            table.add_column(col, justify="right")
        for r in result["sizes"].values():
            table.add_row(
                f"{r['tools']:,}",
                f"{r['edges']:,}",
                f"{r['orchestra_ms_p50']:.3f}",
                f"{r['orchestra_ms_p99']:.3f}",
                f"{r['networkx_ms_p50']:.3f}",
                f"{r['networkx_ms_p99']:.3f}",
                f"{r['speedup_p50']:.1f}x",
                f"{r['prepare_ms']:.1f}",
                str(r["route_cost_mismatches"]),
            )
        Console().print(table)
        if json_out:
            json_out.write_text(json.dumps(result, indent=2))
