"""Two agent steps that start together, on a paid model behind a real OpenAI-compatible server
(``BUDGET_MODEL_URL``): the fleet budget test's graph, hosted by ``orchestra worker``."""

from __future__ import annotations

import os

from orchestra import Graph
from orchestra.agents import AgentProfile, agent_skill
from orchestra.models import Backend, ModelRouter

PROFILE = AgentProfile(
    name="writer", role="a writer", instructions="Answer briefly.", max_tokens=100, prompt="{text}"
)
BACKEND = Backend(
    model="openai/remote-model",
    name="remote",
    api_base=os.environ.get("BUDGET_MODEL_URL", "http://127.0.0.1:9/v1"),
    api_key="k",
    tier=1,
    input_cost_per_token=1e-6,
    output_cost_per_token=3e-6,
    max_output_tokens=100,
    timeout_s=20,
)
router = ModelRouter([BACKEND])  # no ledger: each call reserves from its run's, in Redis

graph = Graph("fleet-budget")
for step, field in (("one", "a"), ("two", "b")):
    agent = agent_skill(PROFILE, router, name=f"agent.{step}").model_copy(
        update={"timeout_s": 30.0}
    )
    graph.step(step, [agent], inputs={"text": f"$input.{field}"})
