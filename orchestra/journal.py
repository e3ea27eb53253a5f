"""The effects journal: what became of every call of a skill that is not idempotent.

A charge, a refund or an e-mail must happen at most once per step, whatever crashes.  Redis
may lose a task, its reply or its stored outcome; the journal lives in the checkpoint
database (:mod:`orchestra.durable`, table ``orchestra_effects``) and says, per call::

    intent     the driver is about to send the call (written before it is sent, under the
               run lease's fencing token)
    started    a worker (or the embedded executor) took it and is running the tool
    done       the tool returned; ``outcome`` holds what it returned
    failed     the tool raised, timed out or returned malformed output
    cancelled  the driver withdrew the call before anyone started it: it will never run
    not_done   a human said the call did not take effect (``--answer not-done``)

The key is (run, step, skill, attempt, fencing token).  Moving from ``intent`` to
``started`` is one conditional update, done by whoever runs the tool: it succeeds once, and
only while the intent's token is still the run's current lease token, so a call sent by a
driver that has since been superseded never starts, and a redelivered call never starts
twice.  A call left ``started`` with no outcome (its worker, the broker or the driver was
lost) has an **unknown outcome**: no path runs it again, nor another candidate of its step;
the run escalates with ``unknown_outcome`` until a human reconciles it
(``orchestra resume RUN --answer done:{json}`` or ``--answer not-done``).
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel

from orchestra.durable import durable_store
from orchestra.errors import LeaseLost
from orchestra.executors.base import StepOutcome, StepTask
from orchestra.secrets import open_record, seal_record

__all__ = [
    "Effect",
    "EffectState",
    "begin",
    "cancel_intents",
    "effects_of",
    "record_intent",
    "record_outcome",
    "resolve",
    "withdraw",
]

EffectState = Literal["intent", "started", "done", "failed", "cancelled", "not_done"]
Verdict = Literal["run", "replay", "lost", "cancelled", "superseded", "missing"]


class Effect(BaseModel):
    """One journalled call."""

    run_id: str
    step_id: str
    skill: str
    attempt: int
    token: int
    state: EffectState
    worker: str | None = None
    outcome: StepOutcome | None = None
    updated_at: float = 0.0

    @property
    def unknown(self) -> bool:
        """Started and never finished: whether it took effect cannot be told from here."""
        return self.state == "started"


_COLUMNS = "run_id, step_id, skill, attempt, token, state, worker, outcome, updated_at"


def _effect(row: tuple[object, ...]) -> Effect:
    run_id, step_id, skill, attempt, token, state, worker, outcome, updated_at = row
    return Effect(
        run_id=str(run_id),
        step_id=str(step_id),
        skill=str(skill),
        attempt=int(attempt),  # type: ignore[call-overload]
        token=int(token),  # type: ignore[call-overload]
        state=state,  # type: ignore[arg-type]
        worker=None if worker is None else str(worker),
        outcome=None
        if outcome is None
        else StepOutcome.model_validate_json(open_record(str(outcome))),
        updated_at=float(updated_at),  # type: ignore[arg-type]
    )


def _key(task: StepTask, token: int) -> tuple[str, str, str, int, int]:
    return (task.run_id, task.step_id, task.skill, task.attempt, token)


_WHERE = "run_id = ? AND step_id = ? AND skill = ? AND attempt = ? AND token = ?"


def record_intent(url: str | None, task: StepTask, token: int) -> None:
    """Write the intent of ``task`` before it is sent; :class:`LeaseLost` if ``token`` is no
    longer the run's lease token (another driver took the run over)."""
    with durable_store(url).transaction() as cur:
        row = cur.execute(
            "SELECT holder, token FROM orchestra_run_leases WHERE run_id = ?", (task.run_id,)
        ).fetchone()
        if row is not None and int(row[1]) != token:
            raise LeaseLost(task.run_id, "this driver", token, f"taken by {row[0]}")
        cur.execute(
            f"INSERT INTO orchestra_effects ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*_key(task, token), "intent", None, None, time.time()),
        )


def begin(
    url: str | None, task: StepTask, token: int, worker: str
) -> tuple[Verdict, Effect | None]:
    """Whoever is about to run ``task``'s tool calls this first: ``run`` exactly once.

    Otherwise: ``replay`` (an outcome is journalled: use it), ``lost`` (it was started before
    and never finished: it may have taken effect, never run it again), ``cancelled`` (its
    driver withdrew it, or a human reconciled it), ``superseded`` (another driver holds the
    run now), ``missing`` (no intent: this worker and the driver use different databases).
    """
    with durable_store(url).transaction() as cur:
        lease = cur.execute(
            "SELECT token FROM orchestra_run_leases WHERE run_id = ?", (task.run_id,)
        ).fetchone()
        current = None if lease is None else int(lease[0])
        if current is None or current == token:
            cur.execute(
                f"UPDATE orchestra_effects SET state = 'started', worker = ?, updated_at = ? "
                f"WHERE {_WHERE} AND state = 'intent'",
                (worker, time.time(), *_key(task, token)),
            )
            if cur.rowcount == 1:
                return "run", None
        row = cur.execute(
            f"SELECT {_COLUMNS} FROM orchestra_effects WHERE {_WHERE}", _key(task, token)
        ).fetchone()
    if row is None:
        return "missing", None
    effect = _effect(row)
    if effect.state in ("done", "failed"):
        return "replay", effect
    if effect.state == "started":
        return "lost", effect
    if effect.state == "intent":
        return "superseded", effect
    return "cancelled", effect


def record_outcome(url: str | None, task: StepTask, token: int, outcome: StepOutcome) -> None:
    """Journal what the tool returned (only over ``intent``/``started``: a human's word or an
    earlier outcome is never overwritten)."""
    with durable_store(url).transaction() as cur:
        cur.execute(
            f"UPDATE orchestra_effects SET state = ?, outcome = ?, updated_at = ? "
            f"WHERE {_WHERE} AND state IN ('intent', 'started')",
            (
                "done" if outcome.ok else "failed",
                seal_record(outcome.model_dump_json()),  # sealed when a key is set
                time.time(),
                *_key(task, token),
            ),
        )


def withdraw(url: str | None, task: StepTask, token: int) -> Effect | None:
    """Cancel ``task`` if nobody started it yet; returns its journal entry as it now stands."""
    with durable_store(url).transaction() as cur:
        cur.execute(
            f"UPDATE orchestra_effects SET state = 'cancelled', updated_at = ? "
            f"WHERE {_WHERE} AND state = 'intent'",
            (time.time(), *_key(task, token)),
        )
        row = cur.execute(
            f"SELECT {_COLUMNS} FROM orchestra_effects WHERE {_WHERE}", _key(task, token)
        ).fetchone()
    return None if row is None else _effect(row)


def effects_of(url: str | None, run_id: str, step_id: str | None = None) -> list[Effect]:
    """The journal of a run (or of one of its steps), oldest first."""
    with durable_store(url).transaction() as cur:
        if step_id is None:
            rows = cur.execute(
                f"SELECT {_COLUMNS} FROM orchestra_effects WHERE run_id = ? ORDER BY updated_at",
                (run_id,),
            ).fetchall()
        else:
            rows = cur.execute(
                f"SELECT {_COLUMNS} FROM orchestra_effects WHERE run_id = ? AND step_id = ? "
                f"ORDER BY updated_at",
                (run_id, step_id),
            ).fetchall()
    return [_effect(r) for r in rows]


def cancel_intents(url: str | None, run_id: str) -> int:
    """Withdraw every call of ``run_id`` that nobody started (a resumed run's first act)."""
    with durable_store(url).transaction() as cur:
        cur.execute(
            "UPDATE orchestra_effects SET state = 'cancelled', updated_at = ? "
            "WHERE run_id = ? AND state = 'intent'",
            (time.time(), run_id),
        )
        return cur.rowcount


def resolve(
    url: str | None, effect: Effect, state: Literal["done", "not_done"], output: dict[str, object]
) -> None:
    """Record a human's word on a call whose outcome was unknown."""
    outcome = StepOutcome(ok=state == "done", output=output if state == "done" else None)
    outcome.worker = "human"
    with durable_store(url).transaction() as cur:
        cur.execute(
            f"UPDATE orchestra_effects SET state = ?, outcome = ?, updated_at = ? WHERE {_WHERE}",
            (
                state,
                seal_record(outcome.model_dump_json()),  # sealed when a key is set
                time.time(),
                effect.run_id,
                effect.step_id,
                effect.skill,
                effect.attempt,
                effect.token,
            ),
        )
