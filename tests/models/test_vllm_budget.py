"""The run's budget and the quality gate with the real local vLLM server (CPU build here) as
the local tier and a paid remote stand-in (the OpenAI-compatible test server) as tier 1."""

from __future__ import annotations

import pytest

from orchestra import Graph, Runner
from orchestra.agents import AgentProfile, agent_skill, bundled_agents
from orchestra.models import Backend, ModelRouter
from orchestra.models.serve import VLLMServer

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(900)]

NOTES = (
    "Customer wrote: Hi, I was charged twice for my last order ($42.50). Please refund the "
    "duplicate charge. Thanks, Ada\nResolution: refunded 42.50 USD via paypal_refund "
    "(reference PP-1001); customer notified."
)


def _router(server: VLLMServer, remote_url: str) -> ModelRouter:
    local = server.backend(
        tier=0, input_cost_per_token=1e-9, output_cost_per_token=1e-9, timeout_s=120
    )
    remote = Backend(
        model="openai/echo-remote",
        name="remote",
        api_base=remote_url,
        api_key="k",
        tier=1,
        input_cost_per_token=1e-6,
        output_cost_per_token=3e-6,
        timeout_s=20,
    )
    return ModelRouter([local, remote], quality=0.0)  # no ledger: the run's


async def test_summarizer_on_vllm_passes_its_check_or_cascades(
    vllm_server: VLLMServer, endpoint_factory
) -> None:  # type: ignore[no-untyped-def]
    """SmolLM2-135M writes the case note first; an answer that fails the summarizer's check is
    rejected and the remote tier answers.  Either way the note passes the check, the log line
    names the model that answered, and the run spends within its budget."""
    remote = endpoint_factory("echo-remote")
    profile = bundled_agents()["summarizer"]
    g = Graph("note")
    g.step("summarize", [agent_skill(profile, _router(vllm_server, remote.base_url))])
    r = await Runner().run(g, {"text": NOTES}, budget_usd=0.05)
    assert r.status == "completed", r.reason
    assert profile.check is not None
    assert profile.check.problem(r.outputs["summarize"]["text"], {"text": NOTES}) is None
    line = next(d.reason for d in r.decisions if d.kind == "succeed")
    local = f"local/{vllm_server.served_name}"
    if r.outputs["summarize"]["model"] == local:
        assert f"model {local} (hosted_vllm/{vllm_server.served_name}" in line, line
        assert r.llm_calls == 1
    else:
        assert "model remote (openai/echo-remote, answered as echo-remote)" in line, line
        assert f"{local} failed (answer rejected" in line, line
        assert r.llm_calls == 2 and remote.stats() == {"echo-remote": 1}
    assert 0 < r.spent_usd <= 0.05


async def test_parallel_steps_on_vllm_share_the_run_budget(vllm_server: VLLMServer) -> None:
    """Two agent steps start together on the local tier; the budget holds one call's worst
    case: one call is made, the other step is refused for budget."""
    local = vllm_server.backend(tier=0, input_cost_per_token=1e-6, output_cost_per_token=1e-6)
    profile = AgentProfile(name="w", role="a writer", prompt="{text}", max_tokens=16)
    router = ModelRouter([local])
    bound, _ = local.cost_bound(profile.messages({"text": "the first report"}), 16)
    g = Graph("two")
    g.step("one", [agent_skill(profile, router, name="agent.one")], inputs={"text": "$input.a"})
    g.step("two", [agent_skill(profile, router, name="agent.two")], inputs={"text": "$input.b"})
    r = await Runner().run(
        g, {"a": "the first report", "b": "the other report"}, budget_usd=bound * 1.2
    )
    assert r.llm_calls == 1 and 0 < r.spent_usd <= bound * 1.2
    refused = [d for d in r.decisions if d.kind == "fail" and d.error_kind == "budget"]
    assert len(refused) == 1
