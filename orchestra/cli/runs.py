"""``orchestra runs ...``: the runs the checkpoint store keeps (``prune`` removes old ones)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

runs_app = typer.Typer(help="Runs kept in the checkpoint store.", no_args_is_help=True)

_STATUSES = ("running", "completed", "demoted", "escalated")


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
            "running, completed, demoted, escalated (default: completed, demoted)",
        ),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option("--url", help="Checkpoint store (default: ORCHESTRA_CHECKPOINT_URL)"),
    ] = None,
) -> None:
    """Remove old runs (every checkpoint and step record) from the checkpoint store."""
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
