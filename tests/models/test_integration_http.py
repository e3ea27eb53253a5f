"""The router over real HTTP endpoints through litellm: routing, spend, failover mid-run."""

from __future__ import annotations

import pytest

from orchestra import Graph, Runner
from orchestra.agents import agent_skill, bundled_agents
from orchestra.models import Backend, InMemoryLedger, ModelRouter


def _backends(cheap_url: str, strong_url: str) -> list[Backend]:
    return [
        Backend(
            model="openai/cheap-model",
            name="cheap",
            api_base=cheap_url,
            api_key="k",
            tier=0,
            input_cost_per_token=1e-7,
            output_cost_per_token=2e-7,
            timeout_s=10,
        ),
        Backend(
            model="openai/strong-model",
            name="strong",
            api_base=strong_url,
            api_key="k",
            tier=1,
            input_cost_per_token=5e-6,
            output_cost_per_token=1.5e-5,
            timeout_s=10,
        ),
    ]


async def test_agent_steps_routed_over_http_with_spend_booked(endpoint_factory) -> None:  # type: ignore[no-untyped-def]
    """Two agents in one graph, each routed by tier policy to its endpoint; the ledger books both."""
    cheap = endpoint_factory("cheap-model")
    strong = endpoint_factory("strong-model")
    ledger = InMemoryLedger(limit_usd=0.5, run_id="http-run")
    router = ModelRouter(_backends(cheap.base_url, strong.base_url), ledger=ledger, quality=0.5)
    agents = bundled_agents()
    g = Graph("ticket")
    g.step(
        "summarize",
        [
            agent_skill(
                agents["summarizer"].model_copy(
                    update={"tiers": agents["summarizer"].tiers.model_copy(update={"max_tier": 0})}
                ),
                router,
            )
        ],
    )
    g.step("plan", [agent_skill(agents["planner"], router)], after="summarize")
    r = await Runner().run(
        g, {"text": "The export job failed twice overnight; finance needs the report by noon."}
    )
    assert r.status == "completed", r.reason
    assert r.outputs["summarize"]["model"] == "cheap" and r.outputs["summarize"]["text"].startswith(
        "cheap-model says:"
    )
    assert r.outputs["plan"]["model"] == "strong"
    assert cheap.stats() == {"cheap-model": 1} and strong.stats() == {"strong-model": 1}
    snap = await ledger.snapshot()
    booked = r.outputs["summarize"]["cost_usd"] + r.outputs["plan"]["cost_usd"]
    assert snap.calls == 2 and snap.spent_usd == pytest.approx(booked) and snap.reserved_usd == 0
    assert snap.spent_tokens > 0


async def test_endpoint_stopped_mid_run_moves_the_step_to_the_other(endpoint_factory) -> None:  # type: ignore[no-untyped-def]
    """The preferred endpoint dies between two steps; the next step is served by the other."""
    cheap = endpoint_factory("cheap-model")
    strong = endpoint_factory("strong-model")
    ledger = InMemoryLedger(limit_usd=0.5)
    router = ModelRouter(_backends(cheap.base_url, strong.base_url), ledger=ledger, quality=0.0)
    agents = bundled_agents()
    summarizer = agent_skill(agents["summarizer"], router)

    first = await summarizer.acall({"text": "first document"})
    assert first.model == "cheap"
    cheap.stop()  # the local tier goes away mid-run
    second = await summarizer.acall({"text": "second document"})
    assert second.model == "strong" and second.text.startswith("strong-model says:")
    assert (
        router.health("cheap").cooling(router._clock())
        and "unavailable" in router.health("cheap").last_error
    )
    snap = await ledger.snapshot()
    assert snap.calls == 2 and snap.reserved_usd == 0
