"""Declaring workflows: :class:`Graph` of :class:`Step`, validated and compiled for routing.

A step names what must be done and the interchangeable skills that can do it; dependencies
make a DAG (a linear pipeline, a fan-out/fan-in, anything acyclic).  Every step of the
graph must complete for the main goal; ``fallback_goals`` name lesser goals (a step, or a
``step:skill`` node) the run may be demoted to when the main goal is out of reach.

::

    g = Graph("refund", skills=[crm, stripe, razorpay, email, sms])
    g.step("lookup", [crm])
    g.step("charge", [stripe, razorpay], after="lookup")
    g.step("notify", [email, sms], after="charge")
    g.fallback("charge")          # charged but not notified is better than nothing

:meth:`Graph.compile` validates (cycles, unknown skills, missing inputs, costs, reachability)
and builds the :class:`~orchestra.routing.RouteGraph` the router searches.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import networkx as nx
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from orchestra.errors import GraphSpecError, UnknownSkillError
from orchestra.routing import RouteGraph
from orchestra.skills import Skill, SkillRegistry

__all__ = ["START", "CompiledGraph", "GoalSpec", "Graph", "Step", "goal_sink"]

START: Hashable = ("START",)
MAIN_GOAL = "goal"


def goal_sink(name: str) -> Hashable:
    """The route-graph key of the sink of goal ``name`` (``"goal"`` for the main goal)."""
    return ("GOAL", name)


class _RetrieveLike(Protocol):
    query: str
    k: int


class Step(BaseModel):
    """One thing the workflow must do, and the skills that can do it.

    ``inputs`` maps a skill parameter to ``"<step>.<field>"`` (an earlier step's output) or
    ``"$input.<field>"`` (the run's input); unmapped parameters are looked up by name in the
    outputs of earlier steps (nearest first), then in the run's input.

    ``depends_on`` is spelled ``after`` in a YAML spec, as in :meth:`Graph.step` (both
    spellings load; one step id or a list).
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    id: str = Field(min_length=1)
    candidates: list[str] | Any = Field(default_factory=list)
    description: str = ""
    depends_on: list[str] = Field(
        default_factory=list, validation_alias=AliasChoices("after", "depends_on")
    )
    inputs: dict[str, str] = Field(default_factory=dict)

    @field_validator("depends_on", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if ":" in v or "." in v:
            raise ValueError("a step id may not contain ':' or '.'")
        return v


@dataclass(frozen=True)
class GoalSpec:
    """A goal: the steps it requires and the route-graph nodes that reach it."""

    name: str
    required: frozenset[str]
    targets: tuple[tuple[str, str], ...]

    @property
    def sink(self) -> Hashable:
        return goal_sink(self.name)


class Graph:
    """A declared workflow: steps, the skills they may use, goals and transition costs."""

    def __init__(
        self,
        name: str,
        *,
        steps: Iterable[Step] = (),
        skills: Iterable[Skill] | SkillRegistry = (),
        input_model: type[BaseModel] | None = None,
        goal: str | None = None,
        fallback_goals: Iterable[str] = (),
        transitions: Mapping[tuple[str, str], float] | None = None,
        strict_transitions: bool = False,
        retriever: Any = None,
        description: str = "",
        max_amount: float | None = None,
    ):
        self.name = name
        #: The largest amount (argument ``amount``, ...) a step may move without a human's
        #: approval; over it the step is blocked and the run escalates (``answer approve``).
        #: A runner's own ``max_amount`` applies too: the lower limit wins.
        self.max_amount = max_amount
        self.description = description
        self.steps: list[Step] = list(steps)
        self.skills = skills if isinstance(skills, SkillRegistry) else SkillRegistry(skills)
        self.input_model = input_model
        self.goal = goal
        self.fallback_goals: list[str] = list(fallback_goals)
        self.transitions: dict[tuple[str, str], float] = dict(transitions or {})
        self.strict_transitions = strict_transitions
        self.retriever = retriever

    # ------------------------------------------------------------------ building

    def step(
        self,
        id: str,
        candidates: Sequence[Skill | str] | _RetrieveLike,
        *,
        after: str | Sequence[str] = (),
        inputs: Mapping[str, str] | None = None,
        description: str = "",
    ) -> Step:
        """Add a step served by ``candidates`` (skills, skill names, or ``retrieve(...)``)."""
        if isinstance(candidates, Sequence) and not isinstance(candidates, str):
            names: list[str] | Any = []
            for c in candidates:
                if isinstance(c, Skill):
                    self.skills.add(c)
                    names.append(c.name)
                else:
                    names.append(c)
        else:
            names = candidates
        s = Step(
            id=id,
            candidates=names,
            depends_on=[after] if isinstance(after, str) else list(after),
            inputs=dict(inputs or {}),
            description=description,
        )
        self.steps.append(s)
        return s

    def fallback(self, goal: str) -> None:
        """Declare a lesser goal (``"step"`` or ``"step:skill"``), in order of preference."""
        self.fallback_goals.append(goal)

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, steps={[s.id for s in self.steps]})"

    # ------------------------------------------------------------------ compiling

    def compile(self) -> CompiledGraph:
        """Validate and build the routing structures; raises :class:`GraphSpecError`."""
        return _compile(self)

    def validate(self) -> None:
        """Raise :class:`GraphSpecError` if the graph cannot run; return nothing otherwise."""
        self.compile()


# ---------------------------------------------------------------------- compiled form


@dataclass
class CompiledGraph:
    """A validated graph with its route graph, ready to run."""

    graph: Graph
    steps: dict[str, Step]
    candidates: dict[str, tuple[str, ...]]
    order: list[str]
    preds: dict[str, list[str]]
    succs: dict[str, list[str]]
    ancestors: dict[str, list[str]]
    route: RouteGraph
    goals: dict[str, GoalSpec]
    fallback_order: list[str] = field(default_factory=list)
    #: bumped by :meth:`candidates_changed`
    version: int = field(default=0, init=False, compare=False)
    _skills: list[Skill] | None = field(default=None, init=False, repr=False, compare=False)
    _position: dict[str, int] | None = field(default=None, init=False, repr=False, compare=False)
    _node_index: (
        tuple[int, dict[str, list[tuple[str, str]]], dict[str, list[tuple[str, str]]]] | None
    ) = field(default=None, init=False, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.graph.name

    def skill(self, name: str) -> Skill:
        return self.graph.skills.require(name)

    def skills_in_use(self) -> list[Skill]:
        """Every skill some step may use, once each, in step order (cached; see
        :meth:`candidates_changed`)."""
        if self._skills is None:
            seen: dict[str, Skill] = {}
            for s in self.order:
                for k in self.candidates[s]:
                    seen.setdefault(k, self.graph.skills.require(k))
            self._skills = list(seen.values())
        return list(self._skills)

    def candidates_changed(self) -> None:
        """Call after changing :attr:`candidates` (a catalog substitute joined a step)."""
        self._skills = None
        self.version += 1

    @property
    def position(self) -> dict[str, int]:
        """Each step's index in :attr:`order`."""
        if self._position is None or len(self._position) != len(self.order):
            self._position = {s: i for i, s in enumerate(self.order)}
        return self._position

    def nodes(self) -> list[tuple[str, str]]:
        return [(s, k) for s in self.order for k in self.candidates[s]]

    def node_index(
        self,
    ) -> tuple[dict[str, list[tuple[str, str]]], dict[str, list[tuple[str, str]]]]:
        """The route nodes by step and by skill (cached until :meth:`candidates_changed`)."""
        if self._node_index is None or self._node_index[0] != self.version:
            by_step: dict[str, list[tuple[str, str]]] = {}
            by_skill: dict[str, list[tuple[str, str]]] = {}
            for n in self.nodes():
                by_step.setdefault(n[0], []).append(n)
                by_skill.setdefault(n[1], []).append(n)
            self._node_index = (self.version, by_step, by_skill)
        return self._node_index[1], self._node_index[2]

    def transition(self, a: str, b: str) -> float | None:
        """Cost of following skill ``a`` with skill ``b``; ``None`` if not allowed."""
        return _transition(self.graph, a, b)

    def entry_cost(self, step: str, skill: str, chosen: Mapping[str, str]) -> float | None:
        """Static cost of entering ``(step, skill)`` given the skills chosen for its parents."""
        total = self.skill(skill).cost
        for p in self.preds[step]:
            t = self.transition(chosen[p], skill)
            if t is None:
                return None
            total += t
        return total


def _transition(graph: Graph, a: str, b: str) -> float | None:
    t = graph.transitions.get((a, b))
    if t is None:
        return None if graph.strict_transitions else 0.0
    return t


def _err(msg: str, field: str, graph: Graph) -> GraphSpecError:
    return GraphSpecError(msg, field=field, source=f"graph {graph.name!r}")


def _resolve_candidates(graph: Graph, i: int, step: Step) -> tuple[str, ...]:
    cands = step.candidates
    if not isinstance(cands, list):
        cands_k, query = int(getattr(cands, "k", 0)), str(getattr(cands, "query", ""))
        if not (hasattr(cands, "query") and hasattr(cands, "k")):
            raise _err(
                "must be a list of skill names or retrieve(...)", f"steps[{i}].candidates", graph
            )
        if graph.retriever is None:
            raise _err(
                "uses retrieve(...) but the graph has no retriever; pass Graph(..., retriever=Retriever(skills))",
                f"steps[{i}].candidates",
                graph,
            )
        # a skill that undoes another (its ``compensate``) is no candidate for a step
        undoers = {
            u
            for sk in [*getattr(graph.retriever, "skills", ()), *graph.skills.values()]
            if (u := getattr(sk, "compensate", None))
        }
        hits = graph.retriever.search(cands.query, cands.k + len(undoers))
        cands = []
        for h in hits:
            sk = h.skill if hasattr(h, "skill") else h
            if sk.name in undoers:
                continue
            if len(cands) >= cands_k:
                break
            if sk.name not in graph.skills:  # a skill already registered (e.g. wrapped) wins
                graph.skills.add(sk)
            cands.append(sk.name)
        if not cands:
            raise _err(f"retrieve({query!r}) found no skill", f"steps[{i}].candidates", graph)
    if not cands:
        raise _err("a step needs at least one candidate skill", f"steps[{i}].candidates", graph)
    for j, name in enumerate(cands):
        if not isinstance(name, str):
            raise _err(
                f"expected a skill name, got {type(name).__name__}",
                f"steps[{i}].candidates[{j}]",
                graph,
            )
        if name not in graph.skills:
            raise UnknownSkillError(
                name,
                field=f"steps[{i}].candidates[{j}]",
                source=f"graph {graph.name!r}",
                known=list(graph.skills),
            )
    if len(set(cands)) != len(cands):
        raise _err("lists a skill twice", f"steps[{i}].candidates", graph)
    for j, name in enumerate(cands):
        undo = graph.skills.require(name).compensate
        if undo is not None and undo not in graph.skills:
            raise UnknownSkillError(
                undo,
                field=f"steps[{i}].candidates[{j}].compensate",
                source=f"graph {graph.name!r}",
                known=list(graph.skills),
            )
    return tuple(cands)


def _parse_goal(
    graph: Graph,
    spec: str,
    field: str,
    steps: Mapping[str, Step],
    cands: Mapping[str, tuple[str, ...]],
) -> tuple[str, str | None]:
    step, _, sk = spec.partition(":")
    if step not in steps:
        raise _err(f"names no step: {spec!r} (steps: {', '.join(steps)})", field, graph)
    if sk and sk not in cands[step]:
        raise _err(f"skill {sk!r} is not a candidate of step {step!r}", field, graph)
    return step, (sk or None)


def _fields_of(model: type[BaseModel]) -> tuple[set[str], bool]:
    open_ = model.model_config.get("extra") == "allow"
    return set(model.model_fields), open_


def _check_inputs(
    graph: Graph,
    i: int,
    step: Step,
    cands: Mapping[str, tuple[str, ...]],
    ancestors: list[str],
) -> None:
    input_fields, input_open = (
        _fields_of(graph.input_model) if graph.input_model else (set(), False)
    )
    anc = set(ancestors)
    provided: set[str] = set()
    any_open = False
    for a in ancestors:
        common: set[str] | None = None
        for k in cands[a]:
            fields, open_ = _fields_of(graph.skills.require(k).output_model)
            any_open |= open_
            common = fields if common is None else common & fields
        provided |= common or set()
    for param, ref in step.inputs.items():
        where = f"steps[{i}].inputs.{param}"
        src, dot, fld = ref.partition(".")
        if not dot or not fld:
            raise _err(f"must be '<step>.<field>' or '$input.<field>', got {ref!r}", where, graph)
        if src == "$input":
            if graph.input_model is not None and not input_open and fld not in input_fields:
                raise _err(f"the graph input has no field {fld!r}", where, graph)
        elif src not in anc:
            raise _err(f"step {src!r} is not an earlier step this one depends on", where, graph)
        else:
            for k in cands[src]:
                fields, open_ = _fields_of(graph.skills.require(k).output_model)
                if not open_ and fld not in fields:
                    raise _err(
                        f"skill {k!r} of step {src!r} returns no field {fld!r}", where, graph
                    )
    for j, name in enumerate(cands[step.id]):
        sk = graph.skills.require(name)
        for fname, finfo in sk.input_model.model_fields.items():
            if not finfo.is_required() or fname in step.inputs:
                continue
            if fname in provided or any_open:
                continue
            if graph.input_model is None or input_open or fname in input_fields:
                continue  # from the run's input (checked when the run starts if undeclared)
            raise _err(
                f"skill {name!r} needs input {fname!r}, which no earlier step returns and the graph "
                f"input does not declare; map it with inputs={{{fname!r}: '<step>.<field>'}}",
                f"steps[{i}].candidates[{j}]",
                graph,
            )


def _compile(graph: Graph) -> CompiledGraph:
    if not graph.steps:
        raise _err("a graph needs at least one step", "steps", graph)
    steps: dict[str, Step] = {}
    for i, s in enumerate(graph.steps):
        if s.id in steps:
            raise _err(f"duplicate step id {s.id!r}", f"steps[{i}].id", graph)
        steps[s.id] = s
    cands: dict[str, tuple[str, ...]] = {}
    dag = nx.DiGraph()
    dag.add_nodes_from(steps)
    for i, s in enumerate(graph.steps):
        cands[s.id] = _resolve_candidates(graph, i, s)
        for j, d in enumerate(s.depends_on):
            if d not in steps:
                raise _err(f"depends on unknown step {d!r}", f"steps[{i}].after[{j}]", graph)
            if d == s.id:
                raise _err("a step cannot depend on itself", f"steps[{i}].after[{j}]", graph)
            dag.add_edge(d, s.id)
    try:
        cycle = nx.find_cycle(dag)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        path = " -> ".join([u for u, _ in cycle] + [cycle[0][0]])
        raise _err(f"dependencies form a cycle: {path}; a graph must be acyclic", "steps", graph)
    if graph.max_amount is not None and not (
        isinstance(graph.max_amount, int | float)
        and math.isfinite(graph.max_amount)
        and graph.max_amount > 0
    ):
        raise _err(f"must be a finite number > 0, got {graph.max_amount!r}", "max_amount", graph)
    for (a, b), cost in graph.transitions.items():
        if not (isinstance(cost, int | float) and math.isfinite(cost) and cost >= 0):
            raise _err(
                f"must be a finite number >= 0, got {cost!r}", f"transitions[{a}->{b}]", graph
            )
    declared = {s: i for i, s in enumerate(steps)}
    order = list(nx.lexicographical_topological_sort(dag, key=declared.__getitem__))
    pos = {s: i for i, s in enumerate(order)}
    preds = {s: [p for p in steps[s].depends_on] for s in order}
    succs = {s: sorted(dag.successors(s), key=pos.__getitem__) for s in order}
    ancestors = {s: sorted(nx.ancestors(dag, s), key=lambda a: -pos[a]) for s in order}
    for i, s in enumerate(graph.steps):
        _check_inputs(graph, i, s, cands, ancestors[s.id])

    # goals
    goals: dict[str, GoalSpec] = {}

    def goal_for(name: str, spec: str | None, field: str) -> GoalSpec:
        if spec is None:
            sinks = [s for s in order if not succs[s]]
            return GoalSpec(name, frozenset(order), tuple((s, k) for s in sinks for k in cands[s]))
        step, sk = _parse_goal(graph, spec, field, steps, cands)
        req = frozenset([step, *ancestors[step]])
        targets = ((step, sk),) if sk else tuple((step, k) for k in cands[step])
        return GoalSpec(name, req, targets)

    goals[MAIN_GOAL] = goal_for(MAIN_GOAL, graph.goal, "goal")
    fallback_order: list[str] = []
    for i, fg in enumerate(graph.fallback_goals):
        if fg in goals or fg == MAIN_GOAL:
            raise _err(f"duplicate goal {fg!r}", f"fallback_goals[{i}]", graph)
        goals[fg] = goal_for(fg, fg, f"fallback_goals[{i}]")
        fallback_order.append(fg)

    # route graph
    route = RouteGraph()
    route.add_node(START)
    for s in order:
        for k in cands[s]:
            route.add_node((s, k))
    for s in order:
        for k in cands[s]:
            cost = graph.skills.require(k).cost
            if not preds[s]:
                route.add_edge(START, (s, k), cost)
            for p in preds[s]:
                for a in cands[p]:
                    t = _transition(graph, a, k)
                    if t is not None:
                        route.add_edge((p, a), (s, k), t + cost)
    for g in goals.values():
        route.add_node(g.sink)
        for node in g.targets:
            route.add_edge(node, g.sink, 0.0)

    compiled = CompiledGraph(
        graph=graph,
        steps=steps,
        candidates=cands,
        order=order,
        preds=preds,
        succs=succs,
        ancestors=ancestors,
        route=route,
        goals=goals,
        fallback_order=fallback_order,
    )
    _check_reachable(compiled)
    return compiled


def _check_reachable(c: CompiledGraph) -> None:
    """Every goal must be reachable with every skill healthy, through every step it needs."""
    g = c.route.to_networkx()
    from_start = nx.descendants(g, START) | {START}
    for name, goal in c.goals.items():
        field = "goal" if name == MAIN_GOAL else f"fallback_goals[{c.fallback_order.index(name)}]"
        if goal.sink not in from_start:
            raise _err(
                f"{'the goal' if name == MAIN_GOAL else repr(name)} is unreachable even with every skill "
                "healthy (check transitions between the candidates of consecutive steps)",
                field,
                c.graph,
            )
        to_sink = nx.ancestors(g, goal.sink)
        for s in goal.required:
            if not any((s, k) in from_start and (s, k) in to_sink for k in c.candidates[s]):
                raise _err(
                    f"step {s!r} has no candidate on a path from the start to "
                    f"{'the goal' if name == MAIN_GOAL else repr(name)}",
                    field,
                    c.graph,
                )
