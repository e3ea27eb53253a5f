"""Skills the fleet tests run on real workers (``orchestra worker --skills`` this file).

Each one appends to its own side-effect log (``$FLEET_SIDE_LOG``), one line when a call
starts (with the pid of the process running it) and one when it completes: the log is what
the tests hold the fleet to ("ran to completion exactly once").
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
from pathlib import Path

from pydantic import BaseModel, SecretStr

from orchestra import skill


class Done(BaseModel):
    token: str
    skill: str
    pid: int


class Sum(BaseModel):
    sum: int


def _log(line: str) -> None:
    path = os.environ.get("FLEET_SIDE_LOG")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


async def _work(name: str, token: str, delay: float) -> Done:
    pid = os.getpid()
    _log(f"start {name} {token} {pid}")
    if delay:
        await asyncio.sleep(delay)
    _log(f"done {name} {token} {pid}")
    return Done(token=token, skill=name, pid=pid)


@skill(cost=0.001, latency_ms=1, capability="test.write", timeout_s=3)
async def slow_write(token: str, delay: float = 0.0) -> Done:
    """Write a line, wait, write another (idempotent by declaration)."""
    return await _work("slow_write", token, delay)


@skill(cost=0.001, latency_ms=1, capability="test.charge", timeout_s=3, idempotent=False)
async def slow_charge(token: str, delay: float = 0.0) -> Done:
    """Like a payment: not idempotent, so never run twice."""
    return await _work("slow_charge", token, delay)


@skill(cost=0.01, latency_ms=1, capability="test.charge", timeout_s=3, idempotent=False)
async def alt_charge(token: str, delay: float = 0.0) -> Done:
    """The dearer alternative to slow_charge."""
    return await _work("alt_charge", token, delay)


@skill(cost=0.001, latency_ms=1, capability="test.poison", timeout_s=3)
def poison(token: str) -> Done:
    """Kills the process running it, every time."""
    _log(f"start poison {token} {os.getpid()}")
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


@skill(cost=0.01, latency_ms=1, capability="test.poison", timeout_s=3)
async def antidote(token: str) -> Done:
    """The alternative to poison."""
    return await _work("antidote", token, 0.0)


@skill(cost=0.0, latency_ms=1, capability="test.add", timeout_s=3)
def typed_add(a: int, b: int) -> Sum:
    """Add two integers."""
    return Sum(sum=a + b)


@skill(cost=0.001, latency_ms=1, capability="test.service", timeout_s=3)
async def svc_a(token: str) -> Done:
    """The cheaper service."""
    return await _work("svc_a", token, 0.0)


@skill(cost=0.002, latency_ms=1, capability="test.service", timeout_s=3)
async def svc_b(token: str) -> Done:
    """The dearer service."""
    return await _work("svc_b", token, 0.0)


def _svc_a_probe() -> str | None:
    flag = os.environ.get("FLEET_PROBE_FLAG")
    if flag and Path(flag).exists():
        return f"flag {flag} says svc_a is down"
    return None


svc_a = svc_a.model_copy(update={"probe": _svc_a_probe})


@skill(cost=0.0005, latency_ms=1, capability="test.void", timeout_s=3)
async def void_charge(token: str) -> Done:
    """Undo a charge of comp_charge (its compensation); canceling twice is harmless."""
    return await _work("void_charge", token, 0.0)


@skill(
    cost=0.001,
    latency_ms=1,
    capability="test.charge",
    timeout_s=3,
    idempotent=False,
    compensate=void_charge,
)
async def comp_charge(token: str) -> Done:
    """A charge that void_charge undoes."""
    return await _work("comp_charge", token, 0.0)


@skill(cost=0.01, latency_ms=1, capability="test.ship", timeout_s=3)
def ship_broken(token: str) -> Done:
    """The only shipper after comp_charge: broken on every worker."""
    _log(f"start ship_broken {token} {os.getpid()}")
    raise RuntimeError("ship_broken is out of order")


@skill(cost=0.01, latency_ms=1, capability="test.ship", timeout_s=3)
async def ship_ok(token: str) -> Done:
    """The shipper after alt_charge."""
    return await _work("ship_ok", token, 0.0)


# --------------------------------------------------------------------------- secrets

# sha256 of the password the login test plants; the plain password is in no file of a worker.
LOGIN_SHA256 = "08e06f887e2ea4df30512f334830340caa375eddfb4c0a51ad43aa5a4fd469ee"


class Session(BaseModel):
    user: str
    session: str
    api_token: str  # a plain field that names a credential
    card_last4: str


@skill(cost=0.001, latency_ms=1, capability="test.login", timeout_s=3)
def login_crash(user: str, password: SecretStr) -> Session:
    """Logs in like `login`, but its process dies mid-call, every time: redelivered until it
    is dead-lettered (the dead letter holds the sealed password), then the run reroutes.

    Idempotent, so its lost calls may be sent again; a lost call of a skill that is not would
    end the run as ``unknown_outcome`` instead (tests/fleet/test_exactly_once.py)."""
    _log(f"start login_crash {user} {os.getpid()}")
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


@skill(cost=0.01, latency_ms=1, capability="test.login", timeout_s=3)
def login(user: str, password: SecretStr, card: str) -> Session:
    """Checks the password against its hash; the wrong one (e.g. a mask) is refused."""
    got = hashlib.sha256(password.get_secret_value().encode()).hexdigest()
    if got != os.environ.get("FLEET_LOGIN_SHA256", LOGIN_SHA256):
        raise PermissionError(f"wrong password for {user}: {password.get_secret_value()}")
    _log(f"done login {user} {os.getpid()}")
    return Session(user=user, session="s-ok", api_token="tok-" + got[:20], card_last4=card[-4:])


@skill(cost=0.0, latency_ms=1, capability="test.broken", timeout_s=3)
def broken(token: str) -> Done:
    """Raises, every time."""
    raise ValueError(f"broken on {token}")


@skill(cost=0.0, latency_ms=1, capability="test.malformed", timeout_s=3)
def malformed(token: str) -> Sum:
    """Returns what its output model rejects."""
    return {"sum": f"not a number {token}"}  # type: ignore[return-value]
