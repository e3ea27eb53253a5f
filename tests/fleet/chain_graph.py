"""Four steps in a row, each writing its token (run input ``t1``…``t4``) to the side log."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from orchestra import Graph
from orchestra.catalog import load_catalog


class ChainInput(BaseModel):
    t1: str
    t2: str
    t3: str
    t4: str
    delay: float = 0.5


_skills = {s.name: s for s in load_catalog(Path(__file__).with_name("fleet_skills.py"))}

graph = Graph("chain", input_model=ChainInput)
for i in range(1, 5):
    graph.step(
        f"s{i}",
        [_skills["slow_write"]],
        after=[f"s{i - 1}"] if i > 1 else [],
        inputs={"token": f"$input.t{i}", "delay": "$input.delay"},
    )
