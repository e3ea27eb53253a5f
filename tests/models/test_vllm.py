"""The router with a real local vLLM server (CPU build here) as its local tier.

These run, not skip, wherever ``scripts/setup-vllm.sh`` has been run; under CI=true a
missing vLLM fails them.  The server is started once per session (about 35-90 s on 2 cores).
The test that stops the server mid-run is last in this file; the ``vllm_server`` fixture
restarts it for any test that comes after.
"""

from __future__ import annotations

import pytest

from orchestra import Graph, Runner
from orchestra.agents import AgentProfile, TierPolicy, agent_skill
from orchestra.models import Backend, ChatMessage, InMemoryLedger, LiteLLMChatModel, ModelRouter
from orchestra.models.serve import VLLMServer

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(900)]

LOCAL_AGENT = AgentProfile(
    name="local_summarizer",
    role="a concise summarizer",
    instructions="Answer in one short sentence.",
    tiers=TierPolicy(max_tier=0),
    max_tokens=16,
    prompt="Summarize: {text}",
)
REMOTE_AGENT = AgentProfile(
    name="remote_planner",
    role="a careful planner",
    tiers=TierPolicy(min_tier=1),
    max_tokens=32,
    prompt="Plan the next step after: {text}",
)


def _router(
    server: VLLMServer, remote_url: str, ledger: InMemoryLedger, **kw: object
) -> ModelRouter:
    local = server.backend(
        tier=0, input_cost_per_token=1e-9, output_cost_per_token=1e-9, timeout_s=120, cooldown_s=60
    )
    remote = Backend(
        model="openai/remote-model",
        name="remote",
        api_base=remote_url,
        api_key="k",
        tier=1,
        input_cost_per_token=3e-6,
        output_cost_per_token=1.2e-5,
        timeout_s=20,
    )
    return ModelRouter([local, remote], ledger=ledger, **kw)  # type: ignore[arg-type]


async def test_vllm_answers_through_litellm(vllm_server: VLLMServer) -> None:
    """litellm's hosted_vllm provider reaches the real server; usage comes back."""
    backend = vllm_server.backend()
    resp = await LiteLLMChatModel(backend).chat(
        [ChatMessage(role="user", content="Say hi.")], max_tokens=8
    )
    assert resp.text.strip() and resp.model == backend.label
    assert resp.usage.input_tokens > 0 and 0 < resp.usage.output_tokens <= 8
    _bound_usd, bound_tokens = backend.cost_bound([ChatMessage(role="user", content="Say hi.")], 8)
    assert resp.usage.input_tokens + resp.usage.output_tokens <= bound_tokens


async def test_agent_steps_on_local_vllm_and_remote_endpoint(
    vllm_server: VLLMServer, endpoint_factory
) -> None:  # type: ignore[no-untyped-def]
    """A graph: one agent step on the local vLLM tier, one on the remote endpoint; spend booked."""
    remote = endpoint_factory("remote-model")
    ledger = InMemoryLedger(limit_usd=0.05, run_id="vllm-run")
    router = _router(vllm_server, remote.base_url, ledger)
    g = Graph("local-and-remote")
    g.step("summarize", [agent_skill(LOCAL_AGENT, router)])
    g.step("plan", [agent_skill(REMOTE_AGENT, router)], after="summarize")
    r = await Runner().run(
        g, {"text": "The nightly export failed twice; finance needs the report by noon."}
    )
    assert r.status == "completed", r.reason
    assert r.outputs["summarize"]["model"] == f"local/{vllm_server.served_name}"
    assert r.outputs["summarize"]["text"].strip()
    assert r.outputs["plan"]["model"] == "remote" and remote.stats() == {"remote-model": 1}
    snap = await ledger.snapshot()
    assert snap.calls == 2 and snap.reserved_usd == 0 and snap.spent_tokens > 0
    assert snap.spent_usd == pytest.approx(
        r.outputs["summarize"]["cost_usd"] + r.outputs["plan"]["cost_usd"]
    )
    assert (
        r.outputs["summarize"]["cost_usd"] > 0
    )  # local calls are priced here, so booked in USD too


async def test_vllm_stopped_mid_run_moves_to_the_other_backend(
    vllm_server: VLLMServer, endpoint_factory
) -> None:  # type: ignore[no-untyped-def]
    """The local vLLM server is stopped between two calls; the next call goes to the remote one."""
    remote = endpoint_factory("remote-model")
    ledger = InMemoryLedger(limit_usd=0.05)
    router = _router(vllm_server, remote.base_url, ledger, quality=0.0)
    agent = agent_skill(LOCAL_AGENT.model_copy(update={"tiers": TierPolicy()}), router)
    first = await agent.acall({"text": "first report"})
    assert first.model == f"local/{vllm_server.served_name}"
    vllm_server.stop()
    second = await agent.acall({"text": "second report"})
    assert second.model == "remote" and remote.stats() == {"remote-model": 1}
    health = router.health(f"local/{vllm_server.served_name}")
    assert health.failures == 1 and "unavailable" in health.last_error
    third = await agent.acall({"text": "third report"})  # cooling down: not even tried
    assert third.model == "remote"
    assert (await ledger.snapshot()).calls == 3
