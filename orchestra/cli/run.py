"""``orchestra run``: run a graph with live progress, the decision log and the spend."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from orchestra.cli.common import print_error
from orchestra.errors import ExecutorError, LeaseLost, RunInputError, RunLeaseHeld, SpecError
from orchestra.redact import redact, redact_text
from orchestra.results import Decision, RunResult

__all__ = ["EXIT_CODES", "close_runner", "print_error", "register"]

EXIT_CODES = {"completed": 0, "demoted": 3, "escalated": 4, "cancelled": 6}
EXIT_EXECUTOR = 5  # the executor (the fleet) failed; the run can be resumed

_STYLE = {
    "execute": "cyan",
    "succeed": "green",
    "fail": "red",
    "reroute": "yellow bold",
    "probe": "magenta",
    "note": "dim",
    "demote": "yellow reverse",
    "escalate": "red reverse",
    "complete": "green reverse",
    "resume": "blue bold",
    "cancel": "red bold",
    "overrun": "red bold",
    "backtrack": "yellow bold",
    "compensate": "magenta bold",
}


def print_decision(console: Console, d: Decision) -> None:
    where = f"{d.step}/{d.skill}" if d.skill and d.step != d.skill else (d.skill or d.step or "")
    line = Text(f"{d.at_ms:8.1f} ms ", style="dim")
    line.append(f"{d.kind:<9}", style=_STYLE[d.kind])
    # an escalation's reason (and how to resume) is the summary's last line: said once
    reason = "the run stops: why, and how to resume, below" if d.kind == "escalate" else d.reason
    line.append(f" {where:<30} {redact_text(reason)}")
    console.print(line, highlight=False, soft_wrap=True)


def resume_hint(result: RunResult) -> str:
    """How to go on with an escalated run (the command a human types)."""
    return (
        f"orchestra resume {result.run_id} --answer retry|approve|goal:NAME|output:{{json}}"
        "   (see orchestra resume --help)"
    )


def print_summary(console: Console, result: RunResult) -> None:
    table = Table(title=escape(f"run {result.run_id} of {result.graph}"), show_lines=False)
    table.add_column("step")
    table.add_column("skill")
    table.add_column("output", overflow="fold", max_width=60)
    for step, skill in result.chosen.items():
        out = json.dumps(redact(result.outputs.get(step, {})), default=str)
        table.add_row(Text(step), Text(skill), Text(out[:200]))
    console.print(table)
    colour = {"completed": "green", "demoted": "yellow", "escalated": "red"}.get(
        result.status, "white"
    )
    line = Text(result.status.upper(), style=f"{colour} bold")
    line.append(
        f" goal={result.goal!r}  reroutes={result.reroutes}  llm_calls={result.llm_calls}  "
        f"{spend_line(result)}  wall={result.wall_ms:.0f} ms"
    )
    if result.reason:
        line.append(f"\nreason: {redact_text(result.reason)}")
    if result.status == "escalated" and "orchestra resume" not in result.reason:
        line.append("\nto go on: ", style="bold")
        line.append(resume_hint(result))
    console.print(line, highlight=False)


def spend_line(result: RunResult) -> str:
    """``budget=$B spent=$S left=$L (USD)``, or ``spent=$S (USD, no budget)``."""
    if result.budget_usd is None:
        return f"spent=${result.spent_usd:.6f} (USD, no budget)"
    return (
        f"budget=${result.budget_usd:.6f} spent=${result.spent_usd:.6f} "
        f"left=${result.left_usd or 0.0:.6f} (USD)"
    )


#: What running or resuming a run may raise that :func:`fail_with` turns into an exit code.
RUN_ERRORS = (SpecError, RunInputError, ValueError, ExecutorError, RunLeaseHeld, LeaseLost)


def fail_with(console: Console, exc: Exception) -> NoReturn:
    """Print a user-facing error and exit: 2 for bad input or spec (or a run another driver
    holds), 5 for the executor (or a lease lost to another driver)."""
    if isinstance(exc, LeaseLost):
        print_error(console, exc, label="stopped")
        raise typer.Exit(EXIT_EXECUTOR) from None
    if isinstance(exc, ExecutorError):
        print_error(console, exc, label="executor error")
        raise typer.Exit(EXIT_EXECUTOR) from None
    print_error(console, exc)
    raise typer.Exit(2) from None


def finish(console: Console, result: RunResult, json_out: Path | None) -> NoReturn:
    """Print the run's summary, write its JSON if asked, exit with its status's code."""
    print_summary(console, result)
    console.print(
        f"[dim]see it: orchestra trace {result.run_id} (tree) · orchestra trace "
        f"{result.run_id} -o run.svg (picture) · orchestra ui → http://127.0.0.1:8765/runs/{result.run_id}[/]",
        highlight=False,
    )
    if json_out:
        # what is exported is scrubbed like what is printed (credentials, card numbers)
        json_out.write_text(json.dumps(redact(result.model_dump(mode="json")), indent=2))
    raise typer.Exit(EXIT_CODES.get(result.status, 1))


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_cmd(
        graph: Annotated[
            Path | None,
            typer.Argument(
                help="A graph: .py (defines `graph`), .yaml, or a scenario .json "
                "(optional with --resume: the run remembers its graph)"
            ),
        ] = None,
        input: Annotated[
            str | None, typer.Option("--input", "-i", help="Run input as JSON (or @file.json)")
        ] = None,
        scenario: Annotated[
            str | None, typer.Option(help="Scenario id, when GRAPH is a scenario file")
        ] = None,
        down: Annotated[
            list[str], typer.Option("--down", help="Mark a skill down before the run (repeatable)")
        ] = [],  # noqa: B006
        fail: Annotated[
            list[str],
            typer.Option(
                "--fail", help="Make a skill misbehave: NAME[:exception|timeout|malformed]"
            ),
        ] = [],  # noqa: B006
        budget: Annotated[
            float | None, typer.Option(help="Hard budget in USD for this run")
        ] = None,
        fleet: Annotated[
            bool,
            typer.Option("--fleet", help="Run steps on the Celery fleet instead of in process"),
        ] = False,
        json_out: Annotated[
            Path | None, typer.Option("--json", help="Write the run result as JSON here")
        ] = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live progress")] = False,
        resume: Annotated[
            str | None,
            typer.Option(
                "--resume",
                metavar="RUN_ID",
                help="Continue run RUN_ID from its last checkpoint (its driver died): "
                "completed steps are not run again",
            ),
        ] = None,
        run_id: Annotated[
            str | None, typer.Option("--run-id", help="Id of the new run (default: random)")
        ] = None,
    ) -> None:
        """Run GRAPH and show what ran, what was rerouted and what it cost.

        Exit code: 0 completed, 3 demoted, 4 escalated, 2 bad input or spec, 5 the fleet
        failed (resume the run with --resume RUN_ID).
        """
        console = Console()
        try:
            if resume is not None:
                from orchestra.cli.resume import resume_run

                result = asyncio.run(
                    resume_run(resume, graph=graph, fleet=fleet, console=console, quiet=quiet)
                )
            elif graph is None:
                raise ValueError("give a GRAPH to run, or --resume RUN_ID")
            else:
                result = asyncio.run(
                    _run(graph, input, scenario, down, fail, budget, fleet, console, quiet, run_id)
                )
        except RUN_ERRORS as exc:
            fail_with(console, exc)
        finish(console, result, json_out)


async def _run(
    path: Path,
    input: str | None,
    scenario: str | None,
    down: list[str],
    fail: list[str],
    budget: float | None,
    fleet: bool,
    console: Console,
    quiet: bool,
    run_id: str | None = None,
) -> RunResult:
    import uuid

    from orchestra.building import build_runner
    from orchestra.cli.common import read_json_object
    from orchestra.loaders import load_any_graph

    data: dict[str, Any] = read_json_object(input, "--input") if input else {}
    if fail and fleet:
        raise ValueError(
            "--fail acts where a skill runs: on a fleet, give it to the workers "
            "(orchestra worker ... --fail NAME[:kind])"
        )
    graph, health_down = load_any_graph(path, scenario=scenario, fail=fail)
    run_id = run_id or uuid.uuid4().hex[:12]
    runner = build_runner(fleet=fleet, on_decision=None if quiet else _progress(console, run_id))
    mark_down(runner, graph, health_down, down)
    origin = {
        "graph": str(path.resolve()),
        "scenario": scenario,
        "fail": list(fail),
        "down": list(down),
        "fleet": fleet,
    }
    try:
        return await runner.run(graph, data, budget_usd=budget, run_id=run_id, origin=origin)
    finally:
        await close_runner(runner)


def _progress(console: Console, run_id: str, title: str = "run") -> Any:
    """The live progress hook: the run's id once its first decision is made (so an input or
    spec error is never preceded by it), then one line per decision."""
    started = False

    def show(d: Decision) -> None:
        nonlocal started
        if not started:
            started = True
            console.print(Text(f"{title} {run_id}", style="dim"), highlight=False)
        print_decision(console, d)

    return show


def mark_down(runner: Any, graph: Any, scenario_down: list[str], down: list[str]) -> None:
    """Mark skills down before a run (``--down``, or a scenario's outages)."""
    for name in [*scenario_down, *down]:
        if name not in graph.skills:
            from orchestra.errors import UnknownSkillError

            raise UnknownSkillError(name, field="--down", known=list(graph.skills))
        runner.health.mark_down(
            name, "marked down from the command line" if name in down else "scenario: down"
        )


async def close_runner(runner: Any) -> None:
    """Release what a runner built from settings holds (executor, checkpointer)."""
    try:
        await runner.executor.aclose()
    finally:
        if runner.checkpointer is not None:
            await runner.checkpointer.aclose()
