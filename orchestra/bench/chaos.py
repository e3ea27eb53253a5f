"""``orchestra bench chaos``: side effects happen at most once, whatever crashes.

The benchmark starts its own ``redis-server`` on a private port and two ``orchestra
worker`` processes hosting this file's skills (``chaos_write``, idempotent; ``chaos_charge``
and ``chaos_alt_charge``, not idempotent), with a SQLite checkpoint store in a temporary
folder.  Each trial injects every fault once:

==========================  ===============================================================
fault                       what happens
==========================  ===============================================================
kill_pool_idempotent        SIGKILL the pool process running an idempotent step
kill_pool_charge            SIGKILL the pool process running a charge with no alternative
kill_pool_charge_alt        the same, with an alternative charge on the step
redis_restart               restart Redis (no persistence: everything in it is lost) while a
                            charge runs; a run that stops is resumed
driver_kill                 SIGKILL the driver (``orchestra run``) while a charge runs, then
                            ``orchestra run --resume``
driver_kill_double_resume   the same, with two ``--resume`` started at once
garbage                     push undecodable messages onto a skill's queue, then run a step
==========================  ===============================================================

Every skill writes ``start``/``done`` lines to its own log, and the figures come from that
log, not from what the runs say: ``duplicate_effects`` (a step whose effect completed more
than once, over all its candidates), ``lost_steps`` (an effect completed but its run
neither records the step nor names it as an unknown outcome for a human),
``false_done`` (a run records a step done that its tool never completed),
``worker_deaths`` (a worker process that exited on its own), and how the runs ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import BaseModel

from orchestra.bench._procs import (
    RedisServer,
    fleet_env,
    fleet_settings,
    kill_group,
    spawn_worker,
)
from orchestra.skills import skill

if TYPE_CHECKING:
    from orchestra.graph import Graph

__all__ = ["FAULTS", "graph", "register", "run_chaos_bench"]

FAULTS = (
    "kill_pool_idempotent",
    "kill_pool_charge",
    "kill_pool_charge_alt",
    "redis_restart",
    "driver_kill",
    "driver_kill_double_resume",
    "garbage",
)

_LOG_ENV = "ORCHESTRA_CHAOS_LOG"
_CHARGES = ("chaos_charge", "chaos_alt_charge")


class Effect(BaseModel):
    """What a chaos tool did."""

    token: str
    skill: str
    pid: int


def _side(line: str) -> None:
    path = os.environ.get(_LOG_ENV)
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


async def _effect(name: str, token: str, delay: float) -> Effect:
    pid = os.getpid()
    _side(f"start {name} {token} {pid}")
    if delay:
        await asyncio.sleep(delay)
    _side(f"done {name} {token} {pid}")
    return Effect(token=token, skill=name, pid=pid)


@skill(cost=0.001, latency_ms=1000, capability="chaos.write", timeout_s=4)
async def chaos_write(token: str, delay: float = 0.0) -> Effect:
    """Write a record (idempotent: a second write of the same token changes nothing)."""
    return await _effect("chaos_write", token, delay)


@skill(cost=0.001, latency_ms=2000, capability="chaos.charge", timeout_s=4, idempotent=False)
async def chaos_charge(token: str, delay: float = 0.0) -> Effect:
    """Charge a card (not idempotent)."""
    return await _effect("chaos_charge", token, delay)


@skill(cost=0.01, latency_ms=2000, capability="chaos.charge", timeout_s=4, idempotent=False)
async def chaos_alt_charge(token: str, delay: float = 0.0) -> Effect:
    """Charge through the dearer provider (not idempotent)."""
    return await _effect("chaos_alt_charge", token, delay)


def _io(token: str) -> dict[str, str]:
    return {"token": f"$input.{token}", "delay": "$input.delay"}


def one_step(*skills: Any, name: str = "chaos_one") -> Graph:
    from orchestra.graph import Graph

    g = Graph(name)
    g.step("s", list(skills), inputs=_io("t1"))
    return g


def chain() -> Graph:
    """write → charge (or the alternative) → write: the graph the driver-kill faults run."""
    from orchestra.graph import Graph

    g = Graph("chaos_chain")
    g.step("s1", [chaos_write], inputs=_io("t1"))
    g.step("s2", [chaos_charge, chaos_alt_charge], after="s1", inputs=_io("t2"))
    g.step("s3", [chaos_write], after="s2", inputs=_io("t3"))
    return g


graph = chain()  # `orchestra run orchestra/bench/chaos.py` runs the chain


# ----------------------------------------------------------------------------- the fleet


_FAST = {
    "ORCHESTRA_VISIBILITY_TIMEOUT_S": "8",
    "ORCHESTRA_RESTORE_INTERVAL_S": "1",
    "ORCHESTRA_HEARTBEAT_S": "0.5",
    "ORCHESTRA_HEARTBEAT_TTL_S": "3",
    "ORCHESTRA_MAX_REDELIVERIES": "2",
    "ORCHESTRA_QUEUE_WAIT_S": "10",
    "ORCHESTRA_UNREACHABLE_S": "15",
}


@dataclass
class _Worker:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class _Fleet:
    tmp: Path
    redis: RedisServer
    env: dict[str, str]
    side_log: Path
    workers: list[_Worker] = field(default_factory=list)
    deaths: int = 0

    def settings(self) -> Any:
        return fleet_settings(
            self.env, **{k.removeprefix("ORCHESTRA_").lower(): v for k, v in _FAST.items()}
        )

    # workers
    def start_worker(self) -> _Worker:
        name = f"chaos-{len(self.workers) + 1}-{uuid.uuid4().hex[:6]}"
        log = self.tmp / f"{name}.log"
        args = ["--skills", __file__, "--name", name, "--concurrency", "2", "--loglevel", "INFO"]
        w = _Worker(name, spawn_worker(args, self.env, log), log)
        self.workers.append(w)
        return w

    def live(self) -> set[str]:
        import redis

        client = redis.Redis.from_url(self.env["ORCHESTRA_HEALTH_URL"], decode_responses=True)
        try:
            names = [str(n) for n in client.smembers("orchestra:workers")]
            return {n for n in names if client.exists(f"orchestra:worker:{n}")}
        except redis.RedisError:
            return set()
        finally:
            client.close()

    def wait_live(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            running = [w for w in self.workers if w.proc.poll() is None]
            if {w.name for w in running} <= self.live():
                return
            if time.monotonic() > deadline:
                raise RuntimeError("chaos workers did not come up")
            time.sleep(0.1)

    def check_workers(self) -> None:
        """Count workers that exited on their own (or logged an unrecoverable error);
        replace them so that the next trial has two."""
        for w in list(self.workers):
            died = w.proc.poll() is not None
            text = w.log.read_text(errors="replace") if w.log.exists() else ""
            if died or "Unrecoverable error" in text:
                self.deaths += 1
                self.workers.remove(w)
                kill_group(w.proc)
                self.start_worker()
        self.wait_live()

    def close(self) -> None:
        for w in self.workers:
            kill_group(w.proc)
        self.redis.stop()

    # the tools' own log
    def side(self) -> list[list[str]]:
        if not self.side_log.exists():
            return []
        return [ln.split() for ln in self.side_log.read_text().splitlines() if ln]

    async def started(self, skills: tuple[str, ...], token: str, timeout: float = 60) -> int:
        """The pid of the process that started one of ``skills`` for ``token``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.side():
                if e[0] == "start" and e[1] in skills and e[2] == token:
                    return int(e[3])
            await asyncio.sleep(0.02)
        raise RuntimeError(f"{' or '.join(skills)} never started for {token}")


@contextlib.contextmanager
def _fleet() -> Iterator[_Fleet]:
    with tempfile.TemporaryDirectory(prefix="orchestra-chaos-") as tmp_s:
        tmp = Path(tmp_s)
        server = RedisServer(workdir=tmp, missing="bench chaos needs redis-server on PATH")
        env = fleet_env(
            server.url, f"sqlite:///{tmp}/runs.sqlite", {**_FAST, _LOG_ENV: str(tmp / "side.log")}
        )
        f = _Fleet(tmp, server, env, tmp / "side.log")
        try:
            server.start()
            f.start_worker()
            f.start_worker()
            f.wait_live()
            yield f
        finally:
            f.close()


# ----------------------------------------------------------------------------- faults


@dataclass
class _Outcome:
    run_id: str
    tokens: dict[str, str]  # step -> token
    status: str


async def _run(f: _Fleet, g: Graph, data: dict[str, Any], run_id: str) -> str:
    """Run ``g`` in this process on the fleet; resume once if the fleet failed under it."""
    from orchestra.errors import ExecutorError
    from orchestra.fleet import fleet_runner

    for attempt in range(3):
        runner = fleet_runner(f.settings())
        try:
            if attempt == 0:
                result = await asyncio.wait_for(runner.run(g, data, run_id=run_id), 180)
            else:
                result = await asyncio.wait_for(runner.resume_run(g, run_id), 180)
            return str(result.status)
        except ExecutorError:
            await asyncio.sleep(1.0)
            continue
        finally:
            await runner.executor.aclose()
            if runner.checkpointer is not None:
                await runner.checkpointer.aclose()
    return "failed"


def _cli(f: _Fleet, *args: str) -> subprocess.Popen[str]:
    log = f.tmp / f"driver-{uuid.uuid4().hex[:8]}.log"
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "orchestra", "run", *args, "-q"],
            env=f.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )


async def _fault(f: _Fleet, fault: str, trial: int) -> _Outcome:
    rid = f"{fault[:12]}-{trial}-{uuid.uuid4().hex[:6]}"
    tokens = {"s": f"{rid}-t1"}
    data: dict[str, Any] = {"t1": tokens["s"], "delay": 1.0}
    if fault in ("kill_pool_idempotent", "kill_pool_charge", "kill_pool_charge_alt"):
        skills = {
            "kill_pool_idempotent": (chaos_write,),
            "kill_pool_charge": (chaos_charge,),
            "kill_pool_charge_alt": (chaos_charge, chaos_alt_charge),
        }[fault]
        task = asyncio.ensure_future(_run(f, one_step(*skills), data, rid))
        pid = await f.started(tuple(k.name for k in skills), tokens["s"])
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        return _Outcome(rid, tokens, await task)
    if fault == "redis_restart":
        data["delay"] = 2.0
        task = asyncio.ensure_future(_run(f, one_step(chaos_charge, chaos_alt_charge), data, rid))
        # Redis goes down while the charge runs and comes back (empty) only after the charge
        # finished: its reply and its stored outcome are lost with it
        await f.started(_CHARGES, tokens["s"])
        await asyncio.to_thread(f.redis.stop)
        deadline = time.monotonic() + 30
        while not any(e[0] == "done" and e[2] == tokens["s"] for e in f.side()):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(f.redis.start)
        return _Outcome(rid, tokens, await task)
    if fault == "garbage":
        import redis

        client = redis.Redis.from_url(f.env["ORCHESTRA_BROKER_URL"])
        queue = "orchestra.skill.chaos_write"
        client.lpush(queue, "not json")
        client.lpush(queue, json.dumps({"body": "!!!", "properties": {
            "body_encoding": "base64", "delivery_tag": rid}, "headers": {"id": rid}}))  # fmt: skip
        client.lpush(queue, "\x00" * 5000)
        client.close()
        data["delay"] = 0.0
        return _Outcome(rid, tokens, await _run(f, one_step(chaos_write), data, rid))
    # the driver is killed while the charge of step s2 runs
    tokens = {"s1": f"{rid}-t1", "s2": f"{rid}-t2", "s3": f"{rid}-t3"}
    data = {"t1": tokens["s1"], "t2": tokens["s2"], "t3": tokens["s3"], "delay": 1.0}
    driver = _cli(f, __file__, "--fleet", "--run-id", rid, "-i", json.dumps(data))
    try:
        await f.started(_CHARGES, tokens["s2"], timeout=120)
    finally:
        driver.kill()
        driver.wait(timeout=10)
    resumes = [_cli(f, "--resume", rid)]
    if fault == "driver_kill_double_resume":
        resumes.append(_cli(f, "--resume", rid))
    for p in resumes:
        await asyncio.to_thread(p.wait, 240)
    state = await _state(f, rid)
    return _Outcome(rid, tokens, state.status if state is not None else "failed")


async def _state(f: _Fleet, run_id: str) -> Any:
    from orchestra.checkpoint import open_checkpointer

    store = open_checkpointer(f.env["ORCHESTRA_CHECKPOINT_URL"])
    assert store is not None
    try:
        return await store.load(run_id)
    finally:
        await store.aclose()


async def _judge(f: _Fleet, out: _Outcome) -> dict[str, int]:
    """Hold the run to the tools' own log."""
    state = await _state(f, out.run_id)
    side = f.side()
    figures = {"duplicate_effects": 0, "lost_steps": 0, "false_done": 0}
    for step, token in out.tokens.items():
        done = [e for e in side if e[0] == "done" and e[2] == token]
        figures["duplicate_effects"] += max(0, len(done) - 1)
        rec = state.completed.get(step) if state is not None else None
        unknown = state is not None and step in state.unknown
        if rec is not None and rec.worker != "human":
            if not any(e[1] == rec.skill for e in done):
                figures["false_done"] += 1
        elif done and not unknown:
            figures["lost_steps"] += 1
    return figures


async def _bench(
    trials: int, on_trial: Any = None, only: tuple[str, ...] = (), keep: Path | None = None
) -> dict[str, Any]:
    total = {"duplicate_effects": 0, "lost_steps": 0, "false_done": 0}
    runs = {"completed": 0, "escalated": 0, "demoted": 0}
    per_fault: dict[str, dict[str, Any]] = {
        k: {"trials": 0, "duplicate_effects": 0, "lost_steps": 0, "false_done": 0,
            "worker_deaths": 0, "runs": {"completed": 0, "escalated": 0, "demoted": 0,
                                         "failed": 0}}
        for k in FAULTS
    }  # fmt: skip
    with _fleet() as f:
        for trial in range(trials):
            for fault in FAULTS:
                before = f.deaths
                if only and fault not in only:
                    continue
                t0 = time.monotonic()
                try:
                    out = await _fault(f, fault, trial)
                except RuntimeError as exc:  # the fault could not be injected: say so
                    out = _Outcome("", {}, "failed")
                    if on_trial is not None:
                        on_trial(trial, fault, f"failed: {exc}", {})
                    await asyncio.to_thread(f.check_workers)
                    per_fault[fault]["runs"]["failed"] += 1
                    continue
                await asyncio.sleep(0.5)
                await asyncio.to_thread(f.check_workers)
                figures = await _judge(f, out)
                pf = per_fault[fault]
                pf["trials"] += 1
                pf["worker_deaths"] += f.deaths - before
                for k, v in figures.items():
                    pf[k] += v
                    total[k] += v
                pf["runs"][out.status if out.status in pf["runs"] else "failed"] += 1
                if out.status in runs:
                    runs[out.status] += 1
                if on_trial is not None:
                    on_trial(trial, fault, f"{out.status} ({time.monotonic() - t0:.0f} s)", figures)
        deaths = f.deaths
        if keep is not None:
            import shutil

            keep.mkdir(parents=True, exist_ok=True)
            for p in f.tmp.glob("*.log"):
                shutil.copy(p, keep / p.name)
    return {
        "trials": trials,
        "duplicate_effects": total["duplicate_effects"],
        "lost_steps": total["lost_steps"],
        "false_done": total["false_done"],
        "worker_deaths": deaths,
        "runs": runs,
        "per_fault": per_fault,
    }


def run_chaos_bench(
    trials: int = 3, on_trial: Any = None, only: tuple[str, ...] = (), keep: Path | None = None
) -> dict[str, Any]:
    """Run the benchmark (see the module doc); returns the JSON figures.  ``only`` limits
    it to some faults; ``keep`` copies the logs (tools, workers, drivers) there."""
    return asyncio.run(_bench(trials, on_trial, only, keep))


def register(app: typer.Typer) -> None:
    @app.command("chaos")
    def chaos_bench(
        trials: Annotated[
            int, typer.Option("--trials", min=1, help="Trials (every fault once each)")
        ] = 3,
        json_out: Annotated[
            Path | None, typer.Option("--json", help="Write the figures as JSON here")
        ] = None,
        only: Annotated[
            list[str], typer.Option("--only", help="Inject only this fault (repeatable)")
        ] = [],  # noqa: B006
        keep_logs: Annotated[
            Path | None, typer.Option("--keep-logs", help="Copy every log here at the end")
        ] = None,
    ) -> None:
        """Kill pool processes, Redis and drivers mid-step; push garbage; count side effects."""
        from rich.console import Console
        from rich.table import Table

        console = Console()

        def progress(trial: int, fault: str, status: str, figures: dict[str, int]) -> None:
            bad = {k: v for k, v in figures.items() if v}
            console.print(
                f"[dim]trial {trial + 1}/{trials}[/] {fault:<26} {status:<16}"
                + (f" [red]{bad}[/]" if bad else ""),
                highlight=False,
            )

        unknown = sorted(set(only) - set(FAULTS))
        if unknown:
            raise typer.BadParameter(f"no fault {unknown[0]!r} (faults: {', '.join(FAULTS)})")
        r = run_chaos_bench(trials, progress, tuple(only), keep_logs)
        table = Table(
            title=f"chaos: {r['trials']} trials, two workers (dupl. = duplicate effects, "
            f"false = false done)"
        )
        table.add_column("fault")
        for col in ("runs", "compl.", "escal.", "dupl.", "lost", "false", "deaths"):
            table.add_column(col, justify="right")
        for name, pf in r["per_fault"].items():
            if not pf["trials"]:
                continue
            table.add_row(name, str(pf["trials"]), str(pf["runs"]["completed"]),
                          str(pf["runs"]["escalated"]), str(pf["duplicate_effects"]),
                          str(pf["lost_steps"]), str(pf["false_done"]),
                          str(pf["worker_deaths"]))  # fmt: skip
        table.add_row("all", str(sum(r["runs"].values())), str(r["runs"]["completed"]),
                      str(r["runs"]["escalated"]), str(r["duplicate_effects"]),
                      str(r["lost_steps"]), str(r["false_done"]), str(r["worker_deaths"]),
                      style="bold")  # fmt: skip
        console.print(table)
        if json_out:
            json_out.write_text(json.dumps(r, indent=2))
        bad = r["duplicate_effects"] + r["lost_steps"] + r["false_done"] + r["worker_deaths"]
        raise typer.Exit(1 if bad else 0)
