"""The decisions of a run, apart from its I/O: what is ready, which skill serves it, and
what to do when a step has no route left.

Every function here reads the compiled graph, the run's :class:`~orchestra.results.RunState`
and a health view, and returns a decision; none awaits, sends, saves or logs.  The loop in
:mod:`orchestra.runtime` calls them, then does the I/O the decision asks for (dispatching
steps, checkpoints, the demotion model, a human's answer).  Two functions update in-memory
route state rather than return a value, and say so: :func:`weigh` (the monitors' weights
into the route graph) and :func:`add_substitute` (a catalog skill joins a step).

One decision round::

    ready = ready_steps(view, goal, running)        # the frontier
    weigh(view, weights)                            # signals -> dynamic weights
    plan = plan_routes(view, goal, ready)           # Dijkstra per ready step
    if not plan.feasible:
        for option in recoveries(view, plan, health, retriever=..., halted=...):
            ...                                     # the loop tries each, cheapest first

The recovery ladder (:func:`recoveries`), cheapest first:

1. **substitute**: a catalog skill whose inputs the step can fill, healthy;
2. **probe**: a half-open trial of a circuit that opened during this run and has attempts
   left (the loop asks the health board; a board may refuse, then the next one is tried);
3. **backtrack**: a route that abandons completed steps (:func:`backtrack`, a hook);
4. **fallback**: demotion to a reachable declared lesser goal (the loop asks the demotion
   model), and escalation to a human when none is left.

A monitor's ``halt`` skips straight to the fallback.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from orchestra.errors import RunInputError
from orchestra.graph import START, CompiledGraph, GoalSpec
from orchestra.monitors.base import NodeWeight, Signal
from orchestra.monitors.health import HealthStatus
from orchestra.results import HUMAN, EscalationInfo, RunState
from orchestra.routing import INF, Route

__all__ = [
    "HealthView",
    "Plan",
    "Recovery",
    "RunView",
    "add_substitute",
    "arguments",
    "backtrack",
    "chosen",
    "escalation_info",
    "goal_consistent",
    "goal_satisfied",
    "merged_arguments",
    "plan_routes",
    "preferred",
    "probes",
    "reachable_fallbacks",
    "ready_steps",
    "recoveries",
    "stand_in",
    "substitute",
    "weigh",
    "why_blocked",
]


class HealthView(Protocol):
    """What the planner asks of health: the circuit state of one skill.

    A :class:`~orchestra.monitors.HealthBoard` is one; tests pass a mapping's lookup.
    """

    def status(self, skill: str) -> HealthStatus: ...


@dataclass
class RunView:
    """The planner's inputs for one run: the compiled graph, the run state, and what this
    driver has learnt during the run (the monitors' latest weights, the candidates a budget
    refused)."""

    graph: CompiledGraph
    state: RunState
    max_attempts: int = 3
    weights: Mapping[tuple[str, str], NodeWeight] = field(default_factory=dict)
    refused: Mapping[tuple[str, str], str] = field(default_factory=dict)

    def attempts(self, step: str, skill: str) -> int:
        return self.state.attempts.get(f"{step}:{skill}", 0)

    def goal(self) -> GoalSpec:
        return self.graph.goals[self.state.goal]


@dataclass
class Plan:
    """The outcome of routing the ready steps toward one goal."""

    choices: dict[str, tuple[str, Route]] = field(default_factory=dict)
    stuck: dict[str, str] = field(default_factory=dict)  # step -> why no route

    @property
    def feasible(self) -> bool:
        return not self.stuck


@dataclass(frozen=True)
class Recovery:
    """One rung of the recovery ladder (see the module docstring).

    ``substitute``: ``skill`` is the catalog :class:`~orchestra.skills.Skill` for ``step``.
    ``probe``: ``skill`` (a name) at ``step`` gets a half-open trial if the board allows.
    ``backtrack``: ``detail`` is the hook's route (its shape is the hook's).
    ``fallback``: demote to one of ``goals`` (name, required steps in order), else escalate.
    """

    kind: Literal["substitute", "probe", "backtrack", "fallback"]
    reason: str
    step: str | None = None
    skill: Any = None
    goals: tuple[tuple[str, list[str]], ...] = ()
    detail: Any = None


# ---------------------------------------------------------------------- where the run stands


def chosen(c: CompiledGraph, state: RunState) -> dict[str, str]:
    """The skill each completed step used, for routing (a human's step stands in as one)."""
    return {
        s: rec.skill if rec.skill != HUMAN else stand_in(c, s) for s, rec in state.completed.items()
    }


def stand_in(c: CompiledGraph, step: str) -> str:
    """The candidate of ``step`` with the most allowed transitions onward."""
    succ = [b for s2 in c.succs[step] for b in c.candidates[s2]]
    return max(
        c.candidates[step],
        key=lambda k: sum(c.transition(k, b) is not None for b in succ),
    )


def ready_steps(view: RunView, goal: GoalSpec, running: Collection[str] = ()) -> list[str]:
    """Steps ``goal`` requires that are not done nor running and whose dependencies are done."""
    c, done = view.graph, view.state.completed
    return [
        s
        for s in c.order
        if s in goal.required
        and s not in done
        and s not in running
        and all(p in done for p in c.preds[s])
    ]


def goal_satisfied(state: RunState, g: GoalSpec) -> bool:
    """Whether a completed step served one of ``g``'s target nodes."""
    return any(
        (rec := state.completed.get(s)) is not None and rec.skill in (k, HUMAN)
        for s, k in g.targets
    )


def goal_consistent(state: RunState, g: GoalSpec) -> bool:
    """A goal pinned to a skill of a step already completed with another skill is lost."""
    for s, k in g.targets:
        rec = state.completed.get(s)
        if rec is None or rec.skill in (k, HUMAN):
            return True
    return False


# ---------------------------------------------------------------------- inputs


def arguments(c: CompiledGraph, state: RunState, step: str, skill: str) -> dict[str, Any]:
    """Arguments for ``skill`` at ``step``: explicit mappings, then nearest outputs, then input.

    Raises :class:`RunInputError` naming the parameter when a required one cannot be filled.
    """
    sk = c.skill(skill)
    st = c.steps[step]
    sources: list[Mapping[str, Any]] = [
        state.completed[a].output for a in c.ancestors[step] if a in state.completed
    ]
    sources.append(state.input)
    args: dict[str, Any] = {}
    if sk.input_model.model_config.get("extra") == "allow":
        for src in reversed(sources):
            args.update(src)
    for name in sk.input_model.model_fields:
        if name in st.inputs:
            src_name, _, fld = st.inputs[name].partition(".")
            src = state.input if src_name == "$input" else state.completed[src_name].output
            if fld not in src:
                raise RunInputError(
                    f"step {step!r} maps {name!r} to {st.inputs[name]!r}, which is missing"
                    + (" from the run input" if src_name == "$input" else "")
                )
            args[name] = src[fld]
            continue
        for src in sources:
            if name in src:
                args[name] = src[name]
                break
        else:
            if sk.input_model.model_fields[name].is_required():
                raise RunInputError(
                    f"step {step!r} (skill {skill!r}) needs {name!r}: no earlier step returned it "
                    f"and the run input lacks it; pass it in the input or map it with Step.inputs"
                )
    return args


def merged_arguments(c: CompiledGraph, state: RunState, step: str) -> dict[str, Any]:
    """The arguments every candidate of ``step`` could be called with, merged (for monitors)."""
    merged: dict[str, Any] = {}
    for k in c.candidates[step]:
        try:
            merged.update(arguments(c, state, step, k))
        except RunInputError:
            continue
    return merged


# ---------------------------------------------------------------------- route


def weigh(view: RunView, weights: Mapping[tuple[str, str], NodeWeight]) -> None:
    """Set the route graph's dynamic weights from the monitors' combined ``weights``.

    A node is blocked (factor ∞) when a signal blocks it or its skill has used up its
    attempts at that step.  Updates ``view.graph.route`` in place.
    """
    rg = view.graph.route
    for (step, skill), w in weights.items():
        blocked = w.blocked_by is not None or view.attempts(step, skill) >= view.max_attempts
        rg.set_dynamic((step, skill), extra=w.extra, factor=INF if blocked else w.factor)


def why_blocked(view: RunView, step: str, skill: str) -> str:
    """Why ``skill`` cannot serve ``step`` now, in words for the decision log."""
    refused = view.refused.get((step, skill))
    if refused is not None:
        return refused
    if view.attempts(step, skill) >= view.max_attempts:
        return f"{skill} gave up after {view.attempts(step, skill)} attempt(s) in this run"
    w = view.weights.get((step, skill))
    if w is not None and w.blocked_by is not None:
        return w.blocked_by.reason
    return f"{skill} has no path onward to the goal"


def plan_routes(
    view: RunView, goal: GoalSpec, ready: Sequence[str], picked: Mapping[str, str] | None = None
) -> Plan:
    """Route each ready step toward ``goal``; name the steps that have no route.

    ``picked`` is :func:`chosen` when the caller already has it.
    """
    c = view.graph
    plan = Plan()
    picked = chosen(c, view.state) if picked is None else picked
    for s in ready:
        sources: dict[Hashable, float] = {}
        for k in c.candidates[s]:
            e = c.entry_cost(s, k, picked)
            if e is not None:
                sources[(s, k)] = e
        route = c.route.route(sources, goal.sink)
        if route is None:
            plan.stuck[s] = "; ".join(why_blocked(view, s, k) for k in c.candidates[s])
        else:
            first = route.first
            assert isinstance(first, tuple)
            plan.choices[s] = (str(first[1]), route)
    # a later step with every candidate blocked makes the goal infeasible too
    done = view.state.completed
    for s in c.order:
        if (
            s in goal.required
            and s not in done
            and s not in plan.choices
            and all(c.route.blocked((s, k)) for k in c.candidates[s])
        ):
            plan.stuck[s] = "; ".join(why_blocked(view, s, k) for k in c.candidates[s])
    # a ready step that is stuck only because of what lies after it: name the cause instead
    blocked_steps = {s for s in plan.stuck if all(c.route.blocked((s, k)) for k in c.candidates[s])}
    if blocked_steps:
        for s in list(plan.stuck):
            if s not in blocked_steps:
                del plan.stuck[s]
    return plan


def preferred(
    view: RunView, step: str, goal: GoalSpec, picked: Mapping[str, str] | None = None
) -> str:
    """The skill the static weights alone would choose (to tell a reroute from a plan)."""
    c = view.graph
    pot = c.route.potential(goal.sink)
    idx = c.route._index
    picked = chosen(c, view.state) if picked is None else picked
    best, best_k = INF, c.candidates[step][0]
    for k in c.candidates[step]:
        e = c.entry_cost(step, k, picked)
        if e is None:
            continue
        v = e + pot[idx[(step, k)]]
        if v < best:
            best, best_k = v, k
    return best_k


# ---------------------------------------------------------------------- when stuck


def recoveries(
    view: RunView,
    plan: Plan,
    health: HealthView,
    *,
    retriever: Any = None,
    halted: bool = False,
    running: Collection[str] = (),
) -> Iterator[Recovery]:
    """The recovery ladder for a stuck ``plan``, cheapest first (see the module docstring).

    Lazy: the catalog is only searched when the caller asks for the first option, and each
    probe is yielded after the caller acted on the previous one.  The last option is always
    the ``fallback``.
    """
    if not halted:
        sub = substitute(view, plan, health, retriever)
        if sub is not None:
            step, skill = sub
            yield Recovery(
                "substitute",
                f"every candidate of {step} failed; substitute {skill.name} from the catalog",
                step=step,
                skill=skill,
            )
        for step, k in probes(view, plan, health):
            yield Recovery(
                "probe",
                f"no healthy route left for {step}; half-open trial of {k} "
                f"(attempt {view.attempts(step, k) + 1}/{view.max_attempts})",
                step=step,
                skill=k,
            )
        back = backtrack(view, plan, health)
        if back is not None:
            yield back
    yield Recovery("fallback", "no route left", goals=tuple(reachable_fallbacks(view, running)))


def substitute(
    view: RunView, plan: Plan, health: HealthView, retriever: Any
) -> tuple[str, Any] | None:
    """A healthy catalog skill for the first stuck step that has one: ``(step, skill)``."""
    if retriever is None:
        return None
    c, state = view.graph, view.state
    for step in plan.stuck:
        st = c.steps[step]
        available = set(state.input)
        for a in c.ancestors[step]:
            if a in state.completed:
                available |= set(state.completed[a].output)
        query = st.description or step
        for sub in retriever.substitutes(query, available, set(c.candidates[step]), 3):
            if health.status(sub.name) in ("down", "open"):
                continue
            return step, sub
    return None


def probes(view: RunView, plan: Plan, health: HealthView) -> Iterator[tuple[str, str]]:
    """Open circuits of stuck steps worth a half-open trial: tried in this run, attempts left."""
    c = view.graph
    for step in plan.stuck:
        for k in c.candidates[step]:
            n = view.attempts(step, k)
            if n == 0 or n >= view.max_attempts:
                continue
            if health.status(k) == "open":
                yield step, k


def backtrack(view: RunView, plan: Plan, health: HealthView) -> Recovery | None:
    """A route that abandons completed steps, or ``None``.

    The hook for backtracking with compensation: today no route abandons work, so the run
    goes on to the fallback.
    """
    return None


def reachable_fallbacks(
    view: RunView, running: Collection[str] = ()
) -> list[tuple[str, list[str]]]:
    """Declared fallback goals, other than the current one and those tried, that the run can
    still reach, in declared order, each with its required steps in graph order."""
    c, state = view.graph, view.state
    out: list[tuple[str, list[str]]] = []
    for name in c.fallback_order:
        if name == state.goal or name in state.tried_goals:
            continue
        g = c.goals[name]
        if all(s in state.completed for s in g.required) and goal_satisfied(state, g):
            out.append((name, sorted(g.required, key=c.order.index)))
            continue
        if plan_routes(view, g, ready_steps(view, g, running)).feasible and goal_consistent(
            state, g
        ):
            out.append((name, sorted(g.required, key=c.order.index)))
    return out


def escalation_info(
    view: RunView, reason: str, stuck: Mapping[str, str], risk_monitor: str | None
) -> EscalationInfo:
    """What a human needs to answer an escalation: the stuck steps, the risk-blocked ones."""
    c = view.graph
    return EscalationInfo(
        reason=reason,
        steps=dict(stuck),
        risk_blocked=[
            s
            for s in stuck
            if any(
                (w := view.weights.get((s, k))) is not None
                and w.blocked_by is not None
                and w.blocked_by.monitor == risk_monitor
                for k in c.candidates[s]
            )
        ],
        goals=list(c.goals),
    )


def stuck_reason(plan: Plan, halts: Sequence[Signal]) -> str:
    """Why the run has no feasible route, for the demotion prompt and the decision log."""
    why = halts[0].reason if halts else "; ".join(f"{s}: {w}" for s, w in plan.stuck.items())
    return f"no feasible route ({why})"


def add_substitute(c: CompiledGraph, step: str, sub: Any, picked: Mapping[str, str]) -> None:
    """Make catalog skill ``sub`` a candidate of ``step``: registry, candidates, route edges,
    and the goals pinned to every earlier candidate of the step.  Updates ``c`` in place."""
    c.graph.skills.add(sub, replace=True)
    c.candidates[step] = (*c.candidates[step], sub.name)
    rg = c.route
    rg.add_node((step, sub.name))
    for p in c.preds[step]:
        for a in c.candidates[p]:
            t = c.transition(a, sub.name)
            if t is not None and (p not in picked or picked[p] == a):
                rg.add_edge((p, a), (step, sub.name), t + sub.cost)
    if not c.preds[step]:
        rg.add_edge(START, (step, sub.name), sub.cost)
    for s2 in c.succs[step]:
        for b in c.candidates[s2]:
            t = c.transition(sub.name, b)
            if t is not None:
                rg.add_edge((step, sub.name), (s2, b), t + c.skill(b).cost)
    for name, g in list(c.goals.items()):
        pinned = {k for ts, k in g.targets if ts == step}
        if pinned and pinned >= set(c.candidates[step][:-1]):
            rg.add_edge((step, sub.name), g.sink, 0.0)
            c.goals[name] = GoalSpec(name, g.required, (*g.targets, (step, sub.name)))
