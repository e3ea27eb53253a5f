"""Random layered scenario files with outages and runtime faults, for robustness checks.

A generated graph is layered: ``Start`` → layer 1 → … → layer L → ``Goal``, each tool
with at least one edge in and one edge out, random edge costs, and (by chance) a
fallback goal ``Partial`` reached from a middle layer.  Each scenario takes a few ``down``
tools and a few faults of every kind, finite or forever.  The same seed gives the same
file::

    python -m orchestra.bench.scenario_gen --seed 7 --out /tmp/random.json
    orchestra bench selfheal --scenarios /tmp/random.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
from pathlib import Path
from typing import Any

from orchestra.scenario import ScenarioFile

__all__ = ["generate", "generate_file", "main"]

_KINDS = ("exception", "timeout", "malformed")


def _graph(
    rng: random.Random, name: str, layers: int, width: tuple[int, int], edge_p: float
) -> dict[str, Any]:
    levels: list[list[str]] = [["Start"]]
    for i in range(layers):
        levels.append([f"{name}_L{i + 1}T{j + 1}" for j in range(rng.randint(*width))])
    levels.append(["Goal"])
    edges: list[dict[str, Any]] = []

    def cost() -> float:
        return round(rng.uniform(0.1, 1.0), 2)

    for up, down in itertools.pairwise(levels):
        linked: set[tuple[str, str]] = set()
        for a in up:
            for b in down:
                if rng.random() < edge_p:
                    linked.add((a, b))
        for a in up:  # every node leads somewhere
            if not any(x == a for x, _ in linked):
                linked.add((a, rng.choice(down)))
        for b in down:  # every node is reached
            if not any(y == b for _, y in linked):
                linked.add((rng.choice(up), b))
        edges += [{"source": a, "target": b, "cost": cost()} for a, b in sorted(linked)]
    graph: dict[str, Any] = {
        "topology": "layered",
        "start": "Start",
        "goal": "Goal",
        "edges": edges,
    }
    if layers >= 2 and rng.random() < 0.6:
        mid = levels[rng.randint(1, layers - 1)]
        for a in rng.sample(mid, k=min(len(mid), rng.randint(1, 2))):
            edges.append({"source": a, "target": "Partial", "cost": cost()})
        graph["fallback_goals"] = ["Partial"]
    return graph


def generate(
    seed: int,
    *,
    graphs: int = 3,
    scenarios_per_graph: int = 8,
    layers: tuple[int, int] = (3, 5),
    width: tuple[int, int] = (2, 4),
    edge_p: float = 0.5,
    max_down: int = 2,
    max_faults: int = 3,
) -> dict[str, Any]:
    """A scenario file (as JSON-able data) drawn from ``seed``."""
    rng = random.Random(seed)
    out_graphs: dict[str, Any] = {}
    scenarios: list[dict[str, Any]] = []
    for gi in range(graphs):
        name = f"g{gi + 1}"
        g = _graph(rng, name, rng.randint(*layers), width, edge_p)
        out_graphs[name] = g
        tools = sorted({e["target"] for e in g["edges"]} - {"Goal", "Partial"})
        for si in range(scenarios_per_graph):
            down = sorted(rng.sample(tools, k=rng.randint(0, min(max_down, len(tools)))))
            faults = []
            # at most one fault per tool, so a finite one (count <= 2) stays recoverable
            # within three attempts, the retry budget of every system here
            for tool in rng.sample(tools, k=rng.randint(0, min(max_faults, len(tools)))):
                fault: dict[str, Any] = {
                    "tool": tool,
                    "kind": rng.choice(_KINDS),
                    "from_call": rng.choice((1, 1, 1, 2)),
                }
                count = rng.choice((None, 1, 1, 2))
                if count is not None:
                    fault["count"] = count
                faults.append(fault)
            scenarios.append(
                {"id": f"{name.upper()}-{si + 1}", "graph": name, "down": down, "faults": faults}
            )
    data = {
        "source": f"orchestra.bench.scenario_gen, seed {seed}",
        "note": "Random layered tool graphs with outages and runtime faults.",
        "graphs": out_graphs,
        "scenarios": scenarios,
    }
    ScenarioFile.model_validate(data)  # a generator bug shows here, not in the benchmark
    return data


def generate_file(path: str | Path, seed: int, **kwargs: Any) -> Path:
    """Write :func:`generate` ``(seed, **kwargs)`` to ``path``; returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(generate(seed, **kwargs), indent=1) + "\n")
    return p


def main(argv: list[str] | None = None) -> None:
    """``python -m orchestra.bench.scenario_gen --seed N --out FILE``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--graphs", type=int, default=3)
    ap.add_argument("--scenarios-per-graph", type=int, default=8)
    args = ap.parse_args(argv)
    generate_file(
        args.out, args.seed, graphs=args.graphs, scenarios_per_graph=args.scenarios_per_graph
    )


if __name__ == "__main__":
    main()
