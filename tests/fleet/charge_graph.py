"""One charge (``slow_charge``, not idempotent): run input ``token`` and ``delay``."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from orchestra import Graph
from orchestra.catalog import load_catalog


class ChargeInput(BaseModel):
    token: str
    delay: float = 0.0


_skills = {s.name: s for s in load_catalog(Path(__file__).with_name("fleet_skills.py"))}

graph = Graph("charge", input_model=ChargeInput)
graph.step(
    "charge", [_skills["slow_charge"]], inputs={"token": "$input.token", "delay": "$input.delay"}
)
