"""A login whose password is a secret: sealed in the run, real inside the skill.

    export ORCHESTRA_SECRET_KEY=$(orchestra keygen)
    orchestra run graphs/login.py -i '{"user": "ann", "password": "correct horse"}'

The password reaches ``login`` intact (``password.get_secret_value()``), and is in no
checkpoint, log line, span or ``--json`` result in plaintext.
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, SecretStr

from orchestra import Graph, skill

# sha256 of the demo account's password ("correct horse"); a masked value would not match
_DEMO_SHA256 = hashlib.sha256(b"correct horse").hexdigest()


class LoginInput(BaseModel):
    user: str
    password: SecretStr


class Session(BaseModel):
    user: str
    session_id: str


@skill(cost=0.0, latency_ms=5)
def login(user: str, password: SecretStr) -> Session:
    """Checks the password (the real one: a mask like ``**********`` would be refused)."""
    if hashlib.sha256(password.get_secret_value().encode()).hexdigest() != _DEMO_SHA256:
        raise PermissionError(f"wrong password for {user}")
    return Session(user=user, session_id="s-" + hashlib.sha256(user.encode()).hexdigest()[:8])


graph = Graph("login", input_model=LoginInput)
graph.step("login", [login])
