"""The quality gate: an agent's output check, and the cascade when an answer fails it.

Over real HTTP (the OpenAI-compatible test server): ``garbage-*`` models answer with the drift
SmolLM2-135M wrote as a case note, ``echo-*`` models repeat the text they were given.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from orchestra import Graph, Runner, Skill, skill
from orchestra.agents import AgentProfile, AgentSpecError, OutputCheck, agent_skill, bundled_agents
from orchestra.models import Backend, ModelRouter

NOTES = "Resolution: refunded 42.50 USD via paypal_refund (reference PP-1001); customer notified."


def _backend(url: str, model: str, name: str, tier: int, price: float) -> Backend:
    return Backend(
        model=f"openai/{model}",
        name=name,
        api_base=url,
        api_key="k",
        tier=tier,
        input_cost_per_token=price,
        output_cost_per_token=price,
        timeout_s=20,
    )


class Note(BaseModel):
    summary: str


def _extractive() -> Skill:
    async def extractive(text: str) -> Note:
        return Note(summary=text.split(";")[0])

    return skill(extractive).model_copy(update={"reliability": 0.6})


def _graph(router: ModelRouter) -> Graph:
    g = Graph("note")
    g.step("summarize", [agent_skill(bundled_agents()["summarizer"], router), _extractive()])
    return g


class TestOutputCheck:
    def test_the_issues_case_note_is_rejected(self) -> None:
        """The summarizer's check rejects the drift of issue 13 and accepts a faithful note."""
        check = bundled_agents()["summarizer"].check
        assert check is not None
        garbage = (
            "Last updated: March 21, 2024: babyyourguy@gmail.com ... B.G.H.A.D. BOUNDER dbnBkbf"
        )
        assert "numbers not in the input" in (check.problem(garbage, {"text": NOTES}) or "")
        assert check.problem("Refunded 42.50 USD via PayPal; notified.", {"text": NOTES}) is None
        assert "fewer than 20" in (check.problem("ok", {"text": NOTES}) or "")
        assert "keeps none" in (check.problem("The customer was refunded.", {"text": NOTES}) or "")

    def test_schema_mentions_and_bounds(self) -> None:
        """A JSON schema, required mentions (templates over the inputs) and length bounds."""
        check = OutputCheck(
            json_schema={"type": "object", "required": ["label"]},
            must_mention=("{customer}",),
            max_chars=60,
        )
        assert check.problem('{"label": "billing", "who": "Ada"}', {"customer": "Ada"}) is None
        assert "not JSON" in (check.problem("billing", {"customer": "Ada"}) or "")
        assert "'label' is a required property" in (
            check.problem('{"who": "Ada"}', {"customer": "Ada"}) or ""
        )
        assert "does not mention 'Bob'" in (
            check.problem('{"label": "x"}', {"customer": "Bob"}) or ""
        )
        assert "more than 60" in (check.problem('{"label": "' + "x" * 80 + '"}', {}) or "")

    def test_a_bad_check_names_the_field(self, tmp_path: Path) -> None:
        """An unknown validator or inverted bounds fail at load time, naming the field."""
        f = tmp_path / "a.yaml"
        f.write_text("name: a\nrole: r\ncheck: {validator: telepathy}\n")
        with pytest.raises(AgentSpecError, match=r"check.validator: .*unknown validator"):
            AgentProfile.from_yaml(f)
        f.write_text("name: a\nrole: r\ncheck: {min_chars: 9, max_chars: 3}\n")
        with pytest.raises(AgentSpecError, match="min_chars must be <= max_chars"):
            AgentProfile.from_yaml(f)


async def test_a_rejected_answer_cascades_to_the_next_tier(endpoint_factory) -> None:  # type: ignore[no-untyped-def]
    """Tier 0 answers garbage: it is rejected (no cooldown), tier 1 answers; the decision log
    says so, both calls are counted and booked."""
    ep = endpoint_factory("garbage-small", "echo-big")
    router = ModelRouter(
        [
            _backend(ep.base_url, "garbage-small", "local", 0, 0.0),
            _backend(ep.base_url, "echo-big", "remote", 1, 1e-6),
        ],
        quality=0.0,  # cheapest first
    )
    r = await Runner().run(_graph(router), {"text": NOTES}, budget_usd=0.05)
    assert r.status == "completed", r.reason
    assert r.chosen["summarize"] == "agent.summarizer"
    assert r.outputs["summarize"]["model"] == "remote" and "42.50" in r.outputs["summarize"]["text"]
    assert ep.stats() == {"garbage-small": 1, "echo-big": 1}
    assert r.llm_calls == 2 and 0 < r.spent_usd <= 0.05
    line = next(d.reason for d in r.decisions if d.kind == "succeed")
    assert "model remote (openai/echo-big, answered as echo-big)" in line, line
    assert "local failed (answer rejected: numbers not in the input: 2024, 21" in line, line
    assert not router.health("local").cooling(router._clock())


async def test_when_no_tier_passes_the_step_reroutes_to_its_other_candidate(
    endpoint_factory,
) -> None:  # type: ignore[no-untyped-def]
    """Every tier answers garbage: the agent step fails, and the run reroutes the step to its
    other candidate (the extractive summary)."""
    ep = endpoint_factory("garbage-small", "garbage-big")
    router = ModelRouter(
        [
            _backend(ep.base_url, "garbage-small", "local", 0, 0.0),
            _backend(ep.base_url, "garbage-big", "remote", 1, 1e-6),
        ]
    )
    r = await Runner().run(_graph(router), {"text": NOTES}, budget_usd=0.05)
    assert r.status == "completed", r.reason
    assert r.chosen["summarize"] == "extractive"
    fail = next(d for d in r.decisions if d.kind == "fail")
    assert "answer rejected" in fail.reason and fail.skill == "agent.summarizer"
    assert any(d.kind == "reroute" and "rerouted to extractive" in d.reason for d in r.decisions)
    assert r.llm_calls == 2 and r.spent_usd > 0  # the rejected answers were paid for


async def test_chat_spans_carry_the_answering_model_and_the_route_reason(endpoint_factory) -> None:  # type: ignore[no-untyped-def]
    """Each backend call is a ``chat`` span with ``gen_ai.response.model`` as the server
    reported it and ``orchestra.route_reason`` (why this backend, after which fallbacks)."""
    from orchestra import tracing

    ep = endpoint_factory("garbage-small", "echo-big")
    router = ModelRouter(
        [
            _backend(ep.base_url, "garbage-small", "local", 0, 0.0),
            _backend(ep.base_url, "echo-big", "remote", 1, 1e-6),
        ],
        quality=0.0,
    )
    with tracing.capture_spans() as cap:
        r = await Runner().run(_graph(router), {"text": NOTES}, budget_usd=0.05)
    assert r.status == "completed", r.reason
    spans = {s.name: dict(s.attributes or {}) for s in cap.named("chat ")}
    small, big = spans["chat garbage-small"], spans["chat echo-big"]
    assert small["gen_ai.response.model"] == "garbage-small"
    assert big["gen_ai.response.model"] == "echo-big"
    assert str(small["orchestra.route_reason"]).startswith("local: tier 0, predicted success")
    reason = str(big["orchestra.route_reason"])
    assert reason.startswith("remote: tier 1") and "local failed (answer rejected" in reason
