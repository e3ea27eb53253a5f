"""``orchestra fleet ...``: look at the worker fleet (live workers, skills, health, dead letters)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from orchestra.cli.run import print_error
from orchestra.errors import ExecutorError

__all__ = ["fleet_app"]

fleet_app = typer.Typer(
    help="Look at the worker fleet: workers, skills, health.", no_args_is_help=True
)


async def _status() -> dict[str, Any]:
    from orchestra.fleet import FleetView, RedisHealthBoard, fleet_settings

    s = fleet_settings()
    view = FleetView(s.health_url, ttl_s=s.heartbeat_ttl_s)
    board = RedisHealthBoard(s.health_url, cooldown_s=s.cooldown_s)
    try:
        workers = await view.workers(fresh=True)
        records = board.records()
    finally:
        await view.aclose()
        board.close()
    skills: dict[str, dict[str, Any]] = {}
    for w in workers:
        for k in w.skills:
            entry = skills.setdefault(k, {"workers": [], "failing_on": {}})
            entry["workers"].append(w.name)
            if k in w.failing:
                entry["failing_on"][w.name] = w.failing[k]
    for k in records:
        skills.setdefault(k, {"workers": [], "failing_on": {}})
    for k, entry in skills.items():
        rec = records.get(k)
        circuit = board.status(k, rec) if rec is not None else "closed"
        if not entry["workers"]:
            state = "no worker"
        elif len(entry["failing_on"]) == len(entry["workers"]):
            state = "failing"
        else:
            state = circuit
        entry.update(
            state=state,
            circuit=circuit,
            calls=rec.calls if rec else 0,
            failures=rec.failures if rec else 0,
            ewma_ms=rec.ewma_ms if rec else None,
            last_error=(rec.last_error if rec else "") or (rec.down_reason if rec else ""),
        )
    now = time.time()
    return {
        "workers": [
            {**w.model_dump(), "heartbeat_age_s": round(now - w.at, 2) if w.at else None}
            for w in workers
        ],
        "skills": dict(sorted(skills.items())),
    }


def fleet_url() -> str:
    """The health board's Redis URL, as the settings give it."""
    from orchestra.fleet import fleet_settings

    return fleet_settings().health_url


def _safe_url(url: str) -> str:
    from orchestra.redact import redact_text

    return redact_text(url)


_STATE_STYLE = {
    "closed": "green",
    "half_open": "yellow",
    "open": "red",
    "down": "red",
    "failing": "red",
    "no worker": "red reverse",
}


@fleet_app.command("status")
def status_cmd(
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the status as JSON here")
    ] = None,
    wait: Annotated[
        int,
        typer.Option(
            "--wait",
            metavar="N",
            help="First wait (up to --timeout) until N workers are live, e.g. just after "
            "starting them; exit 1 if they are not",
        ),
    ] = 0,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits at most")] = 120.0,
) -> None:
    """Live workers, the skills each serves, and every skill's health across the fleet."""
    console = Console()
    try:
        data = asyncio.run(_status())
        deadline = time.monotonic() + timeout
        while len(data["workers"]) < wait and time.monotonic() < deadline:
            time.sleep(0.5)
            data = asyncio.run(_status())
    except ExecutorError as exc:
        print_error(console, exc)
        raise typer.Exit(5) from None
    workers = Table(title=f"{len(data['workers'])} live worker(s)")
    for col in ("worker", "host", "pid", "pool", "conc.", "heartbeat", "skills"):
        workers.add_column(col, overflow="fold")
    for w in data["workers"]:
        names = [f"[red]{k}[/]" if k in w["failing"] else k for k in w["skills"]]
        age = w["heartbeat_age_s"]
        workers.add_row(
            w["name"] + (" [dim](silent)[/]" if w["remembered"] else ""),
            w["host"],
            str(w["pid"]),
            w["pool"],
            str(w["concurrency"]),
            "-" if age is None else f"{age:.1f}s ago",
            ", ".join(names),
        )
    console.print(workers)
    skills = Table(title="skills")
    for col in ("skill", "state", "workers", "calls", "failures", "latency", "last error"):
        skills.add_column(col, overflow="fold")
    for name, e in data["skills"].items():
        style = _STATE_STYLE.get(e["state"], "white")
        failing = "; ".join(f"{w}: {why}" for w, why in e["failing_on"].items())
        skills.add_row(
            name,
            f"[{style}]{e['state']}[/]",
            str(len(e["workers"])),
            str(e["calls"]),
            str(e["failures"]),
            "-" if e["ewma_ms"] is None else f"{e['ewma_ms']:.1f} ms",
            Text((failing or e["last_error"])[:120]),
        )
    console.print(skills)
    if not data["workers"]:
        console.print(
            Text(
                "no live worker: start one with `orchestra worker --graph GRAPH_FILE` "
                "(e.g. orchestra worker --graph graphs/support_triage.py &), with "
                "ORCHESTRA_BROKER_URL/ORCHESTRA_HEALTH_URL pointing at this Redis "
                f"({_safe_url(fleet_url())})",
                style="yellow",
            ),
            highlight=False,
            soft_wrap=True,
        )
    if json_out:
        json_out.write_text(json.dumps(data, indent=2))
    if len(data["workers"]) < wait:
        print_error(console, f"{len(data['workers'])} of {wait} workers live after {timeout:g}s")
        raise typer.Exit(1)


@fleet_app.command("reset")
def reset_cmd(
    skills: Annotated[
        list[str] | None, typer.Argument(help="Skills to reset (default: all)")
    ] = None,
) -> None:
    """Close the circuits and lift the down marks of skills, fleet-wide."""
    from orchestra.fleet import RedisHealthBoard, fleet_settings

    s = fleet_settings()
    board = RedisHealthBoard(s.health_url)
    console = Console()
    try:
        names = board.reset(skills or None)
    except ExecutorError as exc:
        print_error(console, exc)
        raise typer.Exit(5) from None
    finally:
        board.close()
    console.print(f"reset {len(names)} skill(s): {', '.join(names) or '-'}", highlight=False)


@fleet_app.command("dead")
def dead_cmd(
    limit: Annotated[int, typer.Option(help="How many, newest first")] = 20,
) -> None:
    """Dead letters: steps given up after too many deliveries, lost mid-call, or messages
    a worker could not decode."""
    import redis

    from orchestra.fleet import fleet_settings
    from orchestra.fleet.store import DEAD_LETTERS
    from orchestra.redact import redact_text

    s = fleet_settings()
    console = Console()
    client = redis.Redis.from_url(s.result_backend, decode_responses=True, socket_timeout=5)
    try:
        rows = [json.loads(x) for x in client.lrange(DEAD_LETTERS, 0, limit - 1)]
    except redis.RedisError as exc:
        print_error(console, exc)
        raise typer.Exit(5) from None
    finally:
        client.close()
    table = Table(title=f"dead letters (newest {limit})")
    for col in ("when", "run", "step", "skill", "queue", "deliveries", "reason"):
        table.add_column(col, overflow="fold")
    for d in rows:
        table.add_row(
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d.get("at", 0))),
            str(d.get("run_id", "-")),
            str(d.get("step_id", "-")),
            str(d.get("skill", "-")),
            str(d.get("queue", "-")),
            str(d.get("deliveries", "-")),
            redact_text(str(d.get("reason", "")))[:200],
        )
    console.print(table)
