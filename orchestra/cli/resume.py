"""``orchestra resume``: continue a run from its checkpoint, with a human's answer if it escalated.

::

    orchestra resume --list                          # recent runs and their status
    orchestra resume 3f2a9c1b7d4e                    # its driver died: go on
    orchestra resume 3f2a9c1b7d4e --answer retry     # it escalated: try the stuck step again
    orchestra resume 3f2a9c1b7d4e --answer approve   # let an amount over the limit through
    orchestra resume 3f2a9c1b7d4e --answer goal:refund
    orchestra resume 3f2a9c1b7d4e --answer 'done:{"refund_id": "re_9", "amount": 5, "provider": "stripe"}'
    orchestra resume 3f2a9c1b7d4e --answer not-done  # unknown_outcome: the charge did not happen
    orchestra resume 3f2a9c1b7d4e --budget 0.05 --answer retry   # it ran out of budget
    orchestra resume 3f2a9c1b7d4e --answer 'output:{"refund_id": "manual-1", "amount": 5, "provider": "bank"}'
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from orchestra.errors import RunInputError
from orchestra.results import RunResult

__all__ = ["register", "resume_run"]


async def resume_run(
    run_id: str,
    *,
    graph: Path | None = None,
    fleet: bool = False,
    answer: str | None = None,
    console: Console,
    quiet: bool = False,
    budget: float | None = None,
) -> RunResult:
    """Resume ``run_id`` from the configured checkpointer (the graph file it remembers, or ``graph``)."""
    from orchestra.building import build_runner
    from orchestra.checkpoint import open_checkpointer
    from orchestra.cli.run import close_runner, mark_down, print_decision
    from orchestra.loaders import load_any_graph

    store = open_checkpointer()
    if store is None:
        raise RunInputError(
            "checkpoints are off (ORCHESTRA_CHECKPOINT_URL=none): nothing to resume"
        )
    try:
        state = await store.load(run_id)
    finally:
        await store.aclose()
    if state is None:
        raise RunInputError(f"no checkpoint of run {run_id!r}")
    origin = state.origin
    path = graph or (Path(origin["graph"]) if origin.get("graph") else None)
    if path is None:
        raise RunInputError(f"run {run_id} does not say which graph file it ran: pass --graph FILE")
    loaded, scenario_down = load_any_graph(
        path, scenario=origin.get("scenario"), fail=list(origin.get("fail") or [])
    )
    runner = build_runner(
        fleet=fleet or bool(origin.get("fleet")),
        on_decision=None if quiet else (lambda d: print_decision(console, d)),
    )
    mark_down(runner, loaded, scenario_down, list(origin.get("down") or []))
    if not quiet:
        console.print(Text(f"resuming run {run_id} ({state.status})", style="dim"), highlight=False)
    try:
        return await runner.resume(loaded, state, answer=answer, budget_usd=budget)
    finally:
        await close_runner(runner)


async def _list(limit: int) -> list[tuple[str, str, str, int, str]]:
    from orchestra.checkpoint import open_checkpointer

    store = open_checkpointer()
    if store is None:
        return []
    try:
        runs = await store.list_runs(limit)
    finally:
        await store.aclose()
    return [(r.run_id, r.graph, r.status, len(r.completed), r.reason) for r in runs]


def register(app: typer.Typer) -> None:
    @app.command("resume")
    def resume_cmd(
        run_id: Annotated[str | None, typer.Argument(help="The run to continue")] = None,
        answer: Annotated[
            str | None,
            typer.Option(
                "--answer",
                "-a",
                help="A human's answer to an escalated run: retry, approve, goal:NAME, "
                "output:{json} (or output:STEP={json}); after unknown_outcome: done:{json} "
                "(the side effect happened: its output) or not-done",
            ),
        ] = None,
        graph: Annotated[
            Path | None, typer.Option("--graph", help="The graph file (default: the run's own)")
        ] = None,
        fleet: Annotated[bool, typer.Option("--fleet", help="Run the rest on the fleet")] = False,
        list_runs: Annotated[bool, typer.Option("--list", help="List recent runs instead")] = False,
        json_out: Annotated[
            Path | None, typer.Option("--json", help="Write the run result as JSON here")
        ] = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live progress")] = False,
        budget: Annotated[
            float | None,
            typer.Option("--budget", help="A new hard budget in USD for the whole run"),
        ] = None,
    ) -> None:
        """Continue a run from its last checkpoint; completed steps are not run again.

        Exit codes as for `orchestra run`.
        """
        from orchestra.cli.common import check_answer
        from orchestra.cli.run import RUN_ERRORS, fail_with, finish
        from orchestra.redact import redact_text

        console = Console()
        if list_runs or run_id is None:
            table = Table(title="recent runs")
            for col in ("run", "graph", "status", "steps done", "reason"):
                table.add_column(col)
            for row in asyncio.run(_list(20)):
                table.add_row(*(Text(str(x)) for x in (*row[:4], redact_text(row[4])[:80])))
            console.print(table)
            return
        try:
            if answer is not None:
                check_answer(answer)
            result = asyncio.run(
                resume_run(
                    run_id,
                    graph=graph,
                    fleet=fleet,
                    answer=answer,
                    console=console,
                    quiet=quiet,
                    budget=budget,
                )
            )
        except RUN_ERRORS as exc:
            fail_with(console, exc)
        finish(console, result, json_out)
