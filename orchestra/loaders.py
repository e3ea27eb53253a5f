"""Loading graphs from files: YAML specs, Python modules and scenario tool graphs."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import networkx as nx
import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, create_model

from orchestra.errors import GraphSpecError, SpecError, UnknownSkillError
from orchestra.graph import Graph, Step
from orchestra.scenario import ScenarioGraph
from orchestra.skills import Skill, SkillRegistry

__all__ = ["graph_from_scenario", "load_graph", "load_graph_yaml", "milestone"]


def milestone(name: str) -> Skill:
    """A no-op node of a route (start, goal, a waypoint): it calls nothing and cannot fail."""
    return Skill(name=name, description="milestone", milestone=True)


# ---------------------------------------------------------------------- scenario graphs


def graph_from_scenario(
    sg: ScenarioGraph, tools: Mapping[str, Skill], *, name: str = "scenario"
) -> Graph:
    """Turn a scenario tool graph into a :class:`Graph`.

    Nodes are layered by their longest distance from ``start``; each layer becomes a step
    whose candidates are that layer's tools, and each edge a transition (its cost is the
    cost of the move; moves not in the file are not allowed).  An edge that skips layers
    passes through no-op waypoints, so every path of the file is a path of the graph and
    nothing else is.
    """
    g = nx.DiGraph()
    for i, e in enumerate(sg.edges):
        if g.has_edge(e.source, e.target):
            raise GraphSpecError(
                f"duplicate edge {e.source} -> {e.target}", field=f"edges[{i}]", source=name
            )
        g.add_edge(e.source, e.target, cost=e.cost)
    try:
        cycle = nx.find_cycle(g)
        raise GraphSpecError(
            "edges form a cycle: " + " -> ".join([u for u, _ in cycle] + [cycle[0][0]]),
            field="edges",
            source=name,
        )
    except nx.NetworkXNoCycle:
        pass
    goals = [sg.goal, *sg.fallback_goals]
    keep = (nx.descendants(g, sg.start) | {sg.start}) & set().union(
        *(nx.ancestors(g, t) | {t} for t in goals)
    )
    if sg.goal not in keep:
        raise GraphSpecError(
            f"goal {sg.goal!r} is unreachable from {sg.start!r}", field="goal", source=name
        )
    sub = g.subgraph(keep).copy()
    layer: dict[str, int] = {}
    for n in nx.topological_sort(sub):
        preds = list(sub.predecessors(n))
        layer[n] = 0 if n == sg.start else max(layer[p] + 1 for p in preds)
    milestones = sg.milestones
    skills: dict[str, Skill] = {}
    for n in sub.nodes:
        if n in milestones:
            skills[n] = milestone(n)
        elif n in tools:
            skills[n] = tools[n]
        else:
            raise UnknownSkillError(n, field=f"tools.{n}", source=name, known=list(tools))
    layers: dict[int, list[str]] = {}
    transitions: dict[tuple[str, str], float] = {}
    for n in sorted(sub.nodes, key=lambda n: (layer[n], list(g.nodes).index(n))):
        layers.setdefault(layer[n], []).append(n)
    for u, v, data in sub.edges(data=True):
        span = layer[v] - layer[u]
        prev, cost = u, float(data["cost"])
        for k in range(1, span):
            w = f"{u}~{v}#{k}"
            skills[w] = milestone(w)
            layers[layer[u] + k].append(w)
            transitions[(prev, w)] = cost
            prev, cost = w, 0.0
        transitions[(prev, v)] = cost
    step_of: dict[str, str] = {}
    steps: list[Step] = []
    prev_id: str | None = None
    for d in sorted(layers):
        members = layers[d]
        real = [m for m in members if "~" not in m] or members
        sid = "|".join(real).replace(".", "_").replace(":", "_")
        if any(s.id == sid for s in steps):
            sid = f"{sid}@{d}"
        for m in members:
            step_of[m] = sid
        steps.append(Step(id=sid, candidates=members, depends_on=[prev_id] if prev_id else []))
        prev_id = sid
    return Graph(
        name,
        steps=steps,
        skills=SkillRegistry(skills.values()),
        goal=f"{step_of[sg.goal]}:{sg.goal}",
        fallback_goals=[f"{step_of[f]}:{f}" for f in sg.fallback_goals if f in step_of],
        transitions=transitions,
        strict_transitions=True,
    )


# ---------------------------------------------------------------------- YAML


_TYPES: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "list": list,
    "dict": dict,
    "any": Any,
    "secret": SecretStr,  # sealed at rest, opened only inside the skill's call
}


class _TransitionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    source: str = Field(alias="from")
    target: str = Field(alias="to")
    cost: float = Field(ge=0)


class _GraphSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    catalog: str | None = None
    input: dict[str, str] | None = None
    steps: list[dict[str, Any]] = Field(min_length=1)
    goal: str | None = None
    fallback_goals: list[str] = Field(default_factory=list)
    transitions: list[_TransitionSpec] = Field(default_factory=list)
    strict_transitions: bool = False


_GRAPH_KEYS = (
    "name",
    "description",
    "catalog",
    "input",
    "steps",
    "goal",
    "fallback_goals",
    "transitions",
    "strict_transitions",
)
_STEP_KEYS = ("id", "candidates", "after", "inputs", "description")


def _first_error(exc: ValidationError, keys: tuple[str, ...]) -> tuple[str, str]:
    """(message, dotted field) of a validation error, with the allowed keys for an unknown one."""
    e = exc.errors()[0]
    where = ".".join(map(str, e["loc"]))
    if e["type"] == "extra_forbidden":
        return f"unknown key (use: {', '.join(keys)})", where
    if e["type"] == "model_type":
        return f"expected a mapping with keys {', '.join(keys)}", where
    return e["msg"], where


def load_graph_yaml(path: str | Path, *, skills: SkillRegistry | None = None) -> Graph:
    """Load a graph declared in YAML; errors name the file and the field.

    Skills come from ``skills`` and/or the catalog folder named by the spec's ``catalog:``
    key (relative to the YAML file).  The file is data: its catalog must lie inside the
    file's own folder or under ``ORCHESTRA_TRUSTED_PATHS`` (:mod:`orchestra.trust`), or
    :class:`~orchestra.errors.UntrustedPathError` is raised before anything is imported.
    """
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise GraphSpecError("no such file", source=str(p)) from None
    except yaml.YAMLError as exc:
        raise GraphSpecError(f"not valid YAML: {exc}", source=str(p)) from exc
    if not isinstance(raw, dict):
        raise GraphSpecError(
            "a graph spec is a mapping with name, steps and optional input, catalog, goal, "
            "fallback_goals, transitions (see graphs/refund.yaml)",
            source=str(p),
        )
    try:
        spec = _GraphSpec.model_validate(raw)
    except ValidationError as exc:
        msg, where = _first_error(exc, _GRAPH_KEYS)
        raise GraphSpecError(msg, field=where, source=str(p)) from exc
    registry = SkillRegistry(skills.values() if skills else ())
    if spec.catalog:
        from orchestra.catalog import load_catalog
        from orchestra.trust import check_trusted, trusted_roots

        # A YAML graph is data: it may only name code inside its own folder (or a trusted one).
        roots = trusted_roots(p.parent, project_of=p.parent)
        folder = check_trusted(p.parent / spec.catalog, roots, field="catalog", source=str(p))
        for sk in load_catalog(folder, trusted=roots):
            registry.add(sk, replace=True)
    input_model = None
    if spec.input is not None:
        fields: dict[str, Any] = {}
        for fname, tname in spec.input.items():
            optional = tname.endswith("?")
            t = _TYPES.get(tname.rstrip("?"))
            if t is None:
                raise GraphSpecError(
                    f"unknown type {tname!r} (use one of {', '.join(_TYPES)})",
                    field=f"input.{fname}",
                    source=str(p),
                )
            fields[fname] = (t | None, None) if optional else (t, ...)
        input_model = create_model(f"{spec.name.title().replace('-', '')}Input", **fields)
    steps = []
    for i, raw_step in enumerate(spec.steps):
        try:
            steps.append(Step.model_validate(raw_step))
        except ValidationError as exc:
            msg, where = _first_error(exc, _STEP_KEYS)
            field = f"steps[{i}]" + (f".{where}" if where else "")
            raise GraphSpecError(msg, field=field, source=str(p)) from exc
    graph = Graph(
        spec.name,
        description=spec.description,
        steps=steps,
        skills=registry,
        input_model=input_model,
        goal=spec.goal,
        fallback_goals=spec.fallback_goals,
        transitions={(t.source, t.target): t.cost for t in spec.transitions},
        strict_transitions=spec.strict_transitions,
    )
    try:
        graph.validate()
    except GraphSpecError as exc:
        if exc.source and not exc.source.startswith(str(p)):
            exc.args = (f"{p}: {exc.args[0]}",)
        raise
    return graph


# ---------------------------------------------------------------------- any file


def code_error(exc: BaseException, path: Path) -> str:
    """``FILE:LINE: Type: message`` for an exception raised while running the code of ``path``.

    The line is the deepest frame inside ``path`` (or where a ``SyntaxError`` points).
    """
    import traceback

    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}: SyntaxError: {exc.msg}"
    where = str(path)
    target = path.resolve()
    for frame in traceback.extract_tb(exc.__traceback__):
        try:
            if Path(frame.filename).resolve() == target:
                where = f"{path}:{frame.lineno}"
        except OSError:
            continue
    return f"{where}: {type(exc).__name__}: {exc}"


def load_graph(path: str | Path, *, skills: SkillRegistry | None = None) -> Graph:
    """Load a graph from a ``.yaml``/``.yml`` spec or a ``.py`` file.

    A Python file must define ``graph`` (a :class:`Graph`) or ``build_graph()`` returning one.
    A Python graph file is code: loading it runs it, with every right of this process (only
    YAML graphs are data, see :mod:`orchestra.trust`).  An exception it raises becomes a
    :class:`GraphSpecError` naming the file and line.
    """
    p = Path(path)
    if p.suffix in (".yaml", ".yml"):
        return load_graph_yaml(p, skills=skills)
    if p.suffix == ".py":
        if not p.exists():
            raise GraphSpecError("no such file", source=str(p))
        mod_name = f"orchestra_user_graph_{abs(hash(p.resolve()))}"
        spec = importlib.util.spec_from_file_location(mod_name, p)
        if spec is None or spec.loader is None:
            raise GraphSpecError("cannot import", source=str(p))
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
            obj = getattr(module, "graph", None)
            if obj is None and hasattr(module, "build_graph"):
                obj = module.build_graph()
        except Exception as exc:
            sys.modules.pop(mod_name, None)
            if isinstance(exc, SpecError):
                raise
            raise GraphSpecError(code_error(exc, p)) from exc
        if not isinstance(obj, Graph):
            raise GraphSpecError("must define `graph` (a Graph) or `build_graph()`", source=str(p))
        return obj
    raise GraphSpecError(
        f"unsupported graph file type {p.suffix!r} (use .yaml, .yml or .py)", source=str(p)
    )


def load_any_graph(
    path: str | Path, *, scenario: str | None = None, fail: list[str] | None = None
) -> tuple[Graph, list[str]]:
    """Load a graph for the command line; returns it and the skills to mark down first.

    ``path`` is a ``.py``/``.yaml`` graph or a scenario ``.json`` (then ``scenario`` picks
    one; its tools are recording stand-ins).  ``fail`` specs (``NAME[:kind]``) make those
    skills misbehave.
    """
    from orchestra.testing import faults_from, misbehave

    p = Path(path)
    down: list[str] = []
    if p.suffix == ".json":
        from orchestra.bench.standins import CallRecorder, make_standin
        from orchestra.scenario import load_scenario_file

        sf = load_scenario_file(p)
        sc = (
            next((s for s in sf.scenarios if s.id == scenario), None)
            if scenario
            else sf.scenarios[0]
        )
        if sc is None:
            raise GraphSpecError(
                f"no scenario {scenario!r} (have: {', '.join(s.id for s in sf.scenarios)})",
                source=str(p),
            )
        sg = sf.graphs[sc.graph]
        rec = CallRecorder("orchestra")
        tools = {t: make_standin(t, [f for f in sc.faults if f.tool == t], rec) for t in sg.tools}
        graph = graph_from_scenario(sg, tools, name=f"{sc.graph}/{sc.id}")
        down = list(sc.down)
    else:
        graph = load_graph(p)
    for name, kind in faults_from(fail or []).items():
        sk = graph.skills.require(name, field="--fail")
        graph.skills.add(misbehave(sk, kind), replace=True)
    return graph, down
