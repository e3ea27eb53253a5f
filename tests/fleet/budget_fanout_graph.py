"""Four agent steps at once, each one paid model call: the graph of the fleet budget test.

Workers load it with ``--graph tests/fleet/budget_fanout_graph.py``; the model is the test's
OpenAI-compatible HTTP server at ``$FLEET_MODEL_URL`` (``tests/models/openai_compat_server.py``),
priced so that each call costs about a cent.
"""

from __future__ import annotations

import os
from pathlib import Path

from orchestra import Graph
from orchestra.agents import AgentRegistry, agent_skill
from orchestra.models import Backend, ModelRouter

ROOT = Path(__file__).resolve().parents[2]
BRANCHES = 4
PRICE_PER_TOKEN = 1e-4


def router() -> ModelRouter:
    return ModelRouter(
        [
            Backend(
                model="openai/paid-model",
                name="paid",
                api_base=os.environ["FLEET_MODEL_URL"],
                api_key="k",
                tier=0,
                input_cost_per_token=PRICE_PER_TOKEN,
                output_cost_per_token=PRICE_PER_TOKEN,
                timeout_s=30,
            )
        ],
        quality=0.5,
    )


def build_graph() -> Graph:
    summarizer = AgentRegistry().load_dir(ROOT / "agents").require("summarizer")
    model = router()
    g = Graph("budget_fanout")
    for i in range(BRANCHES):
        g.step(
            f"a{i}",
            [agent_skill(summarizer, model, name=f"agent.sum{i}")],
            inputs={"text": "$input.text"},
        )
    return g
