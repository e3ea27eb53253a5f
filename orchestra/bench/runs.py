"""``orchestra bench runs``: many flagship runs submitted as a service, a driver killed mid-way.

In one run, on this machine, the benchmark starts a private ``redis-server``, two step
workers hosting the skills of ``graphs/support_triage.py`` (thread pool) and two driver
workers (``orchestra worker --runs --graph graphs/support_triage.py``), submits ``--runs``
runs at once (:meth:`~orchestra.service.RunService.submit`: recorded, then queued), and once
a third of them have ended SIGKILLs the driver that holds the most runs (its whole process
group).  The surviving driver takes the lost runs over from their checkpoints.

Figures (JSON ``--json OUT``):

* ``runs``, ``completed``: runs submitted, runs that reached their main goal;
* ``ended``: ``{status: count}`` of every run that ended (completed, demoted, escalated);
* ``lost``: runs that did not end within ``--deadline`` seconds of the kill, or ended in no
  state a run may end in;
* ``p50_s``, ``p99_s``: seconds from submit to the run's end (its result written), sampled
  every 0.1 s;
* ``runs_per_min``: ended runs per minute, from the first submit to the last end;
* ``takeovers``: runs a surviving driver took over from the killed one;
* ``duplicate_effects``: non-idempotent calls (refunds, e-mails) the effects journal shows
  done more than once for one step (``effects_done`` in all, ``unknown_effects`` left
  started with no outcome).

The summarizer agent is not hosted (its local model is out of the benchmark's scope), so
its step routes to the extractive ``summarize_text``, as on a machine with no model server.
The checkpoint store is a fresh PostgreSQL database (created next to the local ``test``
database, dropped afterwards) when PostgreSQL answers, else a SQLite file; ``--checkpoint``
names another.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestra.bench._procs import (
    fleet_env,
    fleet_settings,
    kill_group,
    private_redis,
    spawn_worker,
    stop_groups,
    wait_for_keys,
)

__all__ = ["register", "run_runs_bench"]

ROOT = Path(__file__).resolve().parents[2]
FLAGSHIP = ROOT / "graphs" / "support_triage.py"
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
ENDED = ("completed", "demoted", "escalated")

_TICKETS = [
    ("Charged twice for my order", "I was charged twice ($42.50). Please refund the duplicate."),
    ("Refund request", "The blender arrived broken. Please refund $89.99 to my card."),
    ("Wrong size", "Please refund $19.00 for the shirt, it does not fit."),
    ("Cancelled order", "I cancelled order 5512 but was charged $250. Refund it please."),
]


@contextlib.contextmanager
def _private_database(url: str) -> Iterator[str | None]:
    """A fresh PostgreSQL database next to ``url``'s (dropped afterwards); None if none answers."""
    try:
        import psycopg

        admin = psycopg.connect(url, connect_timeout=2, autocommit=True)
    except Exception:
        yield None
        return
    name = f"orchestra_bench_runs_{uuid.uuid4().hex[:8]}"
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield url.rsplit("/", 1)[0] + "/" + name
        finally:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        admin.close()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _drive(
    settings: Any,
    runs: int,
    drivers: dict[str, subprocess.Popen[bytes]],
    deadline_s: float,
    kill_at: float,
) -> dict[str, Any]:
    from orchestra.service import RunService
    from orchestra.service import store as keys

    async with RunService(settings) as svc:
        r = svc.redis()
        submitted: dict[str, float] = {}

        async def one(i: int) -> None:
            subject, body = _TICKETS[i % len(_TICKETS)]
            data = {
                "ticket_id": f"T-{i}",
                "customer_id": f"C-{1001 + i % 3}",
                "subject": subject,
                "body": body,
            }
            t = time.monotonic()
            h = await svc.submit("support-triage", data)
            submitted[h.run_id] = t

        t0 = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(runs)))
        submit_s = time.monotonic() - t0
        ended: dict[str, tuple[float, str]] = {}
        reasons: dict[str, int] = {}
        killed: str | None = None
        killed_at: float | None = None
        held_by_victim = 0
        pending = list(submitted)
        while pending:
            raws = await r.mget([keys.result_key(x) for x in pending])
            now = time.monotonic()
            for run_id, raw in zip(pending, raws, strict=True):
                if raw:
                    res = json.loads(raw)
                    ended[run_id] = (now, res["status"])
                    if res["status"] != "completed":
                        why = str(res.get("reason", ""))[:160]
                        reasons[why] = reasons.get(why, 0) + 1
            pending = [x for x in pending if x not in ended]
            if killed is None and len(ended) >= kill_at * runs:
                active = await svc.drivers()
                counts = {n: sum(1 for d in active.values() if d == n) for n in drivers}
                killed = max(counts, key=lambda n: counts[n])
                held_by_victim = counts[killed]
                kill_group(drivers[killed])
                killed_at = now
            if killed_at is not None and now - killed_at > deadline_s:
                break
            await asyncio.sleep(0.1)
        takeovers = int(await r.get(keys.TAKEOVERS) or 0)
        statuses: dict[str, int] = {}
        for _, status in ended.values():
            statuses[status] = statuses.get(status, 0) + 1
        lat = [end - submitted[x] for x, (end, _) in ended.items()]
        last = max((e for e, _ in ended.values()), default=t0)
        return {
            "runs": runs,
            "completed": statuses.get("completed", 0),
            "lost": runs - sum(statuses.get(s, 0) for s in ENDED),
            "p50_s": round(statistics.median(lat), 3) if lat else None,
            "p99_s": round(_pct(lat, 0.99), 3) if lat else None,
            "runs_per_min": round(len(ended) / max(last - t0, 1e-9) * 60, 1),
            "takeovers": takeovers,
            "ended": statuses,
            "killed_driver": killed,
            "runs_held_by_killed_driver": held_by_victim,
            "submit_s": round(submit_s, 3),
            "unended": pending,
            "not_completed_reasons": reasons,
        }


def _effects(url: str) -> dict[str, int]:
    """What the effects journal says of the non-idempotent calls (refunds, e-mails)."""
    from orchestra.durable import durable_store

    with durable_store(url).transaction() as cur:
        done = cur.execute(
            "SELECT run_id, step_id, COUNT(*) FROM orchestra_effects WHERE state = 'done' "
            "GROUP BY run_id, step_id"
        ).fetchall()
        unknown = cur.execute(
            "SELECT COUNT(*) FROM orchestra_effects WHERE state = 'started'"
        ).fetchone()
    return {
        "effects_done": sum(int(r[2]) for r in done),
        "duplicate_effects": sum(int(r[2]) - 1 for r in done if int(r[2]) > 1),
        "unknown_effects": int(unknown[0]) if unknown else 0,
    }


def run_runs_bench(
    *,
    runs: int = 100,
    kill_at: float = 1 / 3,
    checkpoint: str | None = None,
    deadline_s: float = 600.0,
    step_concurrency: int = 16,
) -> dict[str, Any]:
    """Start Redis and the workers, submit, kill a driver, wait; returns the figures."""
    from orchestra.fleet.health import worker_key
    from orchestra.loaders import load_graph
    from orchestra.service.store import driver_key

    graph = load_graph(FLAGSHIP)
    hosted = [n for n in graph.skills if not n.startswith("agent.")]
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="orchestra-bench-runs-")))
        base = stack.enter_context(private_redis())
        if checkpoint is None:
            checkpoint = stack.enter_context(_private_database(POSTGRES))
        if checkpoint is None:
            checkpoint = f"sqlite:///{tmp}/runs.sqlite"
        env = fleet_env(
            base,
            checkpoint,
            {
                "ORCHESTRA_VISIBILITY_TIMEOUT_S": "30",
                "ORCHESTRA_RUNS_CONCURRENCY": str(runs),
                "ORCHESTRA_LOCAL_MODEL_URL": "http://127.0.0.1:9/v1",  # no model server
                "ORCHESTRA_LOG_LEVEL": "WARNING",
            },
        )
        procs: list[tuple[subprocess.Popen[bytes], Path]] = []
        stack.callback(lambda: stop_groups((p for p, _ in procs), grace_s=40))

        def spawn(name: str, args: list[str]) -> subprocess.Popen[bytes]:
            log = tmp / f"{name}.log"
            p = spawn_worker([*args, "--name", name], env, log, cwd=ROOT)
            procs.append((p, log))
            return p

        tag = uuid.uuid4().hex[:6]
        step_names = [f"bench-steps-{i}-{tag}" for i in range(2)]
        for name in step_names:
            spawn(name, [
                "--graph", str(FLAGSHIP), "--queues", ",".join(hosted),
                "--pool", "threads", "--concurrency", str(step_concurrency),
            ])  # fmt: skip
        driver_names = [f"bench-driver-{i}-{tag}" for i in range(2)]
        drivers = {n: spawn(n, ["--runs", "--graph", str(FLAGSHIP)]) for n in driver_names}
        wait_for_keys(
            env["ORCHESTRA_HEALTH_URL"], [worker_key(n) for n in step_names], procs, timeout_s=240
        )
        wait_for_keys(
            env["ORCHESTRA_RESULT_BACKEND"],
            [driver_key(n) for n in driver_names],
            procs,
            timeout_s=240,
        )
        settings = fleet_settings(env, visibility_timeout_s=30)
        figures = asyncio.run(_drive(settings, runs, drivers, deadline_s, kill_at))
        figures.update(_effects(checkpoint))
    figures.update(
        {
            "drivers": 2,
            "step_workers": 2,
            "step_concurrency": step_concurrency,
            "checkpoint": checkpoint.split("://", 1)[0],
            "cpus": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
    )
    return figures


def register(app: typer.Typer) -> None:
    @app.command("runs")
    def runs_bench(
        runs: Annotated[int, typer.Option(help="Flagship runs submitted at once")] = 100,
        json_out: Annotated[
            Path | None, typer.Option("--json", help="Write the figures as JSON here")
        ] = None,
        checkpoint: Annotated[
            str | None,
            typer.Option(help="Checkpoint URL (default: local PostgreSQL, else SQLite)"),
        ] = None,
    ) -> None:
        """N flagship runs as a service on two drivers; one driver SIGKILLed mid-way."""
        from rich.console import Console
        from rich.table import Table

        console = Console()
        with console.status(f"{runs} runs on two drivers, one killed mid-way…"):
            r = run_runs_bench(runs=runs, checkpoint=checkpoint)
        table = Table(
            title=f"runs as a service: {r['runs']} flagship runs, 2 drivers (one killed), "
            f"2 step workers ({r['cpus']} CPUs, load {r['load_avg_1m']})"
        )
        table.add_column("measure")
        table.add_column("value", justify="right")
        for key in ("runs", "completed", "lost", "takeovers", "p50_s", "p99_s", "runs_per_min",
                    "duplicate_effects"):  # fmt: skip
            table.add_row(key, str(r[key]))
        table.add_row("ended", ", ".join(f"{k} {v}" for k, v in sorted(r["ended"].items())))
        table.add_row("killed driver held", f"{r['runs_held_by_killed_driver']} runs")
        console.print(table)
        if json_out:
            json_out.write_text(json.dumps(r, indent=2))
        if r["lost"]:
            raise typer.Exit(1)
