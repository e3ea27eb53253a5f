"""A login whose password is a ``SecretStr``, served by ``login`` alone (no worker dies on
purpose): for the worker that has no key to open the sealed password
(tests/fleet/test_secrets.py)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, SecretStr

from orchestra import Graph
from orchestra.catalog import load_catalog


class LoginInput(BaseModel):
    user: str
    password: SecretStr
    card: str


_skills = {s.name: s for s in load_catalog(Path(__file__).with_name("fleet_skills.py"))}

graph = Graph("secret_login", input_model=LoginInput)
graph.step("login", [_skills["login"]])
