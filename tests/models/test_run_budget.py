"""The run's budget reaches every model call, over real HTTP (the OpenAI-compatible test server).

A router built without a ledger (as a graph file builds it, at import) books on the ledger of
the run that calls it: ``Runner.run(..., budget_usd=...)`` is the one limit for tools and models.
"""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from orchestra import Graph, Runner
from orchestra.agents import AgentProfile, agent_skill
from orchestra.models import Backend, ModelRouter


class Doc(BaseModel):
    doc: str


PROFILE = AgentProfile(
    name="writer", role="a writer", instructions="Answer briefly.", max_tokens=100, prompt="{text}"
)


def _remote(url: str) -> Backend:
    return Backend(
        model="openai/remote-model",
        name="remote",
        api_base=url,
        api_key="k",
        tier=1,
        input_cost_per_token=1e-6,
        output_cost_per_token=3e-6,
        max_output_tokens=100,
        timeout_s=20,
    )


async def test_parallel_agent_steps_share_the_run_budget(endpoint_factory) -> None:  # type: ignore[no-untyped-def]
    """Two agent steps start together; the budget holds one call's worst case, not two: one
    model call is made, the other step is refused for budget, spend stays within."""
    ep = endpoint_factory("remote-model")
    backend = _remote(ep.base_url)
    router = ModelRouter([backend])  # no ledger: the run's is used
    bound, _ = backend.cost_bound(PROFILE.messages({"text": "first text to write about"}), 100)
    budget = bound * 1.2
    g = Graph("two-writers")
    g.step("one", [agent_skill(PROFILE, router, name="agent.one")], inputs={"text": "$input.a"})
    g.step("two", [agent_skill(PROFILE, router, name="agent.two")], inputs={"text": "$input.b"})
    r = await Runner().run(
        g, {"a": "first text to write about", "b": "second text to write about"}, budget_usd=budget
    )
    assert ep.stats() == {"remote-model": 1}
    assert r.spent_usd <= budget and r.spent_usd > 0
    assert r.llm_calls == 1
    refused = [d for d in r.decisions if d.kind == "fail" and d.error_kind == "budget"]
    assert len(refused) == 1 and "remote" in refused[0].reason


async def test_max_tokens_is_capped_to_what_the_budget_allows(endpoint_factory) -> None:  # type: ignore[no-untyped-def]
    """When the full ``max_tokens`` does not fit but a shorter answer does, the call is sent
    with ``max_tokens`` cut to fit, and the log says so."""
    ep = endpoint_factory("remote-model")
    backend = _remote(ep.base_url)
    router = ModelRouter([backend])
    msgs = PROFILE.messages({"text": "a text"})
    full, _ = backend.cost_bound(msgs, 100)
    half, _ = backend.cost_bound(msgs, 50)
    g = Graph("one-writer")
    g.step("one", [agent_skill(PROFILE, router)], inputs={"text": "$input.a"})
    r = await Runner().run(g, {"a": "a text"}, budget_usd=(half + full) / 2)
    assert r.status == "completed", r.reason
    assert r.spent_usd <= (half + full) / 2
    line = next(d.reason for d in r.decisions if d.kind == "succeed")
    assert "max_tokens capped" in line, line


async def test_the_demotion_call_books_on_the_run_budget() -> None:
    """The demotion model (a router built without a ledger) reserves and books on the run's
    ledger: the run's spend includes the demotion call, and it is counted."""
    from pydantic import BaseModel

    from orchestra import skill
    from orchestra.models import ChatMessage
    from orchestra.testing import misbehave

    from .doubles import FakeModel

    class Doc(BaseModel):
        doc: str

    @skill(cost=0.001)
    def fetch() -> Doc:
        return Doc(doc="d")

    @skill(cost=0.001)
    def publish(doc: str) -> Doc:
        return Doc(doc=doc)

    backend = Backend(
        model="openai/judge",
        name="judge",
        tier=1,
        input_cost_per_token=1e-6,
        output_cost_per_token=1e-6,
        max_output_tokens=50,
    )
    judge = FakeModel("judge", ["fetch"], cost=backend.prices.cost(40, 2))
    router = ModelRouter([(backend, judge)])  # no ledger: the run's
    g = Graph("pub", goal="publish")
    g.step("fetch", [fetch])
    g.step("publish", [misbehave(publish, "exception")], after="fetch")
    g.fallback("fetch")
    r = await Runner(demotion_model=router).run(g, budget_usd=0.01)
    assert r.status == "demoted" and len(judge.calls) == 1 and r.llm_calls == 1
    assert r.spent_usd == pytest.approx(0.001 + judge.cost)
    assert isinstance(judge.calls[0][0][0], ChatMessage)
