"""A login whose password is a ``SecretStr``: the cheap skill's worker dies (dead letter), the
other logs in.  The run input also holds a card number in a plain field."""

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

graph = Graph("login", input_model=LoginInput)
graph.step("login", [_skills["login_crash"], _skills["login"]])
