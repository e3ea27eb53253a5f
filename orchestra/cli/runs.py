"""``orchestra submit`` and ``orchestra runs ...``: runs as a service, from the command line.

::

    orchestra submit support-triage -i '{"ticket_id": "T-7"}' --budget 0.5   # prints the run id
    orchestra runs list --status running
    orchestra runs watch 3f2a9c1b7d4e          # the decision log, live, until the run ends
    orchestra runs result 3f2a9c1b7d4e --timeout 60
    orchestra runs cancel 3f2a9c1b7d4e
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from orchestra.errors import ExecutorError, RunInputError, SpecError

__all__ = ["register", "runs_app"]

runs_app = typer.Typer(
    help="Runs submitted to the fleet: list, watch, await, cancel.", no_args_is_help=True
)

_ERRORS = (SpecError, RunInputError, ValueError, ExecutorError)


def _fail(console: Console, exc: Exception) -> None:
    from orchestra.cli.run import fail_with

    fail_with(console, exc)


def _input(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    raw = Path(text[1:]).read_text() if text.startswith("@") else text
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--input is not valid JSON: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise ValueError("--input must be a JSON object")
    return data


def register(app: typer.Typer) -> None:
    """Mount ``submit`` on the top-level app (``runs_app`` is mounted as ``runs``)."""

    @app.command("submit")
    def submit_cmd(
        graph: Annotated[
            str, typer.Argument(help="A registered graph name (orchestra runs graphs)")
        ],
        input: Annotated[
            str | None, typer.Option("--input", "-i", help="Run input as JSON (or @file.json)")
        ] = None,
        budget: Annotated[
            float | None, typer.Option(help="Hard budget in USD for this run")
        ] = None,
        run_id: Annotated[
            str | None, typer.Option("--run-id", help="Id of the new run (default: random)")
        ] = None,
        wait: Annotated[
            bool, typer.Option("--wait", help="Watch the run until it ends (exit as `run`)")
        ] = False,
    ) -> None:
        """Record a run of GRAPH and queue it for the fleet's drivers; prints its id.

        The run is durable once its id is printed: a driver (`orchestra worker --runs`) takes
        it when it has room, and another takes over if that one dies.
        """
        from orchestra.service import asubmit

        console = Console()
        try:
            handle = asyncio.run(asubmit(graph, _input(input), budget=budget, run_id=run_id))
        except _ERRORS as exc:
            _fail(console, exc)
            return
        print(handle.run_id)
        if wait:
            _watch(handle.run_id, console, timeout=None)


@runs_app.command("list")
def list_cmd(
    status: Annotated[
        str | None,
        typer.Option(
            help="Only runs with this status: queued, running, completed, demoted, "
            "escalated, cancelled"
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first")] = 50,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write JSON here")] = None,
) -> None:
    """Recent runs: status, driver, steps done; queued runs wait for a driver with room."""
    from orchestra.service import RunService

    async def go() -> tuple[list[Any], dict[str, str]]:
        async with RunService() as svc:
            runs = await svc.list_runs(status, limit)
            return runs, await svc.drivers()

    console = Console()
    try:
        runs, drivers = asyncio.run(go())
    except _ERRORS as exc:
        _fail(console, exc)
        return
    table = Table(title=f"runs{f' ({status})' if status else ''}")
    for col in ("run", "graph", "status", "driver", "steps done", "submitted", "reason"):
        table.add_column(col, overflow="fold")
    rows = []
    for r in runs:
        at = r.origin.get("submitted_at")
        rows.append(
            {
                "run_id": r.run_id,
                "graph": r.graph,
                "status": r.status,
                "driver": drivers.get(r.run_id),
                "steps_done": len(r.completed),
                "submitted_at": at,
                "reason": r.reason,
            }
        )
        table.add_row(
            r.run_id,
            r.graph,
            r.status,
            drivers.get(r.run_id, "-"),
            str(len(r.completed)),
            time.strftime("%H:%M:%S", time.localtime(at)) if at else "-",
            r.reason[:80],
        )
    console.print(table)
    if json_out:
        json_out.write_text(json.dumps(rows, indent=2))


def _watch(run_id: str, console: Console, timeout: float | None) -> None:
    from orchestra.cli.run import finish, print_decision
    from orchestra.service import RunHandle

    async def go() -> Any:
        handle = RunHandle(run_id)
        await handle.state()  # no such run: a clear error now
        async for ev in handle.events():
            if ev.type == "decision" and ev.decision is not None:
                print_decision(console, ev.decision)
            elif ev.type != "end":
                console.print(
                    f"[dim]{time.strftime('%H:%M:%S', time.localtime(ev.at))}[/] "
                    f"[blue bold]{ev.type}[/] {ev.detail}",
                    highlight=False,
                )
        return await handle.result(timeout=timeout)

    try:
        result = asyncio.run(go())
    except _ERRORS as exc:
        _fail(console, exc)
        return
    finish(console, result, None)


@runs_app.command("watch")
def watch_cmd(run_id: Annotated[str, typer.Argument(help="The run to watch")]) -> None:
    """Print RUN's decision log as it happens (from its start), until the run ends.

    Exit code as for `orchestra run` (0 completed, 3 demoted, 4 escalated, 6 cancelled).
    """
    _watch(run_id, Console(), timeout=None)


@runs_app.command("result")
def result_cmd(
    run_id: Annotated[str, typer.Argument(help="The run")],
    timeout: Annotated[
        float | None, typer.Option(help="Wait at most this long (seconds); exit 7 if not ended")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the run result as JSON here")
    ] = None,
) -> None:
    """Wait for RUN to end and print its summary (exit code as for `orchestra run`)."""
    from orchestra.cli.run import finish
    from orchestra.service import RunHandle

    console = Console()
    try:
        result = asyncio.run(RunHandle(run_id).result(timeout=timeout))
    except TimeoutError as exc:
        console.print(f"[yellow]{exc}[/]", highlight=False)
        raise typer.Exit(7) from None
    except _ERRORS as exc:
        _fail(console, exc)
        return
    finish(console, result, json_out)


@runs_app.command("cancel")
def cancel_cmd(
    run_id: Annotated[str, typer.Argument(help="The run to cancel")],
    reason: Annotated[str, typer.Option(help="Why (kept in the decision log)")] = (
        "cancelled from the command line"
    ),
) -> None:
    """Stop RUN: in-flight steps finish (or are withdrawn if no worker started them)."""
    from orchestra.service import RunHandle

    console = Console()
    try:
        said = asyncio.run(RunHandle(run_id).cancel(reason))
    except _ERRORS as exc:
        _fail(console, exc)
        return
    console.print(said, highlight=False)


@runs_app.command("graphs")
def graphs_cmd() -> None:
    """Graph names a run may be submitted for (registered by drivers or ORCHESTRA_GRAPHS)."""
    from orchestra.service import RunService

    async def go() -> list[str]:
        async with RunService() as svc:
            return await svc.graphs()

    console = Console()
    try:
        names = asyncio.run(go())
    except _ERRORS as exc:
        _fail(console, exc)
        return
    for n in names:
        print(n)


# ----------------------------------------------------------------------------- prune

# every status a run may have but queued (a queued run waits for a driver); completed and
# demoted are the default: an escalated or cancelled run may hold a call of unknown outcome
_STATUSES = ("running", "completed", "demoted", "escalated", "cancelled")


async def _prune(
    url: str | None, older_than_s: float | None, statuses: list[str] | None
) -> list[str]:
    from orchestra.checkpoint import open_checkpointer

    store = open_checkpointer(url)
    if store is None:
        raise typer.BadParameter("checkpointing is off (ORCHESTRA_CHECKPOINT_URL=none)")
    try:
        return await store.prune(older_than_s=older_than_s, statuses=statuses)
    finally:
        await store.aclose()


@runs_app.command("prune")
def prune(
    older_than: Annotated[
        str,
        typer.Option("--older-than", help="Remove runs idle for longer: 90s, 15m, 12h, 7d, 2w"),
    ] = "7d",
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            help="Only runs with this status (repeat for several): "
            "running, completed, demoted, escalated, cancelled (default: completed, demoted)",
        ),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option("--url", help="Checkpoint store (default: ORCHESTRA_CHECKPOINT_URL)"),
    ] = None,
) -> None:
    """Remove old runs (every checkpoint and step record, their lease and effects journal)
    from the checkpoint store; a run a driver holds now is kept."""
    from orchestra.config import parse_duration
    from orchestra.errors import ConfigError

    try:
        seconds = parse_duration(older_than, field="--older-than")
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    statuses = status or ["completed", "demoted"]
    unknown = [s for s in statuses if s not in _STATUSES]
    if unknown:
        raise typer.BadParameter(
            f"unknown status {', '.join(unknown)} (use {', '.join(_STATUSES)})"
        )
    gone = asyncio.run(_prune(url, seconds or 0.0, statuses))
    typer.echo(
        f"removed {len(gone)} run(s) idle for more than {older_than} "
        f"with status {', '.join(statuses)}" + (f": {', '.join(gone)}" if gone else "")
    )
