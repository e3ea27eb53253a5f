"""Runs as a service, with real Redis, real step workers and real driver workers.

``orchestra submit`` / :func:`orchestra.service.asubmit` record a run and queue it; drivers
(``orchestra worker --runs``) place and drive it; watchers stream its decisions; a driver
killed mid-run hands its runs to another; the HTTP API does the same over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from orchestra.bench._procs import free_port
from orchestra.service import RunService, UnknownGraphError
from orchestra.service import store as keys

from .conftest import ROOT, Fleet, Worker, _fleet

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

CHAIN = "tests/fleet/chain_graph.py"
CHARGE = "tests/fleet/charge_graph.py"


def start_driver(
    fleet: Fleet, *args: str, name: str | None = None, env: dict[str, str] | None = None
) -> Worker:
    """Start ``orchestra worker --runs`` (``args``: its graph options); wait for its heartbeat."""
    name = name or f"d{len(fleet.workers) + 1}-{uuid.uuid4().hex[:6]}"
    log = fleet.tmp / f"{name}.log"
    cmd = [sys.executable, "-m", "orchestra", "worker", "--runs", *args, "--name", name]
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*cmd, "--loglevel", "INFO"],
            env={**fleet.env, **(env or {})},
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    w = Worker(name, proc, log)
    fleet.workers.append(w)
    client = redis.Redis.from_url(fleet.env["ORCHESTRA_RESULT_BACKEND"])
    deadline = time.monotonic() + 120
    try:
        while not client.exists(keys.driver_key(name)):
            if proc.poll() is not None:
                pytest.fail(f"driver {name} exited:\n{w.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"driver {name} not up after 120 s:\n{w.output()}")
            time.sleep(0.1)
    finally:
        client.close()
    return w


def chain_input(prefix: str, delay: float = 0.2) -> dict[str, Any]:
    return {f"t{i}": f"{prefix}{i}" for i in range(1, 5)} | {"delay": delay}


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """A step worker (concurrency 4) and one driver of the chain graph."""
    with _fleet(tmp_path_factory.mktemp("service")) as f:
        f.start(1, concurrency=4)
        start_driver(f, "--graph", CHAIN, "--graph", CHARGE, name="driver-main")
        yield f


async def all_events(handle: Any, timeout: float = 120) -> list[Any]:
    """Every event of the run, up to its end (a run that never ends fails the test)."""

    async def collect() -> list[Any]:
        return [ev async for ev in handle.events()]

    return await asyncio.wait_for(collect(), timeout)


def done_count(fleet: Fleet, token: str) -> int:
    return fleet.count("done", "slow_write", token)


class TestSubmit:
    async def test_a_run_is_recorded_before_its_id_returns_and_a_driver_runs_it(
        self, svc: Fleet
    ) -> None:
        async with RunService(svc.settings) as service:
            handle = await service.submit("chain", chain_input("sub"))
            # the record is in the checkpoint store, read by a store of its own
            from orchestra.checkpoint import open_checkpointer

            other = open_checkpointer(svc.env["ORCHESTRA_CHECKPOINT_URL"])
            assert other is not None
            try:
                state = await other.load(handle.run_id)
            finally:
                await other.aclose()
            assert state is not None and state.graph == "chain"
            assert state.input["t1"] == "sub1"
            result = await handle.result(timeout=90)
        assert result.status == "completed"
        assert [result.outputs[f"s{i}"]["token"] for i in range(1, 5)] == [
            f"sub{i}" for i in range(1, 5)
        ]
        assert all(done_count(svc, f"sub{i}") == 1 for i in range(1, 5))

    async def test_an_unregistered_graph_is_refused_naming_the_registered_ones(
        self, svc: Fleet
    ) -> None:
        async with RunService(svc.settings) as service:
            with pytest.raises(UnknownGraphError, match="registered: chain"):
                await service.submit("graphs/refund.py", {})

    async def test_with_a_registry_bad_input_is_refused_before_anything_is_queued(
        self, svc: Fleet
    ) -> None:
        from orchestra.errors import RunInputError
        from orchestra.service import GraphRegistry

        registry = GraphRegistry.from_sources([ROOT / CHAIN])
        async with RunService(svc.settings, registry=registry) as service:
            before = len(await service.list_runs(limit=1000))
            with pytest.raises(RunInputError, match="t2: Field required"):
                await service.submit("chain", {"t1": "x"})
            assert len(await service.list_runs(limit=1000)) == before

    def test_the_command_line_submits_and_waits(self, svc: Fleet) -> None:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "orchestra",
                "submit",
                "chain",
                "--wait",
                "-i",
                json.dumps(chain_input("cli")),
            ],
            env=svc.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        run_id = out.stdout.splitlines()[0].strip()
        assert "COMPLETED" in out.stdout
        listed = subprocess.run(
            [sys.executable, "-m", "orchestra", "runs", "list", "--status", "completed"],
            env={**svc.env, "COLUMNS": "200"},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run_id in listed.stdout


class TestWatch:
    async def test_events_stream_the_decision_log_while_the_run_goes_on(self, svc: Fleet) -> None:
        async with RunService(svc.settings) as service:
            handle = await service.submit("chain", chain_input("watch", delay=0.5))
            seen: list[Any] = []
            status_at_first_decision = None
            async for ev in handle.events():
                seen.append(ev)
                if ev.type == "decision" and status_at_first_decision is None:
                    status_at_first_decision = (await handle.state()).status
            result = await handle.result(timeout=30)
        assert status_at_first_decision in ("queued", "running")  # live, not replayed at the end
        assert [e.type for e in seen][:2] == ["queued", "started"]
        assert seen[-1].type == "end" and seen[-1].status == "completed"
        streamed = [(e.decision.kind, e.decision.step) for e in seen if e.decision is not None]
        assert streamed == [(d.kind, d.step) for d in result.decisions]


class TestCancel:
    async def test_a_cancelled_run_lets_its_in_flight_step_finish_and_starts_no_more(
        self, svc: Fleet
    ) -> None:
        async with RunService(svc.settings) as service:
            handle = await service.submit("chain", chain_input("cx", delay=2.0))
            await svc.await_side("start", "slow_write", "cx2", timeout=60)
            said = await handle.cancel("a human changed their mind")
            assert "cancel requested" in said
            result = await handle.result(timeout=60)
        assert result.status == "cancelled"
        assert result.reason == "a human changed their mind"
        assert result.decisions[-1].kind == "cancel"
        # the step in flight finished on its worker and is recorded; nothing after it ran
        assert result.outputs["s2"]["token"] == "cx2"
        assert done_count(svc, "cx2") == 1
        assert not any(e[2] in ("cx3", "cx4") for e in svc.side())

    async def test_a_charge_cut_short_by_the_cancel_is_named_not_dropped(self, svc: Fleet) -> None:
        async with RunService(svc.settings) as service:
            handle = await service.submit("charge", {"token": "ch1", "delay": 10.0})
            await svc.await_side("start", "slow_charge", "ch1", timeout=60)
            await handle.cancel()
            result = await handle.result(timeout=60)
        assert result.status == "cancelled" and "charge" not in result.outputs
        notes = [d for d in result.decisions if d.kind == "note" and d.step == "charge"]
        assert len(notes) == 1
        assert "slow_charge is not idempotent: whether it took effect is unknown" in notes[0].reason
        assert svc.count("start", "slow_charge", "ch1") == 1  # and it was not run again

    async def test_a_queued_run_nobody_drives_is_cancelled_at_once(self, svc: Fleet) -> None:
        async with RunService(svc.settings) as service:
            # a registered name no live driver serves: the run waits in the queue
            r = service.redis()
            await r.sadd(keys.GRAPHS, "parked")
            handle = await service.submit("parked", {})
            assert (await handle.state()).status == "queued"
            said = await handle.cancel()
            result = await handle.result(timeout=10)
            await r.srem(keys.GRAPHS, "parked")
        assert "before a driver took it" in said
        assert result.status == "cancelled"


class TestTakeover:
    async def test_a_killed_driver_s_run_is_taken_over_without_rerunning_steps(
        self, tmp_path: Path
    ) -> None:
        with _fleet(tmp_path) as fleet:
            fleet.start(1, concurrency=4)
            drivers = [start_driver(fleet, "--graph", CHAIN) for _ in range(2)]
            async with RunService(fleet.settings) as service:
                handle = await service.submit("chain", chain_input("tk", delay=1.0))
                await fleet.await_side("start", "slow_write", "tk2", timeout=60)
                holder = (await service.drivers())[handle.run_id]
                victim = next(d for d in drivers if d.name == holder)
                os.killpg(victim.proc.pid, signal.SIGKILL)
                victim.proc.wait(timeout=10)
                events = await all_events(handle)
                result = await handle.result(timeout=60)
                takeovers = int(await service.redis().get(keys.TAKEOVERS) or 0)
            assert result.status == "completed"
            assert takeovers == 1
            takeover = [e for e in events if e.type == "takeover"]
            assert len(takeover) == 1 and holder in takeover[0].detail
            # every step ran to completion exactly once, the one in flight included
            assert [done_count(fleet, f"tk{i}") for i in range(1, 5)] == [1, 1, 1, 1]
            assert [result.outputs[f"s{i}"]["token"] for i in range(1, 5)] == [
                f"tk{i}" for i in range(1, 5)
            ]

    async def test_a_run_whose_claim_redis_lost_with_its_driver_is_revived_from_its_lease(
        self, tmp_path: Path
    ) -> None:
        with _fleet(tmp_path) as fleet:
            fleet.start(1, concurrency=4)
            first = start_driver(fleet, "--graph", CHAIN)
            async with RunService(fleet.settings) as service:
                handle = await service.submit("chain", chain_input("rv", delay=1.0))
                await fleet.await_side("start", "slow_write", "rv2", timeout=60)
                os.killpg(first.proc.pid, signal.SIGKILL)
                first.proc.wait(timeout=10)
                r = service.redis()
                assert await r.hdel(keys.ACTIVE, handle.run_id) == 1  # Redis lost the claim
                start_driver(fleet, "--graph", CHAIN)
                events = await all_events(handle)
                result = await handle.result(timeout=60)
            assert result.status == "completed"
            revived = [e for e in events if e.type == "takeover"]
            assert len(revived) == 1 and "lease lapsed" in revived[0].detail
            assert [done_count(fleet, f"rv{i}") for i in range(1, 5)] == [1, 1, 1, 1]

    async def test_a_queued_run_whose_message_redis_lost_is_queued_again(
        self, tmp_path: Path
    ) -> None:
        with _fleet(tmp_path) as fleet:
            fleet.start(1, concurrency=4)
            async with RunService(fleet.settings) as service:
                r = service.redis()
                await r.sadd(keys.GRAPHS, "chain")  # known, but no driver is up yet
                handle = await service.submit("chain", chain_input("lost"))
                flush = redis.Redis.from_url(fleet.env["ORCHESTRA_BROKER_URL"])
                try:
                    flush.flushall()  # Redis lost everything: the queued message too
                finally:
                    flush.close()
                assert (await handle.state()).status == "queued"  # the record did not
                start_driver(fleet, "--graph", CHAIN)
                events = await all_events(handle)
                result = await handle.result(timeout=60)
            assert result.status == "completed"
            assert any(e.type == "takeover" and "queued again" in e.detail for e in events)
            assert [done_count(fleet, f"lost{i}") for i in range(1, 5)] == [1, 1, 1, 1]

    async def test_a_driver_told_to_stop_hands_its_run_to_another(self, tmp_path: Path) -> None:
        with _fleet(tmp_path) as fleet:
            fleet.start(1, concurrency=4)
            quick = {"ORCHESTRA_DRAIN_S": "0.5"}
            drivers = [start_driver(fleet, "--graph", CHAIN, env=quick) for _ in range(2)]
            async with RunService(fleet.settings) as service:
                handle = await service.submit("chain", chain_input("ho", delay=1.0))
                await fleet.await_side("start", "slow_write", "ho2", timeout=60)
                holder = (await service.drivers())[handle.run_id]
                leaving = next(d for d in drivers if d.name == holder)
                leaving.proc.send_signal(signal.SIGTERM)
                events = await all_events(handle)
                result = await handle.result(timeout=60)
                assert leaving.proc.wait(timeout=60) == 0
            assert result.status == "completed"
            handed = [e for e in events if e.type == "takeover"]
            assert len(handed) == 1 and "is stopping" in handed[0].detail
            started = [e.detail for e in events if e.type == "started"]
            assert started[0] == holder and len(started) == 2 and started[1] != holder
            assert [done_count(fleet, f"ho{i}") for i in range(1, 5)] == [1, 1, 1, 1]


class TestCapacity:
    async def test_a_graph_at_its_limit_leaves_the_next_run_queued_until_there_is_room(
        self, tmp_path: Path
    ) -> None:
        registry = tmp_path / "graphs.yaml"
        registry.write_text(f"graphs:\n  chain:\n    file: {ROOT / CHAIN}\n    max_runs: 1\n")
        with _fleet(tmp_path) as fleet:
            fleet.start(1, concurrency=4)
            start_driver(fleet, "--registry", str(registry))
            async with RunService(fleet.settings) as service:
                first = await service.submit("chain", chain_input("ca", delay=0.8))
                await fleet.await_side("start", "slow_write", "ca1", timeout=60)
                second = await service.submit("chain", chain_input("cb", delay=0.2))
                await asyncio.sleep(1.0)
                queued = [r.run_id for r in await service.list_runs("queued")]
                assert second.run_id in queued
                a = await first.result(timeout=60)
                b = await second.result(timeout=60)
            assert a.status == b.status == "completed"
            lines = [" ".join(e[:3]) for e in fleet.side()]
            # never two runs of the graph at once: the second started after the first ended
            assert lines.index("start slow_write cb1") > lines.index("done slow_write ca4")


class TestHttpApi:
    @pytest.fixture
    def api(self, svc: Fleet) -> Iterator[str]:
        port = free_port()
        log = svc.tmp / f"api-{port}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "orchestra", "serve-api", "--port", str(port)],
                env=svc.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        import httpx

        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/graphs", timeout=2)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    pytest.fail(f"serve-api did not start:\n{log.read_text()}")
                time.sleep(0.2)
        try:
            yield base
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)

    async def test_submit_watch_result_list_and_cancel_over_http(self, api: str) -> None:
        import httpx

        async with httpx.AsyncClient(base_url=api, timeout=60) as client:
            assert "chain" in (await client.get("/graphs")).json()["graphs"]
            r = await client.post("/runs", json={"graph": "chain", "input": chain_input("api")})
            assert r.status_code == 202
            run_id = r.json()["run_id"]
            kinds: list[str] = []
            async with client.stream("GET", f"/runs/{run_id}/events") as resp:
                assert resp.headers["content-type"].startswith("text/event-stream")
                async for line in resp.aiter_lines():
                    if line.startswith("event: "):
                        kinds.append(line.removeprefix("event: "))
                        if kinds[-1] == "end":
                            break
            assert kinds[0] == "queued" and kinds[-1] == "end" and "decision" in kinds
            # a watcher that reconnects with Last-Event-ID gets only what came after it
            ids: list[str] = []
            async with client.stream("GET", f"/runs/{run_id}/events") as resp:
                async for line in resp.aiter_lines():
                    if line.startswith("id: "):
                        ids.append(line.removeprefix("id: "))
                    if line == "event: end":
                        break
            again: list[str] = []
            headers = {"Last-Event-ID": ids[-2]}
            async with client.stream("GET", f"/runs/{run_id}/events", headers=headers) as resp:
                async for line in resp.aiter_lines():
                    if line.startswith("id: "):
                        again.append(line.removeprefix("id: "))
                    if line == "event: end":
                        break
            assert len(ids) == len(kinds) and again == ids[-1:]
            res = await client.get(f"/runs/{run_id}/result", params={"timeout": 30})
            assert res.status_code == 200
            assert res.json()["status"] == "completed"
            assert res.json()["outputs"]["s4"]["token"] == "api4"
            listed = (await client.get("/runs", params={"status": "completed"})).json()["runs"]
            assert run_id in [x["run_id"] for x in listed]
            got = (await client.get(f"/runs/{run_id}")).json()
            assert got["steps_done"] == ["s1", "s2", "s3", "s4"]
            assert got["decisions"][-1]["kind"] == "complete"
            cancel = await client.post(f"/runs/{run_id}/cancel")
            assert "already ended" in cancel.json()["detail"]
            # the same process serves the web view of the runs, its links under /ui
            page = await client.get("/ui/")
            assert page.status_code == 200 and f'href="/ui/runs/{run_id}"' in page.text
            run_page = await client.get(f"/ui/runs/{run_id}")
            assert run_page.status_code == 200
            assert 'id="decisions"' in run_page.text and "completed" in run_page.text
            assert 'href="/ui/"' in run_page.text

    async def test_errors_name_what_to_fix(self, api: str) -> None:
        import httpx

        async with httpx.AsyncClient(base_url=api, timeout=60) as client:
            r = await client.post("/runs", json={"graph": "tests/fleet/chain_graph.py"})
            assert r.status_code == 404
            assert "no registered graph" in r.json()["error"]
            r = await client.get("/runs/no-such-run")
            assert r.status_code == 404
            r = await client.post("/runs", json={"graph": "chain", "budget": -1})
            assert r.status_code == 422
            # a run still going: result is 408 until it ends
            r = await client.post(
                "/runs", json={"graph": "chain", "input": chain_input("slow", delay=1.0)}
            )
            run_id = r.json()["run_id"]
            early = await client.get(f"/runs/{run_id}/result", params={"timeout": 0.5})
            assert early.status_code == 408
            done = await client.get(f"/runs/{run_id}/result", params={"timeout": 60})
            assert done.json()["status"] == "completed"
