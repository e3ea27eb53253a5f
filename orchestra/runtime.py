"""The run loop: monitor → route → execute → observe, until done, demoted or escalated.

One iteration:

1. **Monitor.** Every monitor runs concurrently and emits signals; they fold into the
   dynamic weights of the route graph (:func:`orchestra.monitors.combine`).
2. **Route.** For each ready step (dependencies done), Dijkstra from that step's candidates
   to the current goal's sink picks the skill (:meth:`RouteGraph.route`).  Ready steps on
   independent branches are dispatched together and run concurrently.
3. **Execute** through the executor (in process, or a Celery fleet).
4. **Observe.** Success records the output; an exception, a timeout, malformed output or a
   risk veto is a failure: the skill's circuit opens, its weight becomes ∞, and the next
   iteration routes around it from where the run stands.  Completed steps are never re-run.

When no route is left: first a catalog substitute that fits the step (when the runner or
the graph has a retriever), then a half-open trial of a circuit that opened during this run,
then backtracking (completed steps abandoned, their compensations run in reverse completion
order), then goal demotion (one LLM call; work beyond the lesser goal compensated or listed
in ``extra_steps``), then escalation.  Every one of these is a line in the decision log.

Every decision (the frontier, the route, the recovery ladder) is a pure function in
:mod:`orchestra.planner`; this module is the loop around them and owns the I/O: futures,
executor calls, checkpoints, the demotion model, and a human's answers.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode
from pydantic import BaseModel

from orchestra import aio, planner, tracing
from orchestra.demotion import choose_fallback
from orchestra.errors import ErrorPayload, MissingStepInput, RunInputError, error_kind
from orchestra.executors.base import Executor, StepOutcome, StepTask
from orchestra.executors.local import LocalExecutor
from orchestra.graph import MAIN_GOAL, CompiledGraph, GoalSpec, Graph
from orchestra.lease import LeaseKeeper, default_holder
from orchestra.logs import get_logger
from orchestra.models.base import ChatModel
from orchestra.models.budget import metering, use_ledger
from orchestra.monitors import (
    HealthBoard,
    Monitor,
    MonitorContext,
    ReadyStep,
    RiskMonitor,
    Signal,
    combine,
    default_monitors,
)
from orchestra.monitors.base import gather_signals, is_incremental
from orchestra.results import (
    HUMAN,
    Compensation,
    Decision,
    DecisionKind,
    EscalationInfo,
    RunResult,
    RunState,
    StepRecord,
    UnknownEffect,
)
from orchestra.routing import Route
from orchestra.run_ledger import LedgerFactory, RunLedger, in_memory_ledger

__all__ = ["Runner", "run", "run_sync"]

log = get_logger("orchestra.runtime")

DecisionHook = Callable[[Decision], None]


class Runner:
    """Runs graphs. Holds what outlives one run: executor, health board, monitors, models.

    ``max_attempts`` bounds how often one skill is tried for one step in one run (the first
    call, then half-open trials).  ``ledger_factory`` makes each run's ledger (in process by
    default; the fleet's keeps it in Redis for its workers): see :mod:`orchestra.run_ledger`.
    ``incremental=False`` runs every monitor on every skill and re-weighs every node before
    each decision (the same decisions, at a cost that grows with the run: for comparison and
    debugging).
    """

    def __init__(
        self,
        *,
        executor: Executor | None = None,
        health: HealthBoard | None = None,
        monitors: Sequence[Monitor] | None = None,
        demotion_model: ChatModel | None = None,
        retriever: Any = None,
        max_attempts: int = 3,
        max_amount: float | None = None,
        checkpointer: Any = None,
        on_decision: DecisionHook | None = None,
        lease_ttl_s: float = 15.0,
        lease_holder: str | None = None,
        incremental: bool = True,
        ledger_factory: LedgerFactory | None = None,
    ):
        self.executor: Executor = executor or LocalExecutor()
        self.ledger_factory: LedgerFactory = ledger_factory or in_memory_ledger
        self.health = health or HealthBoard()
        self.monitors: list[Monitor] = (
            list(monitors) if monitors is not None else default_monitors(max_amount=max_amount)
        )
        self.demotion_model = demotion_model
        self.retriever = retriever
        self.max_attempts = max_attempts
        self.checkpointer = checkpointer
        self.on_decision = on_decision
        self.lease_ttl_s = lease_ttl_s
        self.lease_holder = lease_holder
        self.incremental = incremental
        self._risk = next((m for m in self.monitors if isinstance(m, RiskMonitor)), None)

    # ------------------------------------------------------------------ public

    async def run(
        self,
        graph: Graph | CompiledGraph,
        input: Mapping[str, Any] | BaseModel | None = None,
        *,
        run_id: str | None = None,
        budget_usd: float | None = None,
        origin: Mapping[str, Any] | None = None,
    ) -> RunResult:
        """Run ``graph`` on ``input`` until it completes, is demoted or escalates.

        ``origin`` (JSON) is saved with the run's checkpoints: how it was started, so that a
        command line can resume it by id.
        """
        rid = run_id or uuid.uuid4().hex[:12]
        # the run's span opens first: compiling, checking the input and the first checkpoint
        # are part of the run
        with tracing.run_span(graph.name, rid) as span:
            compiled = graph if isinstance(graph, CompiledGraph) else graph.compile()
            data = _input_dict(compiled, input)
            state = RunState(
                run_id=rid,
                graph=compiled.name,
                input=data,
                budget_usd=budget_usd,
                origin=dict(origin or {}),
                started_at=time.time(),
            )
            _remember_trace(state, span)
            run = _Run(self, compiled, state, budget_usd)
            run.span = span
            run.lease = await self._take_lease(state.run_id)
            return await run.execute()

    def _lease_url(self) -> str:
        return str(getattr(self.checkpointer, "url", None) or "memory://")

    async def _take_lease(self, run_id: str) -> LeaseKeeper:
        """The run's lease (:class:`~orchestra.errors.RunLeaseHeld` if another driver has it)."""
        keeper = await LeaseKeeper.acquire(
            self._lease_url(), run_id, self.lease_holder or default_holder(), self.lease_ttl_s
        )
        fence = getattr(self.executor, "fence", None)
        if fence is not None:  # the executor tags what it sends with the fencing token
            fence(run_id, keeper.lease.token)
        return keeper

    async def resume(
        self,
        graph: Graph | CompiledGraph,
        state: RunState,
        *,
        budget_usd: float | None = None,
        answer: str | None = None,
    ) -> RunResult:
        """Continue a run from a saved :class:`RunState`; completed steps are not re-run.

        A run whose driver stopped first asks the executor what became of the steps that were
        in flight (a fleet worker may have finished one since: it is recorded, not re-run).
        An escalated run may take a human's ``answer``:

        * ``retry``: forget this run's attempts of the stuck steps' skills and close their
          circuits, then route again;
        * ``approve``: let the steps a risk limit stopped (e.g. an amount over the limit) go on;
        * ``goal:NAME``: settle for the declared goal ``NAME``;
        * ``output:{json}`` (or ``output:STEP={json}``): a human did the stuck step; the JSON
          object is recorded as its output, with skill ``human``.

        Traced, the resumed part joins the first part's trace (see
        :func:`orchestra.tracing.run_span`) and the answer is an event ``orchestra.answer``.
        """
        with tracing.run_span(graph.name, state.run_id, resumes=state.trace):
            compiled = graph if isinstance(graph, CompiledGraph) else graph.compile()
            state = state.model_copy(deep=True)
            if state.status in ("completed", "demoted"):
                raise RunInputError(f"run {state.run_id} already {state.status}: nothing to resume")
            # One driver at a time: take the run's lease, then read the run as it is now (a
            # driver that held it until a moment ago may have moved it on, or finished it).
            lease = await self._take_lease(state.run_id)
            try:
                return await self._resume_leased(compiled, state, lease, budget_usd, answer)
            except BaseException:
                await lease.release()
                raise

    async def _resume_leased(
        self,
        compiled: CompiledGraph,
        state: RunState,
        lease: LeaseKeeper,
        budget_usd: float | None,
        answer: str | None,
    ) -> RunResult:
        if self.checkpointer is not None:
            stored: RunState | None = await self.checkpointer.load(state.run_id)
            if stored is not None and (
                stored.status != state.status or len(stored.decisions) > len(state.decisions)
            ):
                state = stored.model_copy(deep=True)
        if state.status in ("completed", "demoted"):
            raise RunInputError(f"run {state.run_id} already {state.status}: nothing to resume")
        if state.graph != compiled.name:
            raise RunInputError(
                f"run {state.run_id} is a run of graph {state.graph!r}, not {compiled.name!r}"
            )
        was = state.status
        state.status = "running"
        span = trace.get_current_span()  # the resumed part's invoke_agent (see resume)
        _remember_trace(state, span)
        run = _Run(
            self, compiled, state, budget_usd if budget_usd is not None else state.budget_usd
        )
        run.lease = lease
        run.span = span
        if answer is not None:
            if was != "escalated" or state.escalation is None:
                raise RunInputError(
                    f"run {state.run_id} did not escalate ({was}): it is not waiting for an answer"
                )
            tracing.answer_event(answer)
            run.apply_answer(answer)
        else:
            if was == "running":
                await run.recover()
                await run.recover_journal()
            run.decide("resume", f"resumed a {was} run from its checkpoint")
        return await run.execute()

    async def resume_run(
        self,
        graph: Graph | CompiledGraph,
        run_id: str,
        *,
        budget_usd: float | None = None,
        answer: str | None = None,
    ) -> RunResult:
        """:meth:`resume` the run ``run_id`` from this runner's checkpointer."""
        state = await self.load_run(run_id)
        return await self.resume(graph, state, budget_usd=budget_usd, answer=answer)

    async def load_run(self, run_id: str) -> RunState:
        """The last checkpoint of ``run_id``; :class:`RunInputError` if there is none."""
        if self.checkpointer is None:
            raise RunInputError("this runner has no checkpointer: runs cannot be resumed by id")
        state: RunState | None = await self.checkpointer.load(run_id)
        if state is None:
            raise RunInputError(f"no checkpoint of run {run_id!r}")
        return state


def _remember_trace(state: RunState, span: Span) -> None:
    """Store the run's first traced span with it, so a resumed part joins that trace and
    ``orchestra trace`` can point at it."""
    if state.trace or not span.get_span_context().is_valid:
        return
    state.trace = tracing.span_carrier(span)
    state.trace_id = f"{span.get_span_context().trace_id:032x}"
    state.trace_service = tracing.span_service(span)


def _input_dict(
    compiled: CompiledGraph, input: Mapping[str, Any] | BaseModel | None
) -> dict[str, Any]:
    # Secrets are sealed here, at the run's entry, and opened only at the call (see
    # orchestra.secrets): the run's state never holds them in plaintext.
    from orchestra import secrets

    model = compiled.graph.input_model
    if isinstance(input, BaseModel):
        return secrets.dump_sealed(input)
    data = dict(input or {})
    if model is not None:
        from pydantic import ValidationError

        try:
            parsed = model.model_validate(data)
        except ValidationError as exc:
            e = exc.errors()[0]
            raise RunInputError(
                f"run input of graph {compiled.name!r}: {'.'.join(map(str, e['loc']))}: {e['msg']}"
            ) from exc
        data = secrets.dump_sealed(parsed)
    # the fields some skill declares secret are sealed too, whatever the input model says
    names = secrets.secret_field_names(s.input_model for s in compiled.graph.skills.values())
    return secrets.seal_named(data, names) if names else data


class _Run:
    """One run in flight: owns the futures, the executor calls, checkpoints and human answers;
    asks :mod:`orchestra.planner` for every decision."""

    def __init__(
        self, runner: Runner, compiled: CompiledGraph, state: RunState, budget_usd: float | None
    ):
        self.r = runner
        self.c = compiled
        self.s = state
        self.budget = budget_usd
        self.span: Span = trace.INVALID_SPAN  # the run's invoke_agent span (set by Runner)
        # decision times count from the run's start, across resumes (an older checkpoint
        # without a start time goes on from its last decision)
        if state.started_at:
            elapsed = max(0.0, time.time() - state.started_at)
        else:
            elapsed = max((d.at_ms for d in state.decisions), default=0.0) / 1e3
            state.started_at = time.time() - elapsed
        self.t0 = time.perf_counter() - elapsed
        self.inflight: dict[asyncio.Future[StepOutcome], tuple[str, str]] = {}  # (step, skill)
        # calls that finished, in the order they did, for collect() (waiting on every call
        # in flight at each collect would cost as much as the calls with 1,000 in flight)
        self.finished: list[asyncio.Future[StepOutcome]] = []
        self.wake = asyncio.Event()
        self.failed_last: dict[
            str, tuple[str, str]
        ] = {}  # step -> (skill, error) of the last failure
        self.notes_seen: set[str] = set()
        self.refused: dict[tuple[str, str], str] = {}  # (step, skill) -> why it may not run
        self.stuck: dict[str, str] = {}  # step -> why it has no route (when the run is stuck)
        self.view = planner.RunView(
            compiled,
            state,
            max_attempts=runner.max_attempts,
            refused=self.refused,
            budget_usd=budget_usd,
            policy_monitors=frozenset(
                {"budget", runner._risk.name if runner._risk is not None else "risk"}
            ),
        )
        # incremental monitoring (see orchestra.monitors.base): the health board's position
        # after the last round, the incremental monitors' signals per (monitor, skill), the
        # nodes the other monitors' signals touched last round, the steps dispatched since
        self.health_mark: int | None = None
        self.memo: list[dict[str, list[Signal]]] = []  # per monitor: skill -> its signals
        self.watch: set[str] = set()  # skills an incremental monitor blocks (time may lift it)
        self.local_nodes: set[tuple[str, str]] = set()
        self.graph_version = -1  # the compiled graph's version the last round saw
        self._incremental = [is_incremental(m) for m in runner.monitors]
        self.dispatched: set[str] = set()
        self.lease: LeaseKeeper | None = None  # released when the run stops driving
        self.log = log.bind(run_id=state.run_id, graph=compiled.name)
        self.spend: RunLedger | None = None  # the run's one ledger (made when it starts)
        # while collect() records outcomes that came in together, their checkpoint waits
        # for the last of them (see collect)
        self.batching = False
        self.unsaved = False

    # ------------------------------------------------------------------ bookkeeping

    def decide(self, kind: DecisionKind, reason: str, **kw: Any) -> Decision:
        d = Decision(
            kind=kind, reason=reason, at_ms=round((time.perf_counter() - self.t0) * 1e3, 3), **kw
        )
        self.s.decisions.append(d)
        self.log.info("decision", kind=kind, step=d.step, skill=d.skill, reason=reason)
        tracing.decision_event(
            kind,
            reason,
            {
                "orchestra.step_id": d.step,
                "orchestra.skill": d.skill,
                "orchestra.route": " -> ".join(d.route) if d.route else None,
            },
        )
        if self.r.on_decision is not None:
            self.r.on_decision(d)
        return d

    def goal(self) -> GoalSpec:
        return self.c.goals[self.s.goal]

    def attempts(self, step: str, skill: str) -> int:
        return self.s.attempts.get(f"{step}:{skill}", 0)

    def running(self) -> set[str]:
        return {s for s, _ in self.inflight.values()}

    def record(self, rec: StepRecord) -> None:
        """Record a completed step (in the state and in the planner's view)."""
        self.s.completed[rec.step] = rec
        self.view.completed(rec.step)

    async def checkpoint(self) -> None:
        if self.batching:
            self.unsaved = True
            return
        if self.lease is not None:
            await self.lease.ensure()  # a driver that lost the run writes nothing
        if self.r.checkpointer is not None:
            await self.r.checkpointer.save(self.s)

    # ------------------------------------------------------------------ monitor

    async def observe_health(self, ready: Sequence[str]) -> list[Signal]:
        """Run the monitors on the ready steps, weigh the route graph; return the halts.

        The first round weighs every node, and so does the first after a substitute joined a
        step (its node has no weight yet).  Later rounds give incremental monitors only the
        skills whose health changed and the skills they block, and
        re-weigh only the nodes whose signals or attempts changed since the last round.
        Signals reach :func:`combine` in the order one whole round would give them.
        """
        c, board = self.c, self.r.health
        # a substitute joined a step since the last round: its node has no weight yet (nor
        # its skill any memoised signal), and it is not ready, so only a whole round weighs it
        grown, self.graph_version = self.graph_version != c.version, c.version
        by_step, by_skill = self._nodes()
        everything = (
            self.health_mark is None or self.view.reweigh or grown or not self.r.incremental
        )
        self.view.reweigh = False
        changed = None if everything else board.changed_since(self.health_mark or 0)
        self.health_mark = board.mark()
        if changed is None:
            checked = set(by_skill)
        else:
            # an incremental monitor's signals about a skill depend on its health record
            # alone: a skill whose record did not change (the ready steps' too) keeps them
            checked = {k for k in changed | self.watch if k in by_skill}
        ctx = MonitorContext(
            graph=c,
            health=board,
            ready=[ReadyStep(s, c.candidates[s], _Arguments(self.view, s)) for s in ready],
            outputs=_Outputs(self.s.completed),
            spent_usd=await self._committed_usd(),
            budget_usd=self.budget,
            skills=None if changed is None else [c.skill(k) for k in checked],
        )
        per_monitor = await gather_signals(self.r.monitors, ctx)
        risk = self.r._risk.name if self.r._risk is not None else None
        approved = set(self.s.approved)
        if everything:
            self.memo = [{} for _ in self.r.monitors]
        fresh: list[Signal] = []  # this round's signals, for notes and halts
        local: list[list[Signal]] = []  # per monitor: signals about steps or the whole run
        moved: set[str] = set()  # skills whose signals differ from the last round's
        reblocked: set[str] = set()  # ... and whether a signal blocks them changed too
        for i, (m, sigs) in enumerate(zip(self.r.monitors, per_monitor, strict=True)):
            if approved and risk is not None:
                sigs = [
                    sig
                    for sig in sigs
                    if not (sig.kind == "block" and sig.monitor == risk and sig.step in approved)
                ]
            fresh.extend(sigs)
            partial = changed is not None and is_incremental(m)
            per_skill: dict[str, list[Signal]] = {}
            mine: list[Signal] = []
            for sig in sigs:
                if (
                    sig.skill is not None
                    and sig.step is None
                    and (not partial or sig.skill in checked)
                ):
                    per_skill.setdefault(sig.skill, []).append(sig)
                else:
                    mine.append(sig)
            local.append(mine)
            mem = self.memo[i]
            gone = checked - per_skill.keys() if partial else mem.keys() - per_skill.keys()
            for k in gone:
                old = mem.pop(k, None)
                if old is not None:
                    moved.add(k)
                    if _blocks(old):
                        reblocked.add(k)
            for k, new in per_skill.items():
                old = mem.get(k)
                if old != new:
                    mem[k] = new
                    moved.add(k)
                    if _blocks(old) != _blocks(new):
                        reblocked.add(k)
        incremental = self._incremental
        if everything:
            self.watch = set()
        for k in {k for mem in self.memo for k in mem} if everything else moved:
            if any(
                sig.kind == "block"
                for i, mem in enumerate(self.memo)
                if incremental[i]
                for sig in mem.get(k, ())
            ):
                self.watch.add(k)
            else:
                self.watch.discard(k)
        local_nodes: set[tuple[str, str]] = set()
        for sig in (sig for sigs in local for sig in sigs):
            if sig.step is not None and sig.skill is not None:
                local_nodes.add((sig.step, sig.skill))
            elif sig.step is not None:
                local_nodes.update(by_step.get(sig.step, ()))
            elif sig.skill is not None:
                local_nodes.update(by_skill.get(sig.skill, ()))
        if everything:
            touched = c.nodes()
            skills: Iterable[str] = by_skill
        else:
            nodes = local_nodes | self.local_nodes
            # a step running or done is routed through by no one: its nodes need new weights
            # only when a block comes or goes (the steps left when every candidate is blocked)
            running, done = self.running(), self.s.completed
            for k in moved:
                if k in reblocked:
                    nodes.update(by_skill.get(k, ()))
                else:
                    nodes.update(
                        n for n in by_skill.get(k, ()) if n[0] not in running and n[0] not in done
                    )
            for st in (*self.dispatched, *ready):
                nodes.update(by_step.get(st, ()))
            touched = list(nodes)
            skills = {k for _, k in touched}
        self.local_nodes = local_nodes
        self.dispatched = set()
        ordered: list[Signal] = []
        for i, mem in enumerate(self.memo):
            ordered.extend(sig for k in skills for sig in mem.get(k, ()))
            ordered.extend(local[i])
        weights = combine(ordered, touched)  # a stable sort by priority inside
        if everything:
            self.view.weights = weights
        else:
            self.view.weights.update(weights)
        planner.weigh(self.view, weights)
        fresh.sort(key=lambda sig: sig.priority)
        for sig in fresh:
            if sig.kind == "note" and sig.reason not in self.notes_seen:
                self.notes_seen.add(sig.reason)
                self.decide("note", sig.reason, skill=sig.skill, step=sig.step)
        return [sig for sig in fresh if sig.kind == "halt"]

    def _nodes(
        self,
    ) -> tuple[dict[str, list[tuple[str, str]]], dict[str, list[tuple[str, str]]]]:
        """The route nodes by step and by skill (the graph's, rebuilt when a substitute joins)."""
        return self.c.node_index()

    # ------------------------------------------------------------------ the run's ledger

    async def _committed_usd(self) -> float:
        """Spent plus held by steps in flight: what the budget no longer has."""
        if self.spend is None:
            return self.s.spent_usd
        snap = await self.spend.snapshot()
        return snap.spent_usd + snap.reserved_usd

    async def reserve(self, choices: Iterable[tuple[str, str]]) -> dict[str, str]:
        """Reserve the declared cost of each ``(step, skill)`` before dispatch, in order (on
        a shared ledger, in one round trip); returns the refusals by step.  A refusal is a
        budget failure of that skill (never retried; the step routes around it)."""
        if self.spend is None:
            return {}
        todo = [(st, k, self.c.skill(k)) for st, k in choices]
        asked = [(st, k, sk.cost) for st, k, sk in todo if not sk.milestone]
        refusals = await self.spend.reserve_steps(asked)
        return {st: why for (st, _, _), why in zip(asked, refusals, strict=True) if why}

    def refuse(self, step: str, skill: str, refusal: str) -> None:
        """Record a reservation refused by the budget."""
        self.refused[(step, skill)] = refusal
        self.s.attempts[f"{step}:{skill}"] = self.r.max_attempts
        self.failed_last[step] = (skill, "budget")
        self.decide("fail", refusal, step=step, skill=skill, error_kind="budget")

    async def book(self, step: str, skill: str, outcome: StepOutcome) -> None:
        """Settle what a call cost on the run's ledger; count its model calls; log overruns."""
        self.s.llm_calls += outcome.llm_calls
        if self.spend is None:
            self.s.spent_usd += outcome.cost_usd
            return
        notes, snap = await self.spend.settle_step(step, skill, self.c.skill(skill).cost, outcome)
        self.s.spent_usd = snap.spent_usd
        for note in notes:
            self.decide("overrun", note, step=step, skill=skill)

    # ------------------------------------------------------------------ execute + observe

    def dispatch(
        self, step: str, skill: str, route: Route, goal: GoalSpec, *, here: bool = False
    ) -> Coroutine[Any, Any, StepOutcome] | None:
        """Start a call of ``skill`` for ``step`` (logged, counted, in flight); with ``here``,
        return the call for the loop to await itself (:meth:`call_here`) instead."""
        last = self.failed_last.get(step)
        names = _route_names(route)
        if last is not None and last[0] != skill:
            self.decide(
                "reroute",
                f"{last[0]} failed ({last[1]}); rerouted to {skill}",
                step=step,
                skill=skill,
                route=names,
                cost=route.cost,
            )
        elif last is None and (pref := self._blocked_preference(step, skill, goal)) is not None:
            self.decide(
                "reroute",
                f"{planner.why_blocked(self.view, step, pref)}; routed to {skill}",
                step=step,
                skill=skill,
                route=names,
                cost=route.cost,
            )
        key = f"{step}:{skill}"
        self.dispatched.add(step)
        sk = self.c.skill(skill)
        arguments: dict[str, Any] = {}
        if not sk.milestone:
            try:
                arguments = planner.arguments(self.c, self.s, step, skill, self.view.returned)
            except MissingStepInput as exc:
                # what an earlier (rerouted) step returned does not feed this one: a step
                # failure, healed by reroute, backtracking, demotion or escalation
                self.refused[(step, skill)] = str(exc)
                self.s.attempts[key] = self.r.max_attempts
                self.failed_last[step] = (skill, "input")
                self.decide("fail", str(exc), step=step, skill=skill, error_kind="input")
                return None
        self.s.attempts[key] = self.s.attempts.get(key, 0) + 1
        call: Coroutine[Any, Any, StepOutcome]
        if sk.milestone:
            call = _milestone()
        else:
            self.decide(
                "execute",
                f"route {' -> '.join(names)} (cost {route.cost:.4g})",
                step=step,
                skill=skill,
                route=names,
                cost=route.cost,
            )
            task = StepTask(
                run_id=self.s.run_id,
                step_id=step,
                skill=skill,
                arguments=arguments,
                attempt=self.s.attempts[key],
                timeout_s=sk.timeout_s,
                ledger="redis" if self.spend is not None and self.spend.shared else None,
            )
            call = self._call(task, sk, route)
        if here:
            return call
        task_ = asyncio.ensure_future(call)
        self.inflight[task_] = (step, skill)
        task_.add_done_callback(self._finished)
        return None

    async def call_here(
        self, step: str, skill: str, call: Coroutine[Any, Any, StepOutcome]
    ) -> None:
        """Await a lone call in this task and record what came of it, as :meth:`collect`
        would: with nothing else in flight, a task of its own would only cost a task and two
        turns of the event loop.  It runs in a copy of this task's context, as a task would
        (what it sets stays inside it); its timeouts and cancel scopes belong to this task,
        which does nothing else meanwhile, as with any ``await``."""
        outcome = await aio.in_context(call, contextvars.copy_context())
        await self._observe_all([(step, skill, lambda: outcome)])

    async def _observe_all(
        self,
        calls: Iterable[tuple[str, str, Callable[[], StepOutcome]]],
        ahead: list[tuple[str, str, StepOutcome]] | None = None,
    ) -> None:
        """Observe each call's outcome (read when its turn comes) with one checkpoint for
        all, written before anything else is dispatched; ``ahead``: the outcomes whose
        reservations are settled together first (one round trip on a shared ledger)."""
        self.batching, self.unsaved = True, False
        try:
            if ahead and self.spend is not None:
                await self.spend.settle_ahead(ahead)
            for step, skill, result in calls:
                await self.observe(step, skill, result())
        finally:
            self.batching = False
            if self.spend is not None:
                self.spend.forget_ahead()
        if self.unsaved:
            await self.checkpoint()

    def _finished(self, task: asyncio.Future[StepOutcome]) -> None:
        self.finished.append(task)
        self.wake.set()

    def _blocked_preference(self, step: str, skill: str, goal: GoalSpec) -> str | None:
        """The skill the static weights prefer at ``step`` when it is blocked and ``skill``
        serves instead (a reroute to log); ``None`` otherwise (no other candidate blocked:
        the usual case, told without working out the preference)."""
        rg = self.c.route
        if not any(k != skill and rg.blocked((step, k)) for k in self.c.candidates[step]):
            return None
        pref = planner.preferred(self.view, step, goal)
        return pref if pref != skill and rg.blocked((step, pref)) else None

    async def _call(self, task: StepTask, sk: Any, route: Route) -> StepOutcome:
        attrs: dict[str, Any] | None = None
        if tracing.active():  # a health read per step only for a span that records it
            attrs = {
                "orchestra.cost": sk.cost,
                "orchestra.attempt": task.attempt,
                "orchestra.route_cost": route.cost,
                "orchestra.health": self.r.health.status(sk.name),
            }
            if self.budget is not None:
                attrs["orchestra.budget_remaining"] = self.budget - self.s.spent_usd
        with tracing.step_span(
            task.step_id, run_id=task.run_id, skill=sk.name, attributes=attrs
        ) as span:
            task.trace_context = tracing.inject_context()
            outcome = await self._send(task, sk)
            span.set_attribute("orchestra.duration_ms", outcome.duration_ms)
            if outcome.worker:
                span.set_attribute("orchestra.worker", outcome.worker)
            if not outcome.ok and outcome.error is not None:
                tracing.mark_error(span, outcome.error.message, outcome.error.type)
            return outcome

    async def _journalled(self, task: StepTask, sk: Any) -> StepOutcome:
        """Call a skill that is not idempotent through the effects journal (see
        :mod:`orchestra.journal`): intent before it is sent, its outcome settled from the
        journal when the executor cannot say what became of it."""
        from orchestra import journal

        assert self.lease is not None
        url, token = self.r._lease_url(), self.lease.lease.token
        task.journal_token = token
        await asyncio.to_thread(journal.record_intent, url, task, token)
        if getattr(self.r.executor, "journals", False):
            outcome = await self.r.executor.execute(task, sk)
        else:  # an executor in this process: the driver journals the start and the outcome
            verdict, effect = await asyncio.to_thread(journal.begin, url, task, token, "driver")
            if verdict != "run":
                return _unknown(task, f"the journal refused to start it ({verdict})")
            outcome = await self.r.executor.execute(task, sk)
            await asyncio.to_thread(journal.record_outcome, url, task, token, outcome)
            return outcome
        if outcome.ok:
            return outcome
        # The executor reports a failure: was the tool run, and did it finish?  Withdraw the
        # call if nobody started it; wait (up to its timeout) for a worker still running it.
        deadline = time.monotonic() + task.timeout_s + 5.0
        while True:
            effect = await asyncio.to_thread(journal.withdraw, url, task, token)
            if effect is None or effect.state in ("cancelled", "not_done"):
                return outcome
            if effect.state in ("done", "failed") and effect.outcome is not None:
                return effect.outcome
            if effect.state == "started" and time.monotonic() > deadline:
                assert outcome.error is not None
                return _unknown(task, outcome.error.message)
            await asyncio.sleep(0.25)

    async def collect(self) -> None:
        """Record the outcomes that came in; one checkpoint for all of them, written before
        anything else is dispatched (a fan-out saves one delta per batch, not per step).
        A driver that dies before it is written is resumed as if it had died before the
        batch came in: the fleet's stored outcomes (or the effects journal) say what ran."""
        while not self.finished:
            self.wake.clear()
            await self.wake.wait()
        came = [fut for fut in self.finished if fut in self.inflight]
        self.finished = []
        shared = self.spend is not None and self.spend.shared and len(came) > 1
        await self._observe_all(
            ((*self.inflight.pop(fut), fut.result) for fut in came),
            ahead=self._to_book(came) if shared else None,
        )

    def _to_book(
        self, came: Sequence[asyncio.Future[StepOutcome]]
    ) -> list[tuple[str, str, StepOutcome]]:
        """The outcomes among ``came`` that observe() will book, in order (up to the first
        that raises: observe stops there)."""
        if self.lease is not None and self.lease.lost is not None:
            return []
        out: list[tuple[str, str, StepOutcome]] = []
        for fut in came:
            if fut.cancelled() or fut.exception() is not None:
                break
            step, skill = self.inflight[fut]
            outcome = fut.result()
            superseded = outcome.error is not None and outcome.error.type == "Superseded"
            if not self.c.skill(skill).milestone and not (not outcome.ok and superseded):
                out.append((step, skill, outcome))
        return out

    async def observe(self, step: str, skill: str, outcome: StepOutcome, *, note: str = "") -> None:
        """Record what came of a call, live or recovered after a crash: the same checks
        (output schema, risk vetoes, budget booking) either way."""
        sk = self.c.skill(skill)
        if sk.milestone:
            self.record(StepRecord(step=step, skill=skill, output={}))
            self.failed_last.pop(step, None)
            return
        if not outcome.ok and outcome.error is not None and outcome.error.type == "Superseded":
            # the run was resumed by another driver: not the skill's fault, and not our run
            if self.lease is not None:
                await self.lease.verify()
            self.decide(
                "fail", outcome.error.message, step=step, skill=skill, error_kind="superseded"
            )
            self.failed_last[step] = (skill, "superseded")
            return
        if self.lease is not None and self.lease.lost is not None:
            raise self.lease.lost
        await self.book(step, skill, outcome)
        if not outcome.ok and outcome.error is not None and outcome.error.type == "UnknownOutcome":
            self.s.unknown[step] = UnknownEffect(
                step=step,
                skill=skill,
                attempt=self.attempts(step, skill),
                token=self.lease.lease.token if self.lease is not None else 0,
                reason=outcome.error.message,
            )
            self.decide(
                "fail", outcome.error.message, step=step, skill=skill, error_kind="unknown_outcome"
            )
            await self.checkpoint()
            return
        vetoes: list[Signal] = []
        output = outcome.output or {}
        if outcome.ok and outcome.checked_by is not sk:  # not validated here already
            try:
                output = sk.parse_output(output)
            except (ValueError, TypeError) as exc:
                outcome = StepOutcome(
                    ok=False,
                    error=ErrorPayload(
                        type="MalformedOutput",
                        message=f"{skill} returned output that fails its schema: {exc}",
                        step=step,
                        skill=skill,
                    ),
                    worker=outcome.worker,
                )
        notes: list[Signal] = []
        if outcome.ok and self._risk_inspect is not None:
            verdict = self._risk_inspect(skill, output)
            vetoes = [v for v in verdict if v.kind == "block"]
            notes = [v for v in verdict if v.kind == "note"]
        if outcome.ok and not vetoes:
            self.r.health.record_success(skill, outcome.duration_ms)
            self.record(
                StepRecord(
                    step=step,
                    skill=skill,
                    output=output,
                    duration_ms=outcome.duration_ms,
                    attempt=max(1, self.attempts(step, skill)),
                    worker=outcome.worker,
                )
            )
            self.failed_last.pop(step, None)
            self.decide(
                "succeed",
                note
                or f"{skill} answered in {outcome.duration_ms:.1f} ms"
                + "".join(f"; {r}" for r in outcome.routes),
                step=step,
                skill=skill,
            )
            for n in notes:  # e.g. personal data in the output: logged, nothing else
                self.decide("note", n.reason, step=step, skill=skill)
        else:
            if vetoes:
                err, kind = vetoes[0].reason, "risk"
            else:
                assert outcome.error is not None
                err, kind = outcome.error.message, error_kind(outcome.error.type)
            if kind == "config":
                # the skill is fine; whoever ran it is set up wrong (e.g. a worker without the
                # key to open a sealed secret): not a tool fault for the fleet's health board,
                # and no retry here; the reason says what to fix, and `--answer retry` after
                assert outcome.error is not None
                err = (
                    f"{skill} could not run on {outcome.worker or 'its executor'}: "
                    f"{outcome.error.type}: {err}"
                )
            if kind in ("budget", "config"):
                # the skill is fine; the run cannot afford it (or run it): no retry, say why
                self.refused[(step, skill)] = err
                self.s.attempts[f"{step}:{skill}"] = self.r.max_attempts
                self.failed_last[step] = (skill, kind)
                self.decide("fail", err, step=step, skill=skill, error_kind=kind)
                await self.checkpoint()
                return
            self.r.health.record_failure(skill, f"{kind}: {err}")
            self.failed_last[step] = (skill, kind)
            self.decide("fail", err, step=step, skill=skill, error_kind=kind)
        await self.checkpoint()

    @property
    def _risk_inspect(self) -> Callable[[str, Mapping[str, Any]], list[Signal]] | None:
        return self.r._risk.inspect_output if self.r._risk is not None else None

    # ------------------------------------------------------------------ when stuck

    async def recover_route(self, plan: planner.Plan, halts: Sequence[Signal]) -> bool:
        """Walk the recovery ladder for a stuck plan; True if the run goes on."""
        options = planner.recoveries(
            self.view,
            plan,
            self.r.health,
            retriever=self.r.retriever if self.r.retriever is not None else self.c.graph.retriever,
            halted=bool(halts),
            running=self.running(),
        )
        for option in options:
            if option.kind == "substitute":
                assert option.step is not None
                planner.add_substitute(
                    self.c, option.step, option.skill, planner.chosen(self.c, self.s)
                )
                self.decide("reroute", option.reason, step=option.step, skill=option.skill.name)
                return True
            if option.kind == "probe":
                if self.r.health.force_half_open(option.skill):
                    self.decide("probe", option.reason, step=option.step, skill=option.skill)
                    return True
                continue
            if option.kind == "backtrack":
                # False: a compensation failed and the run escalated
                return await self.backtrack(option.detail, option.reason)
            self.stuck = dict(plan.stuck)
            return await self.demote_or_escalate(planner.stuck_reason(plan, halts), option.goals)
        return False

    async def backtrack(self, bt: planner.Backtrack, reason: str) -> bool:
        """Abandon completed steps for a route that exists: compensate each (reverse
        completion order), then forget it.  False (the run escalated) if one cannot be undone."""
        self.s.backtracks.append(bt.signature)
        self.decide("backtrack", reason, cost=bt.cost)
        for u in bt.abandon:
            if u.compensation is not None and not await self.compensate(u):
                self.s.status = "escalated"
                self.s.reason = (
                    f"backtracking: {u.compensation} could not undo {u.skill} at {u.step}; "
                    f"a human must undo it, then answer retry"
                )
                self.stuck = {u.step: self.s.reason}
                self.s.escalation = planner.escalation_info(
                    self.view,
                    self.s.reason,
                    self.stuck,
                    self.r._risk.name if self.r._risk is not None else None,
                )
                self.view.refresh()
                self.decide("escalate", self.s.reason)
                return False
            del self.s.completed[u.step]
            self.failed_last.pop(u.step, None)
        self.view.refresh()  # steps were taken back: the frontier and weights start over
        await self.checkpoint()
        return True

    async def compensate(self, u: planner.Undo) -> bool:
        """Run ``u.compensation`` to undo what ``u.skill`` did at ``u.step`` (through the
        executor, with the step's arguments and output); up to ``max_attempts`` calls."""
        assert u.compensation is not None
        rec = self.s.completed[u.step]
        try:
            args = planner.arguments(self.c, self.s, u.step, u.skill)
        except (RunInputError, MissingStepInput):
            args = {}
        args.update(rec.output)
        sk = self.c.skill(u.compensation)
        error = ""
        for attempt in range(1, self.r.max_attempts + 1):
            task = StepTask(
                run_id=self.s.run_id,
                step_id=u.step,
                skill=sk.name,
                arguments=args,
                attempt=attempt,
                timeout_s=sk.timeout_s,
            )
            with tracing.compensation_span(
                u.step,
                run_id=self.s.run_id,
                skill=sk.name,
                undoes=u.skill,
                attributes={"orchestra.cost": sk.cost, "orchestra.attempt": attempt},
            ) as span:
                task.trace_context = tracing.inject_context()
                outcome = await self._send(task, sk)
                if not outcome.ok and outcome.error is not None:
                    tracing.mark_error(span, outcome.error.message, outcome.error.type)
            await self.book(u.step, sk.name, outcome)  # an undo is never refused for budget
            if outcome.ok:
                self.s.compensations.append(Compensation(step=u.step, skill=u.skill, by=sk.name))
                self.decide(
                    "compensate",
                    f"{sk.name} undid what {u.skill} did at {u.step}",
                    step=u.step,
                    skill=sk.name,
                    cost=sk.cost,
                )
                return True
            assert outcome.error is not None
            error = outcome.error.message
            self.decide(
                "fail", error, step=u.step, skill=sk.name, error_kind=error_kind(outcome.error.type)
            )
            if outcome.error.type == "UnknownOutcome":
                break  # it may have taken effect: never sent again; a human reconciles it
        self.s.compensations.append(
            Compensation(step=u.step, skill=u.skill, by=sk.name, ok=False, reason=error)
        )
        return False

    async def _send(self, task: StepTask, sk: Any) -> StepOutcome:
        """Send a call (a step's, or a compensation's) to the executor; a skill that is not
        idempotent goes through the effects journal."""
        if sk.idempotent or self.lease is None:
            return await self.r.executor.execute(task, sk)
        return await self._journalled(task, sk)

    async def set_aside(self, goal: GoalSpec) -> None:
        """Work beyond a demoted ``goal``: compensated where it can be, listed where not."""
        for u, undoable in planner.beyond_goal(self.view, goal, self.r.health):
            rec = self.s.completed[u.step]
            if not (undoable and await self.compensate(u)):
                self.s.extra.append(rec)
                self.decide(
                    "note",
                    f"{u.skill} at {u.step} is beyond {goal.name!r} and was not undone; "
                    f"listed in extra_steps",
                    step=u.step,
                    skill=u.skill,
                )
            del self.s.completed[u.step]
        self.view.refresh()
        await self.checkpoint()

    async def demote_or_escalate(
        self, why: str, reachable: Sequence[tuple[str, list[str]]] | None = None
    ) -> bool:
        """Returns True if the run continues toward a lesser goal."""
        if reachable is None:
            reachable = planner.reachable_fallbacks(self.view, self.running(), self.r.health)
        self.s.tried_goals.append(self.s.goal)
        with metering() as meter:
            choice = await choose_fallback(
                self.r.demotion_model,
                graph=self.c.name,
                why=why,
                completed=list(self.s.completed),
                reachable=reachable,
            )
        self.s.llm_calls += max(meter.llm_calls, choice.llm_calls)
        if self.spend is not None:
            self.s.spent_usd = (await self.spend.snapshot()).spent_usd
        if choice.goal is None:
            self.s.status = "escalated"
            risk = self.r._risk.name if self.r._risk is not None else None
            info = planner.escalation_info(self.view, why, self.stuck, risk)
            self.s.reason = planner.explain_escalation(
                self.view,
                self.stuck,
                why=why,
                fallback=choice.reason,
                risk_blocked=info.risk_blocked,
            )
            info.reason = self.s.reason
            self.s.escalation = info
            self.decide("escalate", self.s.reason)
            return False
        dropped = [
            s
            for s in self.c.order
            if s not in self.c.goals[choice.goal].required and s not in self.s.completed
        ]
        self.s.goal = choice.goal
        self.s.reason = why
        self.decide(
            "demote",
            f"{why}; demoted to {choice.goal!r}: {choice.reason}"
            + (f"; steps not run: {', '.join(dropped)}" if dropped else ""),
        )
        await self.set_aside(self.c.goals[choice.goal])
        return True

    def escalate_unknown(self) -> None:
        """Stop: only a human can say whether these calls took effect."""
        calls = list(self.s.unknown.values())
        names = ", ".join(f"step {u.step!r} ({u.skill})" for u in calls)
        self.s.status = "escalated"
        self.s.reason = (
            f"unknown_outcome: whether {names} took effect is unknown; it is not run again. "
            f"Check the side effect, then answer `orchestra resume {self.s.run_id} --answer "
            f"done:{{json}}` (it happened: its output) or `--answer not-done`"
        )
        self.s.escalation = EscalationInfo(
            reason=self.s.reason,
            kind="unknown_outcome",
            steps={u.step: u.reason for u in calls},
            unknown=calls,
            goals=list(self.c.goals),
        )
        self.decide("escalate", self.s.reason)

    # ------------------------------------------------------------------ resuming

    async def recover(self) -> None:
        """Record the steps a fleet finished while no driver was watching (see ``resume``)."""
        recover = getattr(self.r.executor, "recover", None)
        if recover is None:
            return
        todo = {
            s: max(self.c.skill(k).timeout_s for k in self.c.candidates[s])
            for s in self.c.order
            if s not in self.s.completed
            and not all(self.c.skill(k).milestone for k in self.c.candidates[s])
        }
        found = await recover(self.s.run_id, todo)
        await self._observe_recovered(found)

    async def recover_journal(self) -> None:
        """What became of the calls of non-idempotent skills the last driver sent: withdraw
        those nobody started, record those that finished, wait (up to their timeout) for
        those still running; one that stays started has an unknown outcome."""
        from orchestra import journal

        url, run_id = self.r._lease_url(), self.s.run_id
        await asyncio.to_thread(journal.cancel_intents, url, run_id)
        deadline: float | None = None
        while True:
            effects = await asyncio.to_thread(journal.effects_of, url, run_id)
            todo = [
                e
                for e in effects
                if e.step_id not in self.s.completed
                and e.step_id not in self.s.unknown
                and e.step_id in self.c.steps
                and e.skill in self.c.candidates[e.step_id]
            ]
            running = [e for e in todo if e.state == "started"]
            if running and deadline is None:
                deadline = (
                    time.monotonic() + 5.0 + max(self.c.skill(e.skill).timeout_s for e in running)
                )
            if not running or (deadline is not None and time.monotonic() > deadline):
                break
            await asyncio.sleep(0.25)
        found: dict[str, tuple[str, StepOutcome]] = {}
        for e in todo:
            if e.state == "done" and e.outcome is not None:
                found[e.step_id] = (e.skill, e.outcome)
        for e in running:
            if e.step_id in found:
                continue
            self.s.unknown[e.step_id] = UnknownEffect(
                step=e.step_id,
                skill=e.skill,
                attempt=e.attempt,
                token=e.token,
                reason=f"{e.skill} was started for step {e.step_id!r} by "
                f"{e.worker or 'a worker'} under an earlier driver and never finished",
            )
            self.decide(
                "fail",
                self.s.unknown[e.step_id].reason,
                step=e.step_id,
                skill=e.skill,
                error_kind="unknown_outcome",
            )
        await self._observe_recovered(found, journal=True)

    async def _observe_recovered(
        self, found: Mapping[str, tuple[str, StepOutcome]], *, journal: bool = False
    ) -> None:
        for step, (skill, outcome) in found.items():
            if skill not in self.c.candidates.get(step, ()) or step in self.s.completed:
                continue
            await self.observe(
                step,
                skill,
                outcome,
                note=f"{skill} finished on {outcome.worker or 'a worker'} while no driver was "
                f"watching{' (the effects journal says so)' if journal else ''}; recorded "
                f"without running it again",
            )

    def apply_answer(self, answer: str) -> None:
        """Act on a human's answer to this run's escalation (see :meth:`Runner.resume`)."""
        esc = self.s.escalation
        assert esc is not None
        text = answer.strip()
        stuck = [s for s in esc.steps if s not in self.s.completed] or [
            s for s in self.goal().required if s not in self.s.completed
        ]
        if self.s.unknown and not text.startswith(("done", "not-done")):
            raise RunInputError(
                f"run {self.s.run_id} waits for a human to say whether "
                + ", ".join(
                    f"{u.skill} took effect for step {u.step!r}" for u in self.s.unknown.values()
                )
                + ": answer done:{json} or not-done"
            )
        if text.startswith("done") or text.startswith("not-done"):
            self._reconcile(text)
        elif text == "retry":
            skills = sorted({k for s in stuck for k in self.c.candidates[s]})
            for s in stuck:
                for k in self.c.candidates[s]:
                    self.s.attempts.pop(f"{s}:{k}", None)
            for k in skills:
                rec = self.r.health.get(k)
                rec.open, rec.consecutive_failures, rec.cooldown_s = False, 0, 0.0
                self.r.health.put(k, rec)
            self.decide(
                "resume",
                f"a human answered retry: attempts and circuits of {', '.join(skills)} cleared",
            )
        elif text == "approve":
            if not esc.risk_blocked:
                raise RunInputError(
                    f"run {self.s.run_id} was not stopped by a risk limit: nothing to approve "
                    f"(answer retry, goal:NAME or output:{{json}})"
                )
            self.s.approved = sorted({*self.s.approved, *esc.risk_blocked})
            self.decide(
                "resume", f"a human approved {', '.join(esc.risk_blocked)} past the risk limit"
            )
        elif text.startswith("goal:"):
            name = text.removeprefix("goal:").strip()
            if name not in self.c.goals:
                raise RunInputError(
                    f"graph {self.c.name!r} declares no goal {name!r} "
                    f"(declared: {', '.join(self.c.goals)})"
                )
            self.s.goal = name
            self.decide("demote", f"a human settled for goal {name!r}")
        elif text.startswith("output:"):
            step, output = self._human_output(text.removeprefix("output:"), stuck)
            self.record(StepRecord(step=step, skill=HUMAN, output=output))
            self.decide(
                "succeed", "a human did this step; their output is recorded", step=step, skill=HUMAN
            )
        else:
            raise RunInputError(
                f"unknown answer {answer!r}: use retry, approve, goal:NAME, output:{{json}}, "
                f"done:{{json}} or not-done"
            )
        if self.s.goal in self.s.tried_goals:
            self.s.tried_goals.remove(self.s.goal)
        self.s.escalation = None
        self.s.reason = ""

    def _reconcile(self, text: str) -> None:
        """``done:[STEP=]{json}`` or ``not-done[:STEP]``: a human's word on a call whose
        outcome was unknown, written to the effects journal and to the run."""
        import json

        from pydantic import ValidationError

        from orchestra import journal

        done = text.startswith("done")
        rest = text.removeprefix("done" if done else "not-done").lstrip(":").strip()
        step: str | None = None
        raw = rest
        if done and rest and not rest.startswith("{"):
            step, _, raw = rest.partition("=")
        elif not done and rest:
            step, raw = rest, ""
        if step is None:
            if len(self.s.unknown) != 1:
                raise RunInputError(
                    f"run {self.s.run_id} has {len(self.s.unknown)} calls of unknown outcome "
                    f"({', '.join(self.s.unknown) or 'none'}): name the step, "
                    f"done:STEP={{json}} or not-done:STEP"
                )
            step = next(iter(self.s.unknown))
        step = step.strip()
        u = self.s.unknown.get(step)
        if u is None:
            raise RunInputError(
                f"step {step!r} of run {self.s.run_id} has no call of unknown outcome "
                f"(unknown: {', '.join(self.s.unknown) or 'none'})"
            )
        url = self.r._lease_url()
        effect = next(
            (
                e
                for e in journal.effects_of(url, self.s.run_id, step)
                if e.skill == u.skill and e.attempt == u.attempt and e.token == u.token
            ),
            None,
        )
        if done:
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise RunInputError(
                    f"done: the output of step {step!r} is not JSON: {exc.msg}"
                ) from exc
            if not isinstance(value, dict):
                raise RunInputError(f"done: the output of step {step!r} must be a JSON object")
            try:
                output = self.c.skill(u.skill).parse_output(value)
            except (ValidationError, TypeError) as exc:
                raise RunInputError(
                    f"done: the output of step {step!r} does not fit {u.skill}'s schema: {exc}"
                ) from exc
            if effect is not None:
                journal.resolve(url, effect, "done", output)
            self.record(
                StepRecord(step=step, skill=u.skill, output=output, attempt=u.attempt, worker=HUMAN)
            )
            self.decide(
                "succeed",
                f"a human confirmed that {u.skill} took effect; their output is recorded",
                step=step,
                skill=u.skill,
            )
        else:
            if raw:
                raise RunInputError("not-done takes no output (not-done or not-done:STEP)")
            if effect is not None:
                journal.resolve(url, effect, "not_done", {})
            self.failed_last[step] = (u.skill, "unknown_outcome")
            self.decide(
                "resume",
                f"a human says {u.skill} did not take effect for {step}: it may run again",
                step=step,
                skill=u.skill,
            )
        del self.s.unknown[step]

    def _human_output(self, text: str, stuck: Sequence[str]) -> tuple[str, dict[str, Any]]:
        import json

        from pydantic import ValidationError

        text = text.strip()
        if text.startswith("{"):
            if len(stuck) != 1:
                raise RunInputError(
                    f"run {self.s.run_id} is stuck on {len(stuck)} steps ({', '.join(stuck)}): "
                    f"name one, output:STEP={{json}}"
                )
            step, raw = stuck[0], text
        else:
            step, _, raw = text.partition("=")
            step = step.strip()
            if step not in self.c.steps:
                raise RunInputError(f"graph {self.c.name!r} has no step {step!r}")
            if step in self.s.completed:
                raise RunInputError(f"step {step!r} of run {self.s.run_id} is already done")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise RunInputError(f"output for step {step!r} is not JSON: {exc.msg}") from exc
        if not isinstance(value, dict):
            raise RunInputError(f"output for step {step!r} must be a JSON object")
        first: Exception | None = None
        for k in self.c.candidates[step]:
            try:
                return step, self.c.skill(k).parse_output(value)
            except (ValidationError, TypeError) as exc:
                first = first or exc
        raise RunInputError(
            f"output for step {step!r} fits no skill of the step ({', '.join(self.c.candidates[step])}): {first}"
        )

    # ------------------------------------------------------------------ the loop

    async def execute(self) -> RunResult:
        lease = self.lease
        try:
            if lease is None:
                return await self._execute()
            main = asyncio.ensure_future(self._execute())

            def stop(_exc: BaseException) -> None:
                main.cancel()

            lease.start(on_lost=stop)
            try:
                return await main
            except asyncio.CancelledError:
                if lease.lost is not None:
                    self.log.warning("lease lost: this driver stops", reason=str(lease.lost))
                    raise lease.lost from None
                raise
        finally:
            if lease is not None:
                await lease.release()

    async def _execute(self) -> RunResult:
        if not self.s.completed and not self.s.decisions:
            await self.checkpoint()  # a run whose driver dies on its first step can resume
        if self.r.demotion_model is not None or any(
            "agent" in self.c.skill(k).tags for ks in self.c.candidates.values() for k in ks
        ):
            from orchestra.models.backends import preload_litellm

            preload_litellm()  # off the hot path: done before the first model call
        self.spend = RunLedger(
            await self.r.ledger_factory(self.s.run_id, self.budget, self.s.spent_usd),
            self.budget,
            remake=lambda: self.r.ledger_factory(self.s.run_id, self.budget, self.s.spent_usd),
        )
        # inside the run's invoke_agent span, opened by Runner.run / Runner.resume
        span = self.span
        with use_ledger(self.spend.ledger):
            try:
                result = await self._loop()
            finally:
                await self.spend.release_all()
                await self.spend.aclose()
            span.set_attribute("orchestra.status", result.status)
            span.set_attribute("orchestra.goal", result.goal)
            span.set_attribute("orchestra.cost", result.spent_usd)
            span.set_attribute("orchestra.path", " -> ".join(result.path))
            if result.status == "escalated":
                span.set_status(Status(StatusCode.ERROR, result.reason))
            return result

    async def _loop(self) -> RunResult:
        try:
            while True:
                if self.s.unknown:
                    # a side effect may or may not have happened: nothing else runs until a
                    # human says which (no retry, no half-open trial, no other candidate)
                    if self.inflight:
                        await self.collect()
                        continue
                    self.escalate_unknown()
                    break
                goal = self.goal()
                if not self.view.undone(goal) and not self.inflight:
                    if planner.goal_satisfied(self.s, goal):
                        self.s.status = "completed" if self.s.goal == MAIN_GOAL else "demoted"
                        self.decide(
                            "complete",
                            f"reached {'the goal' if self.s.goal == MAIN_GOAL else repr(self.s.goal)}",
                        )
                        break
                    why = f"{self.s.goal!r} cannot be reached from the skills chosen"
                    if await self.demote_or_escalate(why):
                        continue
                    break
                ready = planner.ready_steps(self.view, goal, self.running())
                halts = await self.observe_health(ready)
                plan = planner.plan_routes(self.view, goal, ready)
                if halts or not plan.feasible:
                    if self.inflight:
                        await self.collect()
                        continue
                    if await self.recover_route(plan, halts):
                        continue
                    break
                # reserved together (never over the budget), then dispatched in order
                refusals = await self.reserve((st, k) for st, (k, _) in plan.choices.items())
                lone = len(plan.choices) == 1 and not self.inflight  # e.g. a chain's next step
                for step, (skill, route) in plan.choices.items():
                    if step in refusals:
                        self.refuse(step, skill, refusals[step])
                    elif (call := self.dispatch(step, skill, route, goal, here=lone)) is not None:
                        await self.call_here(step, skill, call)
                if self.inflight:
                    await self.collect()
        finally:
            for fut in self.inflight:
                fut.cancel()
        await self.checkpoint()
        return self.result()

    def result(self) -> RunResult:
        rank = self.c.position
        recs = sorted(self.s.completed.values(), key=lambda r: rank[r.step])
        return RunResult(
            run_id=self.s.run_id,
            graph=self.c.name,
            status=self.s.status,
            goal=self.s.goal,
            reason=self.s.reason,
            outputs={r.step: r.output for r in recs},
            chosen={r.step: r.skill for r in recs},
            path=[r.skill for r in recs if r.skill == HUMAN or not self.c.skill(r.skill).milestone],
            decisions=list(self.s.decisions),
            spent_usd=self.s.spent_usd,
            budget_usd=self.budget,
            llm_calls=self.s.llm_calls,
            wall_ms=(time.perf_counter() - self.t0) * 1e3,
            extra_steps=list(self.s.extra),
            compensations=list(self.s.compensations),
            trace_id=self.s.trace_id,
        )


def _blocks(signals: Sequence[Signal] | None) -> bool:
    return signals is not None and any(sig.kind == "block" for sig in signals)


_ROUTE_SHOWN = 12  # a decision names at most this many hops of its route


def _route_names(route: Route) -> list[str]:
    """The skills of ``route`` for the decision log; a long route keeps its first hops, a
    count of the hidden ones, and the goal (so a decision's size does not grow with the run).
    """

    def named(nodes: Iterable[Any]) -> list[str]:
        return [f"{k[1]}" for k in nodes if isinstance(k, tuple) and len(k) == 2]

    if len(route) <= _ROUTE_SHOWN:
        return named(route.nodes)
    shown = named(route.head(_ROUTE_SHOWN - 2))
    return [*shown, f"... {len(route) - len(shown) - 1} more", *named([route.last])]


class _Arguments(Mapping[str, Any]):
    """The arguments every candidate of a ready step could be called with, for monitors;
    worked out only if a monitor reads them (most rounds, none does)."""

    def __init__(self, view: planner.RunView, step: str):
        self._view, self._step = view, step
        self._args: dict[str, Any] | None = None

    def _get(self) -> dict[str, Any]:
        if self._args is None:
            v = self._view
            self._args = planner.merged_arguments(v.graph, v.state, self._step, v.returned)
        return self._args

    def __getitem__(self, key: str) -> Any:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


class _Outputs(Mapping[str, Mapping[str, Any]]):
    """The outputs of the completed steps, read through (no copy per round)."""

    def __init__(self, completed: Mapping[str, StepRecord]):
        self._completed = completed

    def __getitem__(self, step: str) -> Mapping[str, Any]:
        return self._completed[step].output

    def __iter__(self) -> Iterator[str]:
        return iter(self._completed)

    def __len__(self) -> int:
        return len(self._completed)


def _unknown(task: StepTask, why: str) -> StepOutcome:
    return StepOutcome(
        ok=False,
        error=ErrorPayload(
            type="UnknownOutcome",
            message=f"whether {task.skill} took effect for step {task.step_id!r} is unknown "
            f"({why}); it is not idempotent, so neither it nor another candidate of the step "
            f"runs until a human answers done:{{json}} or not-done",
            step=task.step_id,
            skill=task.skill,
        ),
    )


async def _milestone() -> StepOutcome:
    return StepOutcome(ok=True, output={})


async def run(
    graph: Graph | CompiledGraph,
    input: Mapping[str, Any] | BaseModel | None = None,
    **runner_options: Any,
) -> RunResult:
    """Run ``graph`` once with a fresh :class:`Runner` (``runner_options`` go to it)."""
    budget = runner_options.pop("budget_usd", None)
    return await Runner(**runner_options).run(graph, input, budget_usd=budget)


def run_sync(
    graph: Graph | CompiledGraph,
    input: Mapping[str, Any] | BaseModel | None = None,
    **runner_options: Any,
) -> RunResult:
    """:func:`run` for code that is not async."""
    return asyncio.run(run(graph, input, **runner_options))
