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

1. **substitute**: a catalog skill that fits the step (:func:`substitute`,
   :func:`orchestra.substitution.misfit`): healthy, affordable, same capability, returning
   what later steps need; none for a step a policy (budget, risk limit) stops;
2. **probe**: a half-open trial of a circuit that opened during this run and has attempts
   left (the loop asks the health board; a board may refuse, then the next one is tried);
3. **backtrack**: the cheapest route that abandons completed steps, each idempotent or
   compensable (:func:`backtrack`; the loop runs the compensations, reverse completion
   order); a side effect that cannot be undone is never abandoned;
4. **fallback**: demotion to a reachable declared lesser goal (the loop asks the demotion
   model; :func:`beyond_goal` says what to compensate or list), and escalation to a human
   when none is left (:func:`explain_escalation` words it).

A monitor's ``halt`` skips straight to the fallback.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from orchestra.errors import MissingStepInput, RunInputError
from orchestra.graph import START, CompiledGraph, GoalSpec
from orchestra.monitors.base import NodeWeight, Signal
from orchestra.monitors.health import HealthStatus
from orchestra.results import HUMAN, EscalationInfo, RunState
from orchestra.routing import INF, Route
from orchestra.substitution import misfit

__all__ = [
    "Backtrack",
    "HealthView",
    "Plan",
    "Recovery",
    "RunView",
    "Undo",
    "add_substitute",
    "arguments",
    "backtrack",
    "beyond_goal",
    "chosen",
    "escalation_info",
    "explain_escalation",
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
    "undo_of",
    "weigh",
    "why_blocked",
    "without",
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
    refused).

    It also keeps, so that a decision costs what changed rather than the size of the run,
    the frontier (steps not done whose dependencies are done), the skill each completed step
    used (:attr:`chosen`), and the steps whose every candidate is blocked.  Whoever records a
    step in ``state.completed`` calls :meth:`completed`; after any other change to the
    completed steps, :meth:`refresh`.
    """

    graph: CompiledGraph
    state: RunState
    max_attempts: int = 3
    weights: dict[tuple[str, str], NodeWeight] = field(default_factory=dict)
    refused: Mapping[tuple[str, str], str] = field(default_factory=dict)
    budget_usd: float | None = None
    #: Monitors whose blocks are policy (a limit, the budget), not a broken tool: a step they
    #: stop is not helped by a catalog substitute.
    policy_monitors: frozenset[str] = frozenset({"budget", "risk"})
    frontier: set[str] = field(init=False, default_factory=set)
    chosen: dict[str, str] = field(init=False, default_factory=dict)
    blocked_steps: set[str] = field(init=False, default_factory=set)
    #: set by :meth:`refresh`: the next round must weigh every node again
    reweigh: bool = field(init=False, default=True)
    #: field name -> completed steps whose output has it (a superset: a step taken back may
    #: stay listed), so that a parameter no step returned is not looked for in every output
    returned: dict[str, set[str]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Rebuild the frontier and :attr:`chosen` from ``state.completed``."""
        c, done = self.graph, self.state.completed
        self._waiting = {s: sum(p not in done for p in c.preds[s]) for s in c.order}
        self.frontier = {s for s in c.order if s not in done and self._waiting[s] == 0}
        self.chosen = chosen(c, self.state)
        self._counted = set(done)
        self._undone: dict[str, int] = {}
        self.reweigh = True
        self.returned = {}
        for step, rec in done.items():
            for name in rec.output:
                self.returned.setdefault(name, set()).add(step)

    def completed(self, step: str) -> None:
        """``step`` was just recorded in ``state.completed``."""
        for name in self.state.completed[step].output:  # its record may be new even if counted
            self.returned.setdefault(name, set()).add(step)
        if step in self._counted:
            return
        self._counted.add(step)
        c = self.graph
        rec = self.state.completed[step]
        self.chosen[step] = rec.skill if rec.skill != HUMAN else stand_in(c, step)
        self.frontier.discard(step)
        for s2 in c.succs[step]:
            self._waiting[s2] -= 1
            if self._waiting[s2] == 0 and s2 not in self.state.completed:
                self.frontier.add(s2)
        for name, n in self._undone.items():
            if step in c.goals[name].required:
                self._undone[name] = n - 1

    def undone(self, goal: GoalSpec) -> int:
        """How many steps ``goal`` requires are not completed."""
        n = self._undone.get(goal.name)
        if n is None:
            done = self.state.completed
            n = self._undone[goal.name] = sum(s not in done for s in goal.required)
        return n

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
    """Steps ``goal`` requires that are not done nor running and whose dependencies are done,
    in graph order."""
    pos = view.graph.position
    return sorted(
        (s for s in view.frontier if s in goal.required and s not in running),
        key=pos.__getitem__,
    )


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


def arguments(
    c: CompiledGraph,
    state: RunState,
    step: str,
    skill: str,
    returned: Mapping[str, set[str]] | None = None,
) -> dict[str, Any]:
    """Arguments for ``skill`` at ``step``: explicit mappings, then nearest outputs, then input.

    ``returned`` (:attr:`RunView.returned`) lets a parameter that no completed step returned
    go straight to the run input instead of through every earlier output.

    Raises :class:`RunInputError` naming the parameter when a required one cannot be filled
    from the run's input, and :class:`MissingStepInput` when an earlier step's skill (after a
    reroute) did not return a field the graph expected from that step: a step failure.
    """
    sk = c.skill(skill)
    st = c.steps[step]

    def sources() -> Iterator[Mapping[str, Any]]:  # nearest first, the run input last
        for a in c.ancestors[step]:
            rec = state.completed.get(a)
            if rec is not None:
                yield rec.output
        yield state.input

    args: dict[str, Any] = {}
    if sk.input_model.model_config.get("extra") == "allow":
        for src in reversed(list(sources())):
            args.update(src)
    for name in sk.input_model.model_fields:
        if name in st.inputs:
            src_name, _, fld = st.inputs[name].partition(".")
            src = state.input if src_name == "$input" else state.completed[src_name].output
            if fld not in src:
                if src_name != "$input":
                    raise MissingStepInput(
                        f"step {step!r} maps {name!r} to {st.inputs[name]!r}, but "
                        f"{state.completed[src_name].skill} (which served {src_name!r}) "
                        f"returned no {fld!r}",
                        step=step,
                        skill=skill,
                    )
                raise RunInputError(
                    f"step {step!r} maps {name!r} to {st.inputs[name]!r}, which is missing "
                    "from the run input"
                )
            args[name] = src[fld]
            continue
        nearest = sources() if returned is None or name in returned else iter((state.input,))
        for src in nearest:
            if name in src:
                args[name] = src[name]
                break
        else:
            if sk.input_model.model_fields[name].is_required():
                served = _expected_from(c, state, step, name)
                if served is not None:
                    raise MissingStepInput(
                        f"step {step!r} (skill {skill!r}) needs {name!r}, which {served} "
                        f"did not return",
                        step=step,
                        skill=skill,
                    )
                raise RunInputError(
                    f"step {step!r} (skill {skill!r}) needs {name!r}: no earlier step returned it "
                    f"and the run input lacks it; pass it in the input or map it with Step.inputs"
                )
    return args


def _expected_from(c: CompiledGraph, state: RunState, step: str, name: str) -> str | None:
    """The earlier step (and the skill that served it) a candidate of which returns ``name``:
    a field the graph expected from a step, not from the run input."""
    for a in c.ancestors[step]:
        rec = state.completed.get(a)
        if rec is None:
            continue
        for k in c.candidates[a]:
            if name in c.skill(k).output_model.model_fields:
                return f"{rec.skill} (serving {a!r})"
    return None


def merged_arguments(
    c: CompiledGraph,
    state: RunState,
    step: str,
    returned: Mapping[str, set[str]] | None = None,
) -> dict[str, Any]:
    """The arguments every candidate of ``step`` could be called with, merged (for monitors)."""
    merged: dict[str, Any] = {}
    for k in c.candidates[step]:
        try:
            merged.update(arguments(c, state, step, k, returned))
        except (RunInputError, MissingStepInput):
            continue
    return merged


# ---------------------------------------------------------------------- route


def weigh(view: RunView, weights: Mapping[tuple[str, str], NodeWeight]) -> None:
    """Set the route graph's dynamic weights of the nodes in ``weights`` (the monitors'
    combined weights: every node, or those that changed).

    A node is blocked (factor ∞) when a signal blocks it or its skill has used up its
    attempts at that step.  Nodes of completed steps are left as they are: no route from
    where the run stands passes through them.  Updates ``view.graph.route`` and
    ``view.blocked_steps`` in place.
    """
    c = view.graph
    rg = c.route
    done = view.state.completed
    steps: set[str] = set()
    for (step, skill), w in weights.items():
        if step in done:
            continue
        blocked = w.blocked_by is not None or view.attempts(step, skill) >= view.max_attempts
        rg.set_dynamic((step, skill), extra=w.extra, factor=INF if blocked else w.factor)
        steps.add(step)
    for step in steps:
        if all(rg.blocked((step, k)) for k in c.candidates[step]):
            view.blocked_steps.add(step)
        else:
            view.blocked_steps.discard(step)


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


def _reasons(reasons: Iterable[str]) -> str:
    """Reasons joined with ``; ``, each once (one risk limit blocks every candidate alike)."""
    return "; ".join(dict.fromkeys(reasons))


def plan_routes(
    view: RunView, goal: GoalSpec, ready: Sequence[str], picked: Mapping[str, str] | None = None
) -> Plan:
    """Route each ready step toward ``goal``; name the steps that have no route.

    ``picked`` is :func:`chosen` when the caller already has it.
    """
    c = view.graph
    plan = Plan()
    picked = view.chosen if picked is None else picked
    for s in ready:
        sources: dict[Hashable, float] = {}
        for k in c.candidates[s]:
            e = c.entry_cost(s, k, picked)
            if e is not None:
                sources[(s, k)] = e
        route = c.route.route(sources, goal.sink)
        if route is None:
            plan.stuck[s] = _reasons(why_blocked(view, s, k) for k in c.candidates[s])
        else:
            first = route.first
            assert isinstance(first, tuple)
            plan.choices[s] = (str(first[1]), route)
    # a later step with every candidate blocked makes the goal infeasible too
    done = view.state.completed
    for s in sorted(view.blocked_steps, key=c.position.__getitem__):
        if (
            s in goal.required
            and s not in done
            and s not in plan.choices
            and all(c.route.blocked((s, k)) for k in c.candidates[s])
        ):
            plan.stuck[s] = _reasons(why_blocked(view, s, k) for k in c.candidates[s])
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
    picked = view.chosen if picked is None else picked
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
    yield Recovery(
        "fallback", "no route left", goals=tuple(reachable_fallbacks(view, running, health))
    )


def substitute(
    view: RunView, plan: Plan, health: HealthView, retriever: Any
) -> tuple[str, Any] | None:
    """A catalog skill that fits the first stuck step that has one: ``(step, skill)``.

    Only for a step whose candidates failed or are down: one the budget or a risk limit
    stops (:attr:`RunView.policy_monitors`) is not helped by another tool.  A match must be
    healthy, affordable, and fit the step (capability, and the fields later steps take from
    it: :func:`orchestra.substitution.misfit`), checked before it is chosen.
    """
    if retriever is None:
        return None
    c, state = view.graph, view.state
    outputs = {s: rec.output for s, rec in state.completed.items()}
    left = None if view.budget_usd is None else view.budget_usd - state.spent_usd
    for step in plan.stuck:
        if any(
            (w := view.weights.get((step, k))) is not None
            and w.blocked_by is not None
            and w.blocked_by.monitor in view.policy_monitors
            for k in c.candidates[step]
        ):
            continue
        st = c.steps[step]
        available = set(state.input)
        for a in c.ancestors[step]:
            if a in state.completed:
                available |= set(state.completed[a].output)
        query = st.description or step
        for sub in retriever.substitutes(query, available, set(c.candidates[step]), 10):
            if health.status(sub.name) in ("down", "open"):
                continue
            if left is not None and sub.cost > left + 1e-12:
                continue
            if misfit(c, step, sub, run_input=state.input, outputs=outputs) is not None:
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


@dataclass(frozen=True)
class Undo:
    """A completed step a backtrack or a demotion abandons: ``skill`` served it;
    ``compensation`` is the skill that undoes it (``None``: nothing can undo it)."""

    step: str
    skill: str
    compensation: str | None


@dataclass(frozen=True)
class Backtrack:
    """A route that abandons completed steps (``abandon``, in reverse completion order),
    with its cost: the route's from the new frontier plus the compensations'."""

    abandon: tuple[Undo, ...]
    route_cost: float
    cost: float

    @property
    def signature(self) -> list[str]:
        return sorted(f"{u.step}:{u.skill}" for u in self.abandon)


def undo_of(view: RunView, step: str, health: HealthView) -> tuple[Undo | None, str]:
    """How completed ``step`` can be abandoned: an :class:`Undo` (with the compensating
    skill when it declares one), or ``None`` and why it cannot be (a human's work; a skill
    that is neither idempotent nor compensable, or whose compensation is down)."""
    c, rec = view.graph, view.state.completed[step]
    if rec.skill == HUMAN:
        return None, f"{step} was done by a human"
    sk = c.skill(rec.skill)
    if sk.milestone:
        return Undo(step, rec.skill, None), ""
    if sk.compensate is not None:
        if health.status(sk.compensate) in ("down", "open"):
            return None, f"{rec.skill} at {step} cannot be undone now ({sk.compensate} is down)"
        return Undo(step, rec.skill, sk.compensate), ""
    if sk.idempotent:
        return Undo(step, rec.skill, None), ""
    return None, f"{rec.skill} at {step} is not idempotent and declares no compensation"


def without(view: RunView, steps: Collection[str]) -> RunView:
    """``view`` as if the completed ``steps`` had not been done (for what-if planning)."""
    state = view.state.model_copy(
        update={"completed": {s: r for s, r in view.state.completed.items() if s not in steps}}
    )
    return replace(view, state=state)


def backtrack(
    view: RunView, plan: Plan, health: HealthView, goal: GoalSpec | None = None
) -> Recovery | None:
    """The cheapest route that abandons completed steps, when none is left from where the
    run stands; ``None`` when there is none.

    Each completed step is tried as the pivot: it and its completed descendants are
    abandoned (in reverse completion order) if every one of them is idempotent or
    compensable (:func:`undo_of`); the route is planned from the frontier that leaves.  Its
    cost is the route's plus the compensations'.  A backtrack already taken in this run is
    not taken again, and one whose route re-runs the abandoned steps with the same skills is
    no backtrack at all.
    """
    c, state = view.graph, view.state
    goal = goal or view.goal()
    done = list(state.completed)  # completion order
    taken = {tuple(b) for b in state.backtracks}
    best: Backtrack | None = None
    for pivot in done:
        closure = {pivot} | {d for d in done if pivot in c.ancestors[d]}
        undos: list[Undo] = []
        for s in reversed(done):
            if s in closure:
                u, _why = undo_of(view, s, health)
                if u is None:
                    break
                undos.append(u)
        else:
            trial = without(view, closure)
            ready = ready_steps(trial, goal)
            tplan = plan_routes(trial, goal, ready)
            if not tplan.feasible or not tplan.choices:
                continue
            if all(
                state.completed[s].skill == k
                for s, (k, _r) in tplan.choices.items()
                if s in closure
            ):
                continue
            route_cost = sum(r.cost for _k, r in tplan.choices.values())
            undo_cost = sum(
                c.skill(u.compensation).cost for u in undos if u.compensation is not None
            )
            bt = Backtrack(tuple(undos), route_cost, route_cost + undo_cost)
            if tuple(bt.signature) in taken:
                continue
            if best is None or (bt.cost, len(bt.abandon)) < (best.cost, len(best.abandon)):
                best = bt
    if best is None:
        return None
    undone = [
        f"{u.step} ({u.skill}, undone by {u.compensation})"
        if u.compensation
        else f"{u.step} ({u.skill})"
        for u in best.abandon
    ]
    why = "; ".join(f"{s}: {w}" for s, w in plan.stuck.items())
    return Recovery(
        "backtrack",
        f"no route from where the run stands ({why}); abandon {', '.join(undone)} for a route "
        f"of cost {best.cost:.4g} (compensations included)",
        detail=best,
    )


def beyond_goal(view: RunView, g: GoalSpec, health: HealthView) -> list[tuple[Undo, bool]]:
    """Completed work a demotion to ``g`` leaves behind, in reverse completion order: steps
    ``g`` does not require, and a step ``g`` pins to another skill than the one that served
    it (with their completed descendants).  Each with whether it can be compensated; what
    cannot is listed in the result's ``extra_steps``, never left out."""
    c, state = view.graph, view.state
    done = list(state.completed)
    drop = {s for s in done if s not in g.required}
    pinned: dict[str, set[str]] = {}
    for s, k in g.targets:
        pinned.setdefault(s, {HUMAN}).add(k)
    if not goal_satisfied(state, g):
        for s, ks in pinned.items():
            rec = state.completed.get(s)
            if rec is not None and rec.skill not in ks:
                drop.add(s)
    drop |= {d for d in done for s in list(drop) if s in c.ancestors[d]}
    out: list[tuple[Undo, bool]] = []
    for s in reversed(done):
        if s not in drop:
            continue
        u, _why = undo_of(view, s, health)
        if u is not None and u.compensation is not None:
            out.append((u, True))
        else:
            out.append((Undo(s, state.completed[s].skill, None), False))
    return out


def reachable_fallbacks(
    view: RunView, running: Collection[str] = (), health: HealthView | None = None
) -> list[tuple[str, list[str]]]:
    """Declared fallback goals, other than the current one and those tried, that the run can
    still reach, in declared order, each with its required steps in graph order.

    A goal counts as reachable once the work beyond it (:func:`beyond_goal`) is set aside
    (demoting compensates that work or lists it, so it does not stand in the way), and when
    only a backtrack reaches it (the run takes that backtrack after demoting)."""
    c, state = view.graph, view.state
    out: list[tuple[str, list[str]]] = []
    for name in c.fallback_order:
        if name == state.goal or name in state.tried_goals:
            continue
        g = c.goals[name]
        drop = [u.step for u, _ in beyond_goal(view, g, health or _AllUp())]
        trial = without(view, drop) if drop else view
        if all(s in trial.state.completed for s in g.required) and goal_satisfied(trial.state, g):
            out.append((name, sorted(g.required, key=c.order.index)))
            continue
        gplan = plan_routes(trial, g, ready_steps(trial, g, running))
        if gplan.feasible and goal_consistent(trial.state, g):
            out.append((name, sorted(g.required, key=c.order.index)))
        elif not running and backtrack(trial, gplan, health or _AllUp(), g) is not None:
            out.append((name, sorted(g.required, key=c.order.index)))  # by backtracking
    return out


class _AllUp:
    def status(self, skill: str) -> HealthStatus:
        return "closed"


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


_GAVE_UP = re.compile(r"^(\S+) gave up after (\d+) attempt\(s\) in this run$")
_COSTS = re.compile(
    r"^(\S+) costs (\$[\d.]+), only (\$[\d.]+) of the run's (\$[\d.]+) budget left$"
)


def _names(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _plain(why: str) -> str:
    """Say a stuck step's ``; ``-joined per-candidate reasons in fewer words."""
    parts = [p.strip() for p in why.split(";") if p.strip()]
    gave = [m for p in parts if (m := _GAVE_UP.match(p))]
    if gave and len(gave) == len(parts) and len({m.group(2) for m in gave}) == 1:
        n = gave[0].group(2)
        each = " each" if len(gave) > 1 else ""
        return f"{_names([m.group(1) for m in gave])} failed {n} time(s){each}"
    costs = [m for p in parts if (m := _COSTS.match(p))]
    if costs and len(costs) == len(parts):
        left, budget = costs[0].group(3), costs[0].group(4)
        priced = [f"{m.group(1)} ({m.group(2)})" for m in costs]
        verb = "costs" if len(priced) == 1 else "cost"
        return f"{_names(priced)} {verb} more than the {left} left of the run's {budget} budget"
    return "; ".join(dict.fromkeys(parts))


def explain_escalation(
    view: RunView,
    stuck: Mapping[str, str],
    *,
    why: str,
    fallback: str,
    risk_blocked: Sequence[str] = (),
) -> str:
    """The reason of an escalation, for a person: what cannot be done and why, why no lesser
    goal helps, and how to resume (``orchestra resume RUN --answer ...``)."""
    c, state = view.graph, view.state
    lines: list[str] = []
    for step, reason in stuck.items():
        desc = c.steps[step].description if step in c.steps else ""
        lines.append(
            f"step {step!r}{f' ({desc})' if desc else ''} cannot be done: {_plain(reason)}"
        )
    if not lines:
        lines.append(why)
    tried = [g for g in c.fallback_order if g not in (state.goal,)]
    if tried and stuck:
        need = [g for g in tried if any(s in c.goals[g].required for s in stuck)]
        if need:
            lines.append(
                f"no lesser goal helps: {_names([repr(g) for g in need])} "
                f"{'needs' if len(need) == 1 else 'need'} {_names(list(stuck))} too"
            )
        else:
            lines.append(fallback)
    else:
        lines.append(fallback)
    rid = state.run_id
    hints: list[str] = []
    if risk_blocked:
        hints.append(f"--answer approve (let {_names(list(risk_blocked))} past the limit)")
    others = [s for s in stuck if s not in risk_blocked]
    if others and any(_COSTS.match(p.strip()) for s in others for p in stuck[s].split(";")):
        hints.append("--budget USD --answer retry (with a larger budget)")
    elif others:
        hints.append(f"--answer retry (try {_names(others)} again)")
    if stuck:
        hints.append(f"--answer 'output:{next(iter(stuck))}={{...}}' (done by hand)")
    hints.append("--answer goal:NAME (settle for a declared goal)")
    lines.append(f"to resume: orchestra resume {rid} " + " | ".join(hints))
    return ". ".join(line[:1].upper() + line[1:] for line in lines) + "."


def add_substitute(c: CompiledGraph, step: str, sub: Any, picked: Mapping[str, str]) -> None:
    """Make catalog skill ``sub`` a candidate of ``step``: registry, candidates, route edges,
    and the goals pinned to every earlier candidate of the step.  Updates ``c`` in place."""
    c.graph.skills.add(sub, replace=True)
    c.candidates[step] = (*c.candidates[step], sub.name)
    c.candidates_changed()
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
