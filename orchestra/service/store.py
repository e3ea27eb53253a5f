"""What the run service keeps in Redis (the result backend's database), under ``orchestra:runs:``.

The durable record of a run is its checkpoint (the checkpoint store); Redis holds what makes
the service live, and all of it can be rebuilt or lost without losing a run::

    orchestra:runs:events:<run>     stream  the run's events (decisions, status), for watchers
    orchestra:runs:result:<run>     str     the RunResult JSON once the run ended
    orchestra:runs:cancel:<run>     str     a cancel request (its reason)
    orchestra:runs:active           hash    run -> {"driver", "graph", "since"}: who drives it
    orchestra:runs:driver:<name>    str     a driver's heartbeat (expires: the driver is gone)
    orchestra:runs:graphs           set     graph names some driver has registered
    orchestra:runs:takeovers        int     runs taken over from a lost driver
    orchestra:runs:alive            str     set by the first driver to see this Redis
    orchestra:runs:requeued:<run>   str     a lost run was queued again (until a driver claims it)

:data:`CLAIM` places a run on a driver atomically, within the fleet-wide limits;
:data:`RELEASE` frees it; :data:`TAKE` lets exactly one surviving driver hand a lost
driver's run back to the queue.  Should Redis lose the claims while a driver is dead too,
drivers also read the run leases (:mod:`orchestra.lease`, in the checkpoint database): a
service run whose lease lapsed and that no driver claims is queued again.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestra.results import Decision

__all__ = [
    "ACTIVE",
    "ALIVE",
    "CLAIM",
    "GRAPHS",
    "RELEASE",
    "RUNS_QUEUE",
    "RUN_TASK",
    "TAKE",
    "TAKEOVERS",
    "RunEvent",
    "RunMessage",
    "cancel_key",
    "driver_key",
    "events_key",
    "result_key",
]

RUN_TASK = "orchestra.run"
RUNS_QUEUE = "orchestra.runs"
ACTIVE = "orchestra:runs:active"
ALIVE = "orchestra:runs:alive"
GRAPHS = "orchestra:runs:graphs"
TAKEOVERS = "orchestra:runs:takeovers"
EVENTS_MAX = 10_000


def events_key(run_id: str) -> str:
    return f"orchestra:runs:events:{run_id}"


def result_key(run_id: str) -> str:
    return f"orchestra:runs:result:{run_id}"


def cancel_key(run_id: str) -> str:
    return f"orchestra:runs:cancel:{run_id}"


def driver_key(name: str) -> str:
    return f"orchestra:runs:driver:{name}"


EventType = Literal["queued", "started", "decision", "takeover", "cancel_requested", "end"]


class RunEvent(BaseModel):
    """One event of a run's stream: a decision of its log, or a change of who drives it."""

    type: EventType
    run_id: str
    at: float = Field(default_factory=time.time)
    decision: Decision | None = None
    status: str | None = None
    detail: str = ""
    id: str = ""  # the stream entry id (set when read)

    def fields(self) -> dict[str, str]:
        return {"event": self.model_dump_json(exclude={"id"})}

    @classmethod
    def from_entry(cls, entry_id: str, fields: dict[str, Any]) -> RunEvent:
        ev = cls.model_validate_json(fields["event"])
        ev.id = entry_id
        return ev


class RunMessage(BaseModel):
    """The JSON payload of one ``orchestra.run`` task on the ``orchestra.runs`` queue."""

    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(min_length=1)
    graph: str = Field(min_length=1)
    takeover: bool = False
    attempt: int = Field(default=0, ge=0)


# KEYS: active
# ARGV: run, entry JSON, graph, graph limit (0: none), fleet limit (0: none)
CLAIM = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then return {'held', cur} end
local fleet = tonumber(ARGV[5])
if fleet > 0 and redis.call('HLEN', KEYS[1]) >= fleet then return {'full', 'fleet'} end
local lim = tonumber(ARGV[4])
if lim > 0 then
  local n = 0
  for _, v in ipairs(redis.call('HVALS', KEYS[1])) do
    if cjson.decode(v).graph == ARGV[3] then n = n + 1 end
  end
  if n >= lim then return {'full', 'graph'} end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return {'ok', ''}
"""

# KEYS: active; ARGV: run, driver
RELEASE = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and cjson.decode(cur).driver == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0
"""

# KEYS: active; ARGV: run, the entry seen (exactly)
TAKE = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0
"""
