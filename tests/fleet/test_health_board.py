"""The fleet's health board in Redis: what a driver records from its event loop reaches
Redis (batched, without blocking the loop), the latest record wins, and a record not yet
written is never read back over by the older one in Redis."""

from __future__ import annotations

import asyncio

import redis

from orchestra.fleet import RedisHealthBoard
from orchestra.fleet.health import HEALTH
from orchestra.monitors.health import SkillHealth

from .conftest import Fleet


def _stored(url: str, skill: str) -> SkillHealth | None:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        raw = client.hget(HEALTH, skill)
    finally:
        client.close()
    return SkillHealth.model_validate_json(raw) if raw else None


async def test_records_put_in_an_event_loop_reach_redis_latest_last(fleet: Fleet) -> None:
    """A thousand successes and a failure recorded from a driver's loop: Redis ends with the
    latest record of each skill (calls counted, the failing skill's circuit open), and
    another driver's board reads them."""
    url = fleet.env["ORCHESTRA_HEALTH_URL"]
    board = RedisHealthBoard(url)
    for i in range(1000):
        board.record_success("fast", 1.0)
        if i % 100 == 0:
            await asyncio.sleep(0)
    board.record_failure("broken", "ConnectionError: down")
    assert board.get("fast").calls == 1000  # the copy in process is not clobbered meanwhile
    for _ in range(100):
        await asyncio.sleep(0.02)
        fast = _stored(url, "fast")
        if fast is not None and fast.calls == 1000 and _stored(url, "broken") is not None:
            break
    fast, broken = _stored(url, "fast"), _stored(url, "broken")
    assert fast is not None and fast.calls == 1000
    assert broken is not None and broken.open
    other = RedisHealthBoard(url)
    assert other.status("broken") == "open" and other.get("fast").calls == 1000
    board.close()
    other.close()


def test_what_is_left_when_the_loop_ends_is_written(fleet: Fleet) -> None:
    """A record put just before the event loop ends is written all the same."""
    url = fleet.env["ORCHESTRA_HEALTH_URL"]
    board = RedisHealthBoard(url)

    async def run() -> None:
        board.record_failure("late", "TimeoutError")

    asyncio.run(run())
    late = _stored(url, "late")
    assert late is not None and late.open and late.failures == 1
    board.close()


def test_outside_an_event_loop_a_write_is_immediate(fleet: Fleet) -> None:
    """Without a running loop (a worker's probe thread, the CLI), a put is written at once."""
    url = fleet.env["ORCHESTRA_HEALTH_URL"]
    board = RedisHealthBoard(url)
    board.mark_down("probe", "no route to host")
    stored = _stored(url, "probe")
    assert stored is not None and stored.down and stored.down_reason == "no route to host"
    board.close()


async def test_a_record_not_written_yet_is_not_read_over_by_a_snapshot(fleet: Fleet) -> None:
    """A circuit opened from the loop and read back at once with other skills (one snapshot
    that goes to Redis for the others) stays open: the older record in Redis does not win."""
    url = fleet.env["ORCHESTRA_HEALTH_URL"]
    board = RedisHealthBoard(url)
    board.record_success("flaky", 1.0)
    await asyncio.sleep(0.2)  # written: Redis has it closed
    board.record_failure("flaky", "ConnectionError: down")  # open, not written yet
    seen = board.snapshot(["flaky", "never_read"])
    assert seen["flaky"].open and board.status("flaky") == "open"
    board.close()
