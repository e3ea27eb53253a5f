"""Fleet-wide health: a skill nobody serves, or failing everywhere, is avoided before dispatch."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis

from orchestra import Graph
from orchestra.fleet import FleetView, fleet_runner, queue_for
from orchestra.results import RunResult

from .conftest import Fleet, load_test_skills

pytestmark = [pytest.mark.fleet]

SK: dict[str, Any] = load_test_skills()


def service_graph() -> Graph:
    g = Graph("service")
    g.step("serve", [SK["svc_a"], SK["svc_b"]], inputs={"token": "$input.token"})
    return g


async def run(fleet: Fleet, token: str) -> RunResult:
    runner = fleet_runner(fleet.settings)
    try:
        return await runner.run(service_graph(), {"token": token})
    finally:
        await runner.executor.aclose()


def queued(fleet: Fleet, skill: str) -> int:
    client = redis.Redis.from_url(fleet.env["ORCHESTRA_BROKER_URL"])
    try:
        return int(client.llen(queue_for(skill)))
    finally:
        client.close()


def heartbeat_ttl_ms(fleet: Fleet, worker: str) -> int:
    """Milliseconds left on ``worker``'s heartbeat key: 0 when it is already gone, and
    ``-1`` when it never expires."""
    client = redis.Redis.from_url(fleet.env["ORCHESTRA_HEALTH_URL"])
    try:
        left = int(client.pttl(f"orchestra:worker:{worker}"))
        return 0 if left == -2 else left
    finally:
        client.close()


def assert_routed_around(fleet: Fleet, result: RunResult, token: str, why: str) -> None:
    assert result.status == "completed"
    assert result.path == ["svc_b"]
    assert not [d for d in result.decisions if d.kind == "execute" and d.skill == "svc_a"]
    (reroute,) = [d for d in result.decisions if d.kind == "reroute"]
    assert why in reroute.reason
    assert fleet.count("start", "svc_a", token) == 0, "svc_a was called"
    assert queued(fleet, "svc_a") == 0, "a task was sent to svc_a's queue"


class TestNoLiveWorker:
    async def test_stopping_every_worker_of_a_skill_routes_around_it_before_dispatch(
        self, fleet: Fleet
    ):
        """Stopped cleanly (SIGTERM) or killed (SIGKILL, then silent past the heartbeat
        TTL): the next run never sends a task to the skill's queue."""
        (wa,) = fleet.start(queues="svc_a")
        fleet.start(queues="svc_b")
        first = await run(fleet, "t1")
        assert first.path == ["svc_a"]  # the cheaper skill while it has a worker

        fleet.stop(wa)
        await asyncio.to_thread(fleet.wait_gone, {wa.name}, 60)
        second = await run(fleet, "t2")
        assert_routed_around(fleet, second, "t2", "no live worker serves svc_a")

        (wa2,) = fleet.start(queues="svc_a")
        third = await run(fleet, "t3")
        assert third.path == ["svc_a"]
        fleet.kill_group(wa2)
        # a silent worker counts as dead once its heartbeat's TTL runs out: no one renews it
        ttl_ms = heartbeat_ttl_ms(fleet, wa2.name)
        assert 0 <= ttl_ms <= float(fleet.env["ORCHESTRA_HEARTBEAT_TTL_S"]) * 1000, ttl_ms
        await asyncio.to_thread(fleet.wait_gone, {wa2.name}, 60)
        fourth = await run(fleet, "t4")
        assert_routed_around(fleet, fourth, "t4", "no live worker serves svc_a")


class TestFailingEverywhere:
    async def test_a_skill_whose_probe_fails_on_every_worker_is_avoided_until_it_passes(
        self, fleet: Fleet
    ):
        """svc_a's probe runs on the workers; when it fails on all of them the driver routes
        around svc_a without calling it, and goes back once the probe passes."""
        fleet.start(2)
        flag = fleet.tmp / "svc_a.down"
        flag.write_text("down")
        view = FleetView(fleet.env["ORCHESTRA_HEALTH_URL"])
        try:
            deadline = time.monotonic() + 60
            while True:
                workers = await view.workers(fresh=True)
                if len(workers) == 2 and all("svc_a" in w.failing for w in workers):
                    break
                assert time.monotonic() < deadline, "probes never reported svc_a failing"
                await asyncio.sleep(0.1)
            result = await run(fleet, "p1")
            assert_routed_around(fleet, result, "p1", "svc_a failing on every worker")

            flag.unlink()
            deadline = time.monotonic() + 60
            while any("svc_a" in w.failing for w in await view.workers(fresh=True)):
                assert time.monotonic() < deadline, "probes never reported svc_a back"
                await asyncio.sleep(0.1)
        finally:
            await view.aclose()
        back = await run(fleet, "p2")
        assert back.path == ["svc_a"]
