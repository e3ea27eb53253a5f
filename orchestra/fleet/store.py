"""Step bookkeeping in Redis: idempotency, redelivery counts, replies, dead letters.

Everything lives in the result backend's Redis (``result_backend``), under ``orchestra:``::

    orchestra:task:<task id>        hash   deliveries, started (worker), outcome, cancel
    orchestra:lease:<task id>       str    "<host>:<pid>" of the process running the task,
                                           expires after the skill's timeout (+5 s)
    orchestra:step:<run>:<step>     hash   running (JSON), done_skill, done_outcome
    orchestra:epoch:<run>           int    bumped when a run is resumed by a new driver
    orchestra:reply:<driver id>     list   "<task id>\\n<outcome JSON>", one per finished task
    orchestra:driver:<driver id>    str    present while the driver runs (detects data loss)
    orchestra:dead                  list   dead letters, newest first (JSON), capped at 10,000

A worker makes two round trips per step, each one Lua script (atomic):

* :data:`BEGIN` decides what to do with a delivery: replay a stored outcome (a redelivered
  task that already finished, or a step of this run this skill already completed: the tool
  does not run again), drop it (cancelled by its driver, or superseded because the run was
  resumed elsewhere), wait (another process holds the task's lease: it may still be running
  it), dead-letter it (too many deliveries), refuse it (a redelivered call of a skill not
  declared idempotent), or take the lease and run it.  The lease keeps two deliveries of one
  task from running at once (a slow task redelivered after the visibility timeout, or a
  redelivery that overtakes the news of its worker's death).
* :data:`FINISH` stores the outcome (and the step's result if it succeeded), clears the
  running mark, pushes the reply to the driver and appends a dead letter if there is one.
"""

from __future__ import annotations

__all__ = [
    "BEGIN",
    "CANCEL",
    "DEAD_LETTERS",
    "FINISH",
    "driver_key",
    "epoch_key",
    "lease_key",
    "reply_key",
    "step_key",
    "task_key",
]

DEAD_LETTERS = "orchestra:dead"
DEAD_LETTERS_MAX = 10_000  # FINISH trims to the same length


def task_key(task_id: str) -> str:
    return f"orchestra:task:{task_id}"


def lease_key(task_id: str) -> str:
    return f"orchestra:lease:{task_id}"


def step_key(run_id: str, step_id: str) -> str:
    return f"orchestra:step:{run_id}:{step_id}"


def epoch_key(run_id: str) -> str:
    return f"orchestra:epoch:{run_id}"


def reply_key(driver_id: str) -> str:
    return f"orchestra:reply:{driver_id}"


def driver_key(driver_id: str) -> str:
    return f"orchestra:driver:{driver_id}"


# KEYS: task, step, epoch, lease, the run's budget (orchestra.models.budget)
# ARGV: task id, worker, skill, idempotent (1/0), max deliveries, ttl, task's epoch,
#       lease holder, lease ms, dead holder whose lease may be taken over ('' = none)
# Returns {verdict, detail}; with 'run', a third element: 1 if the run's budget exists (a step
# whose model calls reserve from it needs no round trip of its own to find it there).
BEGIN = """
local out = redis.call('HGET', KEYS[1], 'outcome')
if out then return {'replay', out} end
local cancel = redis.call('HGET', KEYS[1], 'cancel')
if cancel then return {'cancelled', cancel} end
local epoch = tonumber(redis.call('GET', KEYS[3]) or '0')
if tonumber(ARGV[7]) < epoch then
  redis.call('HSET', KEYS[1], 'cancel', 'superseded: the run was resumed by another driver')
  redis.call('EXPIRE', KEYS[1], ARGV[6])
  return {'cancelled', 'superseded: the run was resumed by another driver'}
end
if redis.call('HGET', KEYS[2], 'done_skill') == ARGV[3] then
  return {'replay', redis.call('HGET', KEYS[2], 'done_outcome')}
end
local holder = redis.call('GET', KEYS[4])
if holder and holder ~= ARGV[10] then return {'busy', holder} end
local n = redis.call('HINCRBY', KEYS[1], 'deliveries', 1)
redis.call('EXPIRE', KEYS[1], ARGV[6])
if n > tonumber(ARGV[5]) then return {'dead', tostring(n)} end
if n > 1 and ARGV[4] == '0' then return {'lost', tostring(n)} end
redis.call('SET', KEYS[4], ARGV[8], 'PX', ARGV[9])
redis.call('HSET', KEYS[1], 'started', ARGV[2])
redis.call('HSET', KEYS[2], 'running',
  cjson.encode({task_id = ARGV[1], worker = ARGV[2], skill = ARGV[3]}))
redis.call('EXPIRE', KEYS[2], ARGV[6])
return {'run', tostring(n), redis.call('EXISTS', KEYS[5])}
"""

# KEYS: task, step, reply list, dead letters, lease
# ARGV: outcome JSON, ok (1/0), skill, ttl, reply message ('' = none), dead letter ('' = none),
#       task id
FINISH = """
redis.call('HSET', KEYS[1], 'outcome', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('DEL', KEYS[5])
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[2], 'done_skill', ARGV[3], 'done_outcome', ARGV[1])
end
local r = redis.call('HGET', KEYS[2], 'running')
if r and cjson.decode(r).task_id == ARGV[7] then redis.call('HDEL', KEYS[2], 'running') end
redis.call('EXPIRE', KEYS[2], ARGV[4])
if ARGV[6] ~= '' then
  redis.call('LPUSH', KEYS[4], ARGV[6])
  redis.call('LTRIM', KEYS[4], 0, 9999)
end
if ARGV[5] ~= '' then
  redis.call('RPUSH', KEYS[3], ARGV[5])
  redis.call('EXPIRE', KEYS[3], ARGV[4])
end
return 1
"""

# KEYS: task
# ARGV: reason, ttl, force (1: cancel even if a worker started it)
CANCEL = """
local out = redis.call('HGET', KEYS[1], 'outcome')
if out then return {'outcome', out} end
if ARGV[3] ~= '1' and redis.call('HEXISTS', KEYS[1], 'started') == 1 then
  return {'started', ''}
end
redis.call('HSET', KEYS[1], 'cancel', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return {'cancelled', ''}
"""
