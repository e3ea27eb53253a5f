"""``orchestra bench selfheal``: the Self-Healing Router evaluation, three systems, one run.

For every scenario of a scenario file (:mod:`orchestra.scenario`) the harness builds, per
system, a fresh set of recording stand-in tools (:mod:`orchestra.bench.standins`), runs
the system on them, and judges the run *from the stand-ins' call log*:

* **Oracle.** The broken tools are the ``down`` ones plus those whose faults hit every one
  of the first ``max_attempts`` calls (the attempt limit every system gets, 3), honouring
  each fault's ``from_call`` and ``count``: a tool that fails only from its 2nd call, or
  twice and then works, is healthy.  If a start → goal path avoids every broken tool, the
  goal is reachable and the only correct outcome is reaching it.  Otherwise, when a
  fallback goal is reachable, the only correct outcome is a demotion that genuinely
  reached one; when none is, an explicit escalation.
* **Silent failure.** A run that claims success (completed or demoted) while its path is
  not a hop-by-hop walk of the graph (a step skipped or invented), or while a step's
  output token was not produced by a successful recorded call of that tool (output of a
  failed call used, or no call made), or while a step consumed something other than the
  previous step's output; or while a call of a tool with side effects (not idempotent)
  that is not on the claimed path was neither compensated (its compensation tool called
  with its token) nor listed in the run's ``extra_steps``.
* **Correct.** No silent failure, and: a verified completion; or, when the goal was not
  reachable, a verified demotion or an explicit escalation.  ``best_outcome`` (an extra
  count) is stricter: a correct run that also escalated only when no fallback goal was
  reachable.

The three systems are the Orchestra router (:func:`run_orchestra`), the ReAct agent and
the static LangGraph workflow (:mod:`orchestra.bench.baselines`).  The command prints a
table and, with ``--json OUT``, writes::

    {"systems": {"orchestra": {"scenarios", "correct", "llm_calls", "silent_failures",
                               "reroutes", "escalations", "wall_ms", ...}, "react": ..., "static": ...},
     "per_scenario": [...]}

Top-level imports stay light: ``orchestra.cli.bench`` imports this module to register the
command; the systems are imported when the command runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

if TYPE_CHECKING:
    from rich.table import Table

    from orchestra.bench.baselines import RunStatus, SystemRun, ToolGraph
    from orchestra.bench.standins import CallRecorder, Standins
    from orchestra.models.base import ChatMessage
    from orchestra.scenario import Scenario, ScenarioFile, ScenarioGraph

__all__ = [
    "DEFAULT_SCENARIOS",
    "SYSTEMS",
    "Oracle",
    "Verdict",
    "judge",
    "oracle",
    "register",
    "render_table",
    "run_bench",
    "run_orchestra",
    "run_scenario",
]

DEFAULT_SCENARIOS = "../shared/data/selfheal/paper19.json"
SYSTEMS: tuple[str, ...] = ("orchestra", "react", "static")

Expected = Literal["complete", "demote", "escalate"]
SystemFn = Callable[["ScenarioGraph", "Standins"], Awaitable["SystemRun"]]


# --------------------------------------------------------------------------- oracle


@dataclass(frozen=True)
class Oracle:
    """What a perfect system could achieve in one scenario."""

    broken: frozenset[str]
    goal_reachable: bool
    reachable_fallbacks: tuple[str, ...]
    best_path: tuple[str, ...] | None

    @property
    def expected(self) -> Expected:
        """The best outcome: complete, else demote to a fallback goal, else escalate."""
        if self.goal_reachable:
            return "complete"
        return "demote" if self.reachable_fallbacks else "escalate"


#: Calls of one tool every system may make in one scenario (the first and two retries).
MAX_ATTEMPTS = 3


def broken_tools(scenario: Scenario, max_attempts: int = MAX_ATTEMPTS) -> frozenset[str]:
    """Tools no system gets a good answer from: down, or faulty on each of the first
    ``max_attempts`` calls (each fault's ``from_call`` and ``count`` honoured)."""
    faulty: dict[str, list[Any]] = {}
    for f in scenario.faults:
        faulty.setdefault(f.tool, []).append(f)
    return frozenset(scenario.down) | frozenset(
        t
        for t, fs in faulty.items()
        if all(any(f.active(n) for f in fs) for n in range(1, max_attempts + 1))
    )


def oracle(graph: ScenarioGraph, scenario: Scenario, *, max_attempts: int = MAX_ATTEMPTS) -> Oracle:
    """Compute the oracle of ``scenario``: broken tools and what stays reachable."""
    import networkx as nx

    from orchestra.bench.baselines import ToolGraph

    tg = ToolGraph(graph)
    broken = broken_tools(scenario, max_attempts)
    healthy = tg.g.subgraph([n for n in tg.g.nodes if n not in broken])

    def path_to(target: str) -> list[str] | None:
        if graph.start not in healthy or target not in healthy:
            return None
        try:
            p: list[str] = nx.dijkstra_path(healthy, graph.start, target, weight="cost")
        except nx.NetworkXNoPath:
            return None
        return p

    best = path_to(graph.goal)
    fallbacks = tuple(fg for fg in graph.fallback_goals if path_to(fg) is not None)
    return Oracle(
        broken=broken,
        goal_reachable=best is not None,
        reachable_fallbacks=fallbacks,
        best_path=tuple(n for n in best if n in tg.tools) if best is not None else None,
    )


# --------------------------------------------------------------------------- judging


@dataclass(frozen=True)
class Verdict:
    """How one system did on one scenario, judged from its stand-ins' call log."""

    system: str
    status: str
    target: str | None
    correct: bool
    best_outcome: bool
    silent_failure: bool
    problems: tuple[str, ...]
    path: tuple[str, ...]
    llm_calls: int
    reroutes: int
    escalations: int
    wall_ms: float
    tool_calls: int
    detail: str
    compensations: tuple[str, ...] = ()
    extra_steps: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able form."""
        return {
            "status": self.status,
            "target": self.target,
            "correct": self.correct,
            "best_outcome": self.best_outcome,
            "silent_failure": self.silent_failure,
            "problems": list(self.problems),
            "path": list(self.path),
            "llm_calls": self.llm_calls,
            "reroutes": self.reroutes,
            "escalations": self.escalations,
            "wall_ms": round(self.wall_ms, 3),
            "tool_calls": self.tool_calls,
            "compensations": list(self.compensations),
            "extra_steps": list(self.extra_steps),
            "detail": self.detail,
        }


def check_claim(run: SystemRun, recorder: CallRecorder, tg: ToolGraph) -> list[str]:
    """Every way a claimed success is not backed by the call log (empty: it is).

    Checks the path is a start → target walk, that each step's token came from a
    successful recorded call of that tool, and that each step consumed the previous
    step's output (the first step: nothing).
    """
    graph = tg.graph
    problems: list[str] = []
    target = run.target if run.target is not None else graph.goal
    if run.status == "completed" and target != graph.goal:
        problems.append(f"completed at {target!r}, which is not the goal {graph.goal!r}")
    if run.status == "demoted" and target not in graph.fallback_goals:
        problems.append(f"demoted to {target!r}, which is no declared fallback goal")
    if not tg.is_walk(run.path, target):
        problems.append(
            f"path {' > '.join(run.path) or '(empty)'} is no {graph.start}→{target} walk of the graph"
        )
    if len(run.tokens) != len(run.path):
        problems.append(f"{len(run.path)} steps but {len(run.tokens)} output tokens")
    previous: str | None = None
    for i, (tool, token) in enumerate(zip(run.path, run.tokens, strict=False)):
        rec = recorder.by_token(token)
        if rec is None:
            problems.append(f"step {i} ({tool}): token {token!r} came from no recorded call")
        elif rec.tool != tool:
            problems.append(f"step {i} ({tool}): token {token!r} came from {rec.tool}")
        elif rec.outcome != "ok":
            problems.append(f"step {i} ({tool}): used the output of a failed call ({rec.outcome})")
        elif rec.upstream != previous:
            problems.append(
                f"step {i} ({tool}): consumed {rec.upstream!r}, not the previous step's output {previous!r}"
            )
        previous = token
    undo = graph.compensations
    failed = recorder.failed_tokens
    for rec in recorder.calls:
        if rec.tool in undo:
            continue
        if rec.upstream is not None and rec.upstream in failed:
            problems.append(
                f"{rec.tool} call {rec.call_number} consumed the output of a failed call ({rec.upstream})"
            )
    problems += side_effect_problems(run, recorder, graph)
    return problems


def side_effect_problems(run: SystemRun, recorder: CallRecorder, graph: ScenarioGraph) -> list[str]:
    """Side effects a claimed success leaves out: a call of a tool that is not idempotent,
    off the claimed path, neither compensated nor listed in ``extra_steps``; or a path that
    uses a call that was compensated."""
    undo = graph.compensations
    undone = {r.upstream for r in recorder.calls if r.tool in undo and r.outcome == "ok"}
    on_path = set(run.tokens)
    problems: list[str] = []
    for rec in recorder.calls:
        if rec.outcome != "ok" or rec.tool in undo:
            continue
        if rec.token in on_path and rec.token in undone:
            problems.append(f"{rec.tool} call {rec.call_number} is on the path but was compensated")
        elif (
            not graph.idempotent(rec.tool)
            and rec.token not in on_path
            and rec.token not in undone
            and rec.tool not in run.extra_steps
        ):
            problems.append(
                f"{rec.tool} call {rec.call_number} acted (not idempotent), is off the path, and was "
                "neither compensated nor listed in extra_steps"
            )
    return problems


def judge(run: SystemRun, recorder: CallRecorder, tg: ToolGraph, truth: Oracle) -> Verdict:
    """Judge ``run`` against the call log and the oracle."""
    problems = check_claim(run, recorder, tg) if run.claimed_success else []
    silent = run.claimed_success and bool(problems)
    if silent or run.status == "failed":
        correct = False
    elif run.status == "completed":
        correct = True
    elif run.status == "demoted":  # verified: right only when the goal was out of reach
        correct = not truth.goal_reachable
    else:  # escalated: right only when neither the goal nor a fallback goal was reachable
        correct = not truth.goal_reachable and not truth.reachable_fallbacks
    best = {"completed": "complete", "demoted": "demote", "escalated": "escalate"}.get(run.status)
    return Verdict(
        system=run.system,
        status=run.status,
        target=run.target,
        correct=correct,
        best_outcome=correct and best == truth.expected,
        silent_failure=silent,
        problems=tuple(problems),
        path=tuple(run.path),
        llm_calls=run.llm_calls,
        reroutes=run.reroutes,
        escalations=run.escalations,
        wall_ms=run.wall_ms,
        tool_calls=len(recorder),
        detail=run.detail,
        compensations=tuple(r.tool for r in recorder.calls if r.tool in tg.graph.compensations),
        extra_steps=tuple(run.extra_steps),
    )


# --------------------------------------------------------------------------- systems


def _first_listed_goal(messages: Sequence[ChatMessage]) -> str:
    """An ideal demotion answer: the first reachable lesser goal the prompt lists.

    The core lists reachable goals as ``- NAME: needs steps ...`` lines, in the author's
    order of preference; an LLM that honours that order answers the first one.
    """
    for m in reversed(messages):
        for line in m.content.splitlines():
            if line.startswith("- ") and ":" in line:
                return line[2:].split(": ", 1)[0].strip()
    return "NONE"


async def run_orchestra(graph: ScenarioGraph, standins: Standins) -> SystemRun:
    """The Orchestra router on one scenario.

    The pre-run health probe's findings go to the runner's :class:`HealthBoard` with
    ``mark_down``; the scenario graph becomes an Orchestra graph with
    :func:`~orchestra.loaders.graph_from_scenario`; the demotion model is a scripted LLM
    that settles for the first reachable fallback goal the core offers
    (:func:`_first_listed_goal`).  LLM calls are counted at that model; reroutes are the
    run's logged ``reroute`` decisions; ``wall_ms`` covers building the graph and running it.
    """
    from orchestra.bench.baselines import SystemRun
    from orchestra.loaders import graph_from_scenario
    from orchestra.monitors.health import HealthBoard
    from orchestra.runtime import Runner
    from orchestra.testing import ScriptedChatModel

    t0 = time.perf_counter()
    board = HealthBoard()
    for tool, reason in standins.probe.down.items():
        board.mark_down(tool, reason)
    model = ScriptedChatModel(_first_listed_goal, name="scripted-demotion")
    try:
        og = graph_from_scenario(graph, standins.tools, name="selfheal")
        result = await Runner(health=board, demotion_model=model, max_attempts=MAX_ATTEMPTS).run(
            og, {}
        )
    except Exception as exc:
        return SystemRun(
            system="orchestra",
            status="failed",
            claimed_success=False,
            llm_calls=len(model.calls),
            wall_ms=(time.perf_counter() - t0) * 1000.0,
            detail=f"router raised {type(exc).__name__}: {exc}",
        )
    wall_ms = (time.perf_counter() - t0) * 1000.0
    tokens = [
        str(result.outputs[step].get("token"))
        for step, skill in result.chosen.items()
        if skill in standins.tools
    ]
    status: RunStatus = (
        result.status if result.status in ("completed", "demoted", "escalated") else "failed"
    )
    target: str | None = None
    if status == "completed":
        target = graph.goal
    elif status == "demoted":
        target = result.goal.rpartition(":")[2]
    return SystemRun(
        system="orchestra",
        status=status,
        claimed_success=status in ("completed", "demoted"),
        target=target,
        path=list(result.path),
        tokens=tokens,
        llm_calls=len(model.calls),
        reroutes=result.count("reroute"),
        escalations=int(status == "escalated"),
        wall_ms=wall_ms,
        detail=result.reason or f"reached {target}",
        extra_steps=[rec.skill for rec in result.extra_steps],
    )


async def _react(graph: ScenarioGraph, standins: Standins) -> SystemRun:
    from orchestra.bench.baselines import run_react

    return await run_react(
        graph,
        standins.tools,
        system="react",
        max_attempts=MAX_ATTEMPTS,
        down=sorted(standins.probe.down),
        compensations=standins.compensations,
    )


async def _static(graph: ScenarioGraph, standins: Standins) -> SystemRun:
    from orchestra.bench.baselines import run_static

    return await run_static(
        graph,
        standins.tools,
        system="static",
        max_attempts=MAX_ATTEMPTS,
        down=sorted(standins.probe.down),
    )


def _runners() -> dict[str, SystemFn]:
    return {"orchestra": run_orchestra, "react": _react, "static": _static}


# --------------------------------------------------------------------------- harness


async def run_scenario(
    graph: ScenarioGraph,
    scenario: Scenario,
    systems: Sequence[str] = SYSTEMS,
    *,
    latency_s: float = 0.001,
    timeout_s: float = 0.1,
) -> dict[str, Any]:
    """Run every system on one scenario and judge each; returns the per-scenario entry."""
    from orchestra.bench.baselines import ToolGraph
    from orchestra.bench.standins import build_standins

    tg = ToolGraph(graph)
    truth = oracle(graph, scenario)
    runners = _runners()
    verdicts: dict[str, Any] = {}
    for name in systems:
        standins = build_standins(graph, scenario, name, latency_s=latency_s, timeout_s=timeout_s)
        run = await runners[name](graph, standins)
        verdicts[name] = judge(run, standins.recorder, tg, truth).as_dict()
    return {
        "id": scenario.id,
        "graph": scenario.graph,
        "down": list(scenario.down),
        "faults": [f.model_dump(exclude_none=True) for f in scenario.faults],
        "broken": sorted(truth.broken),
        "expected": truth.expected,
        "reachable_fallbacks": list(truth.reachable_fallbacks),
        "best_path": list(truth.best_path) if truth.best_path is not None else None,
        "systems": verdicts,
    }


def summarize(
    per_scenario: Sequence[dict[str, Any]], systems: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Totals per system over all scenarios."""
    out: dict[str, dict[str, Any]] = {}
    for name in systems:
        rows = [s["systems"][name] for s in per_scenario]
        out[name] = {
            "scenarios": len(rows),
            "correct": sum(r["correct"] for r in rows),
            "llm_calls": sum(r["llm_calls"] for r in rows),
            "silent_failures": sum(r["silent_failure"] for r in rows),
            "reroutes": sum(r["reroutes"] for r in rows),
            "escalations": sum(r["escalations"] for r in rows),
            "wall_ms": round(sum(r["wall_ms"] for r in rows), 3),
            "best_outcome": sum(r["best_outcome"] for r in rows),
            "demotions": sum(r["status"] == "demoted" for r in rows),
            "failed": sum(r["status"] == "failed" for r in rows),
            "tool_calls": sum(r["tool_calls"] for r in rows),
            "compensations": sum(len(r["compensations"]) for r in rows),
        }
    return out


async def run_bench(
    scenarios: str | Path | ScenarioFile = DEFAULT_SCENARIOS,
    systems: Sequence[str] = SYSTEMS,
    *,
    latency_s: float = 0.001,
    timeout_s: float = 0.1,
) -> dict[str, Any]:
    """Run the whole benchmark; returns ``{"systems": ..., "per_scenario": ...}``."""
    from orchestra.scenario import ScenarioFile, load_scenario_file

    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        raise ValueError(f"unknown system(s) {unknown}; choose from {list(SYSTEMS)}")
    sf = scenarios if isinstance(scenarios, ScenarioFile) else load_scenario_file(scenarios)
    per_scenario = [
        await run_scenario(sf.graphs[s.graph], s, systems, latency_s=latency_s, timeout_s=timeout_s)
        for s in sf.scenarios
    ]
    report: dict[str, Any] = {
        "systems": summarize(per_scenario, systems),
        "per_scenario": per_scenario,
    }
    if not isinstance(scenarios, ScenarioFile):
        report["scenario_file"] = str(scenarios)
    return report


# --------------------------------------------------------------------------- output


def render_table(report: dict[str, Any], *, title: str = "Self-healing benchmark") -> Table:
    """The summary table: one row per system."""
    from rich.table import Table

    columns: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("correct", lambda s: f"{s['correct']}/{s['scenarios']}"),
        ("best", lambda s: f"{s['best_outcome']}/{s['scenarios']}"),
        ("LLM calls", lambda s: str(s["llm_calls"])),
        ("silent", lambda s: str(s["silent_failures"])),
        ("reroutes", lambda s: str(s["reroutes"])),
        ("escalated", lambda s: str(s["escalations"])),
        ("demoted", lambda s: str(s["demotions"])),
        ("tool calls", lambda s: str(s["tool_calls"])),
        ("wall ms", lambda s: f"{s['wall_ms']:.0f}"),
    ]
    table = Table(
        title=title, caption="best: correct, and demoted rather than escalated when it could"
    )
    table.add_column("system", no_wrap=True)
    for name, _ in columns:
        table.add_column(name, justify="right")
    for system, s in report["systems"].items():
        table.add_row(system, *(cell(s) for _, cell in columns))
    return table


def render_details(report: dict[str, Any]) -> Table:
    """One row per scenario: expected outcome and each system's outcome."""
    from rich.table import Table

    systems = list(report["systems"])
    table = Table(title="Per scenario")
    table.add_column("scenario")
    table.add_column("broken")
    table.add_column("expected")
    for name in systems:
        table.add_column(name)
    for s in report["per_scenario"]:
        cells = []
        for name in systems:
            v = s["systems"][name]
            mark = "ok" if v["correct"] else ("SILENT" if v["silent_failure"] else "WRONG")
            cells.append(f"{mark} {v['status']} ({v['llm_calls']} llm, {v['tool_calls']} calls)")
        table.add_row(s["id"], ",".join(s["broken"]) or "-", s["expected"], *cells)
    return table


def register(app: typer.Typer) -> None:
    """Add the ``selfheal`` command to the ``orchestra bench`` group."""

    @app.command("selfheal")
    def selfheal(
        scenarios: Annotated[
            Path, typer.Option("--scenarios", help="Scenario file (JSON).")
        ] = Path(DEFAULT_SCENARIOS),
        json_out: Annotated[
            Path | None, typer.Option("--json", help="Write the full report here.")
        ] = None,
        systems: Annotated[
            str, typer.Option("--systems", help="Comma-separated systems to run.")
        ] = ",".join(SYSTEMS),
        details: Annotated[
            bool, typer.Option("--details", help="Also print one row per scenario.")
        ] = False,
        tool_timeout: Annotated[
            float, typer.Option("--tool-timeout", help="Seconds before a stand-in call times out.")
        ] = 0.1,
    ) -> None:
        """Compare the Orchestra router, a ReAct agent and a static LangGraph workflow."""
        import asyncio

        from rich.console import Console

        console = Console()
        if not console.is_terminal:  # a pipe or a file: do not squeeze the table into 80 columns
            console = Console(width=max(console.width, 132))
        chosen = [s.strip() for s in systems.split(",") if s.strip()]
        try:
            report = asyncio.run(run_bench(scenarios, chosen, timeout_s=tool_timeout))
        except NotImplementedError as exc:
            console.print(f"[red]{exc}[/red] (run with --systems react,static meanwhile)")
            raise typer.Exit(2) from exc
        if details:
            console.print(render_details(report))
        console.print(render_table(report, title=f"Self-healing benchmark: {scenarios}"))
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(report, indent=2) + "\n")
            console.print(f"wrote {json_out}")
