"""``orchestra trace RUN_ID``: a run as a tree, without Jaeger.

The data is the run's checkpoint (:class:`~orchestra.results.RunState`: the decision log with
its timestamps, the step records with durations and workers, the spend), so this works for
every run that was checkpointed, traced or not::

    run 3f2a9c0d1e2b  refund  COMPLETED  goal 'goal'  spent $0.0053  reroutes 1  152.3 ms
    ├── lookup → crm_lookup
    │   └── ✓ crm_lookup                  +0.4 ms   20.5 ms  worker w1
    ├── refund → razorpay_refund
    │   ├── ✗ stripe_refund               +21.0 ms   3.1 ms  exception: stripe is down
    │   ├── ↪ reroute  stripe_refund failed (exception); rerouted to razorpay_refund
    │   └── ✓ razorpay_refund             +24.4 ms  90.5 ms  worker w2
    └── ■ complete  reached the goal

A JSON file written by ``orchestra run --json`` (or a saved ``RunState``) can be shown with
``--file``.  :func:`run_tree` builds the tree for your own tools.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from orchestra.cli.run import print_error
from orchestra.redact import redact, redact_text
from orchestra.results import Decision, RunResult, RunState, StepRecord
from orchestra.runlog import Attempt, StepView, step_views

__all__ = [
    "Attempt",
    "StepView",
    "jaeger_hint",
    "register",
    "run_tree",
    "state_from_json",
    "step_views",
]

_STATUS_STYLE = {
    "completed": "green bold",
    "demoted": "yellow bold",
    "escalated": "red bold",
    "running": "cyan bold",
}
_MARK = {
    "reroute": ("↪", "yellow"),
    "probe": ("↻", "magenta"),
    "backtrack": ("↩", "yellow"),
    "compensate": ("⟲", "magenta"),
    "note": ("·", "dim"),
    "demote": ("▼", "yellow reverse"),
    "escalate": ("!", "red reverse"),
    "complete": ("■", "green"),
    "budget": ("$", "yellow"),
}


def _ms(v: float | None) -> str:
    return "" if v is None else f"{v:,.1f} ms"


def _decision_line(d: Decision) -> Text:
    mark, style = _MARK.get(d.kind, ("•", "white"))
    t = Text()
    t.append(f"{mark} {d.kind}", style=style)
    if d.skill and d.step is None:
        t.append(f" {d.skill}", style="bold")
    t.append(f"  +{d.at_ms:,.1f} ms  ", style="dim")
    t.append(redact_text(d.reason))
    return t


def _attempt_line(a: Attempt) -> Text:
    t = Text()
    if a.ok is None:
        t.append(f"… {a.skill}", style="cyan")
        t.append(f"  +{a.started_ms:,.1f} ms  in flight", style="dim")
        return t
    t.append(f"{'✓' if a.ok else '✗'} {a.skill}", style="green" if a.ok else "red")
    t.append(f"  +{a.started_ms:,.1f} ms", style="dim")
    elapsed = a.elapsed_ms
    if elapsed is not None:
        t.append(f"  {_ms(elapsed)}")
    if a.worker:
        t.append(f"  worker {a.worker}", style="blue")
    if a.route_cost is not None:
        t.append(f"  route cost {a.route_cost:.4g}", style="dim")
    if not a.ok:
        t.append(f"  {a.error_kind or 'failed'}: ", style="red")
        t.append(redact_text(a.reason))
    return t


def _first_ms(v: StepView) -> float:
    """When a step's first attempt or decision happened (a step with none sorts last)."""
    times = [i.started_ms if isinstance(i, Attempt) else i.at_ms for i in v.items]
    return min(times, default=float("inf"))


def jaeger_hint(state: RunState) -> str:
    """Where the run's trace is in Jaeger: its stored trace id and the driver's service name."""
    if not state.trace_id:
        return (
            "Jaeger: no trace stored with this run (tracing was off when it ran; set "
            "OTEL_EXPORTER_OTLP_ENDPOINT to export runs)"
        )
    return (
        f"Jaeger: http://localhost:16686/trace/{state.trace_id}  (service "
        f"{state.trace_service or 'orchestra'}, tag orchestra.run_id={state.run_id})"
    )


def run_tree(state: RunState, *, wall_ms: float | None = None) -> Tree:
    """The run as a rich :class:`~rich.tree.Tree`: steps → attempts, decisions, cost."""
    views, run_level = step_views(state)
    reroutes = sum(1 for d in state.decisions if d.kind == "reroute")
    head = Text()
    head.append(f"run {state.run_id}", style="bold")
    head.append(f"  {state.graph}  ")
    head.append(state.status.upper(), style=_STATUS_STYLE.get(state.status, "bold"))
    head.append(f"  goal {state.goal!r}  spent ${state.spent_usd:.4f}")
    if state.llm_calls:
        head.append(f"  llm calls {state.llm_calls}")
    head.append(f"  reroutes {reroutes}")
    end = wall_ms if wall_ms is not None else max((d.at_ms for d in state.decisions), default=0.0)
    head.append(f"  {_ms(end)}", style="dim")
    tree = Tree(head)
    # steps and run-level decisions in the order they happened (a run resumed after an
    # escalation shows the escalation before the steps that ran after it)
    timeline: list[tuple[float, int, StepView | Decision]] = [
        (_first_ms(v), i, v) for i, v in enumerate(views)
    ]
    timeline += [(d.at_ms, len(views) + i, d) for i, d in enumerate(run_level)]
    for _, _, entry in sorted(timeline, key=lambda t: (t[0], t[1])):
        if isinstance(entry, Decision):
            tree.add(_decision_line(entry))
            continue
        v = entry
        label = Text(v.step, style="bold")
        if v.record is not None:
            label.append(f" → {v.record.skill}", style="green")
            cost = v.record.output.get("cost_usd") if isinstance(v.record.output, dict) else None
            if isinstance(cost, (int, float)) and cost:
                label.append(f"  ${cost:.6f}", style="yellow")
        elif v.attempts:
            label.append("  not completed", style="red")
        node = tree.add(label)
        for item in v.items:
            node.add(_attempt_line(item) if isinstance(item, Attempt) else _decision_line(item))
    if state.reason and state.status in ("demoted", "escalated"):
        tree.add(Text(f"reason: {redact_text(state.reason)}", style="yellow"))
    return tree


def state_from_json(data: dict[str, Any]) -> tuple[RunState, float | None]:
    """A :class:`RunState` from a saved state or an ``orchestra run --json`` result."""
    if "completed" in data or "attempts" in data:
        return RunState.model_validate(data), None
    result = RunResult.model_validate(data)
    completed = {
        step: StepRecord(step=step, skill=skill, output=result.outputs.get(step, {}))
        for step, skill in result.chosen.items()
    }
    state = RunState(
        run_id=result.run_id,
        graph=result.graph,
        status=result.status,
        goal=result.goal,
        completed=completed,
        decisions=result.decisions,
        spent_usd=result.spent_usd,
        llm_calls=result.llm_calls,
        reason=result.reason,
        trace_id=result.trace_id,
    )
    return state, result.wall_ms


async def _load(run_id: str, url: str | None) -> RunState | None:
    from orchestra.checkpoint import open_checkpointer

    cp = open_checkpointer(url)
    if cp is None:
        raise typer.BadParameter("checkpointing is off (ORCHESTRA_CHECKPOINT_URL=none)")
    try:
        return await cp.load(run_id)
    finally:
        await cp.aclose()


async def _recent(url: str | None, limit: int) -> list[RunState]:
    from orchestra.checkpoint import open_checkpointer

    cp = open_checkpointer(url)
    if cp is None:
        return []
    try:
        return await cp.list_runs(limit)
    finally:
        await cp.aclose()


def _recent_table(states: list[RunState]) -> Table:
    table = Table(title="recent runs (orchestra trace RUN_ID shows one)")
    for col in ("run id", "graph", "status", "steps", "reroutes", "spent"):
        table.add_column(col)
    for s in states:
        table.add_row(
            s.run_id,
            s.graph,
            Text(s.status, style=_STATUS_STYLE.get(s.status, "")),
            str(len(s.completed)),
            str(sum(1 for d in s.decisions if d.kind == "reroute")),
            f"${s.spent_usd:.4f}",
        )
    return table


def _draw(state: RunState, fmt: str | None, output: Path | None) -> None:
    """``orchestra trace RUN --format svg -o FILE``: the run drawn over its graph."""
    from orchestra import viz
    from orchestra.cli.graph import write_picture
    from orchestra.errors import OrchestraError

    err = Console(stderr=True)
    chosen = viz.format_for(str(output) if output else None, fmt, default="svg")
    try:
        data = viz.render(viz.run_picture(state, viz.graph_of_run(state)), chosen)
    except OrchestraError as exc:
        print_error(err, exc)
        raise typer.Exit(2) from None
    write_picture(data, chosen, output, err)


def register(app: typer.Typer) -> None:
    """Add ``orchestra trace`` to the command line."""

    @app.command("trace")
    def trace_cmd(
        run_id: Annotated[
            str | None,
            typer.Argument(help="The run to show; without it, list recent runs"),
        ] = None,
        checkpoint: Annotated[
            str | None,
            typer.Option(
                "--checkpoint",
                help="Checkpoint URL (default: ORCHESTRA_CHECKPOINT_URL, "
                "sqlite:///.orchestra/runs.sqlite)",
            ),
        ] = None,
        file: Annotated[
            Path | None,
            typer.Option(
                "--file", "-f", help="Read the run from this JSON (orchestra run --json OUT)"
            ),
        ] = None,
        json_out: Annotated[
            bool, typer.Option("--json", help="Print the run state as JSON instead")
        ] = False,
        limit: Annotated[int, typer.Option(help="How many recent runs to list")] = 20,
        format: Annotated[
            str | None,
            typer.Option(
                "--format",
                help="Draw the run instead: svg, png, dot or mermaid (path taken, failures, "
                "reroutes, compensations, demotion or escalation, cost, workers)",
            ),
        ] = None,
        output: Annotated[
            Path | None,
            typer.Option("--output", "-o", help="Write the drawing here (format from suffix)"),
        ] = None,
    ) -> None:
        """Show a run as a tree: steps, attempts (skill, ok/failed and why, duration,
        worker), reroutes, demotions and escalations with their reasons, and the spend.

        In Jaeger, the same run is the trace with tag orchestra.run_id=RUN_ID.
        """
        console = Console()
        wall: float | None = None
        if file is not None:
            try:
                state, wall = state_from_json(json.loads(file.read_text()))
            except (OSError, ValueError) as exc:
                print_error(console, f"cannot read {file}: {exc}")
                raise typer.Exit(2) from None
            if run_id is not None and run_id != state.run_id:
                print_error(console, f"{file} holds run {state.run_id}, not {run_id}")
                raise typer.Exit(2)
        elif run_id is None:
            console.print(_recent_table(asyncio.run(_recent(checkpoint, limit))))
            return
        else:
            found = asyncio.run(_load(run_id, checkpoint))
            if found is None:
                print_error(
                    console,
                    f"no run {run_id!r} in the checkpoint store "
                    "(list recent runs with `orchestra trace`)",
                )
                raise typer.Exit(2)
            state = found
        if json_out:
            console.print_json(json.dumps(redact(state.model_dump(mode="json"))))
            return
        if format is not None or output is not None:
            _draw(state, format, output)
            return
        console.print(run_tree(state, wall_ms=wall))
        console.print(Text(jaeger_hint(state), style="dim"), highlight=False)
