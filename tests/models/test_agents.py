"""Agent profiles become skills; agent steps run in graphs through the router and its budget."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from orchestra import Graph, Runner
from orchestra.agents import (
    AgentProfile,
    AgentRegistry,
    AgentSpecError,
    agent_skill,
    bundled_agents,
)
from orchestra.errors import UnknownSkillError
from orchestra.models import Backend, InMemoryLedger, ModelRouter

from .doubles import FakeModel

LOCAL = Backend(
    model="hosted_vllm/small",
    name="local",
    tier=0,
    input_cost_per_token=1e-8,
    output_cost_per_token=1e-8,
)
REMOTE = Backend(
    model="openai/big", name="remote", tier=1, input_cost_per_token=1e-6, output_cost_per_token=4e-6
)


class Doc(BaseModel):
    doc: str


class Url(BaseModel):
    url: str


class TestProfiles:
    def test_bundled_profiles_load(self) -> None:
        """The agents/ folder's profiles load into an explicit registry."""
        reg = bundled_agents()
        assert {"summarizer", "triage", "planner"} <= set(reg)
        assert reg["triage"].tiers.quality == 0.8 and reg["planner"].tiers.min_tier == 1

    def test_bad_field_names_file_and_field(self, tmp_path: Path) -> None:
        """A malformed profile names the file and the field to fix."""
        f = tmp_path / "broken.yaml"
        f.write_text("name: broken\nrole: r\ntiers: {min_tier: 2, max_tier: 1}\n")
        with pytest.raises(
            AgentSpecError, match=r"broken.yaml: tiers: .*min_tier must be <= max_tier"
        ):
            AgentProfile.from_yaml(f)
        f.write_text("name: x\nrole: r\nmax_tokenz: 3\n")
        with pytest.raises(AgentSpecError, match="max_tokenz"):
            AgentProfile.from_yaml(f)

    def test_duplicate_names_rejected(self) -> None:
        """Two different profiles cannot share a name in one registry."""
        reg = AgentRegistry([AgentProfile(name="a", role="one")])
        with pytest.raises(AgentSpecError, match="already has this name"):
            reg.add(AgentProfile(name="a", role="two"))
        with pytest.raises(AgentSpecError, match="unknown agent 'b'"):
            reg.require("b")

    def test_messages_render_the_prompt(self) -> None:
        """System message from role and instructions; user message from the template."""
        p = AgentProfile(
            name="s", role="a summarizer", instructions="Be brief.", prompt="Summarize: {text}"
        )
        sys_msg, user = p.messages({"text": "abc"})
        assert (
            sys_msg.content == "You are a summarizer.\nBe brief."
            and user.content == "Summarize: abc"
        )
        with pytest.raises(AgentSpecError, match=r"needs input field\(s\) \['text'\]"):
            p.messages({"other": 1})
        plain = AgentProfile(name="p", role="r").messages({"a": 1, "b": "x"})
        assert plain[1].content == "a: 1\nb: x"

    def test_allowed_skills_are_checked(self) -> None:
        """An allowed skill that is not registered is an UnknownSkillError with a hint."""
        p = bundled_agents()["triage"]
        p.check_skills(["search_kb", "create_ticket"])
        with pytest.raises(UnknownSkillError, match="create_ticket"):
            p.check_skills(["search_kb", "create_tickets"])


class TestAgentSkill:
    async def test_skill_calls_the_model_with_the_tier_policy(self) -> None:
        """The skill renders the prompt, passes tiers and agent name, returns text/model/cost."""
        model = FakeModel("m", ["The meeting is now on Tuesday."], cost=0.002)
        sk = agent_skill(bundled_agents()["summarizer"], model)
        assert sk.name == "agent.summarizer" and set(sk.input_model.model_fields) == {"text"}
        out = sk.parse_output(await sk.acall({"text": "The meeting moved to Tuesday.", "noise": 1}))
        assert out == {"text": "The meeting is now on Tuesday.", "model": "m", "cost_usd": 0.002}
        messages, max_tokens, metadata = model.calls[0]
        assert "The meeting moved to Tuesday." in messages[1].content and max_tokens == 160
        assert metadata == {
            "agent": "summarizer",
            "role": "a concise technical summarizer",
            "min_tier": 0,
            "max_tier": 1,
            "quality": 0.5,
        }


def _router(
    ledger: InMemoryLedger, answers: dict[str, list[object]] | None = None
) -> tuple[ModelRouter, dict[str, FakeModel]]:
    answers = answers or {}
    fakes = {
        "local": FakeModel(
            "local",
            answers.get("local", ["local answer: the invoice is wrong"]),
            cost=LOCAL.prices.cost(10, 5),
        ),
        "remote": FakeModel(
            "remote",
            answers.get("remote", ["remote answer: the invoice is wrong"]),
            cost=REMOTE.prices.cost(10, 5),
        ),
    }
    return ModelRouter([(LOCAL, fakes["local"]), (REMOTE, fakes["remote"])], ledger=ledger), fakes


class TestAgentStepsInGraphs:
    async def test_agent_steps_run_in_a_graph_with_spend_booked(self) -> None:
        """Two agent steps (summarize on the local tier, triage allowed up to remote) complete a run."""
        ledger = InMemoryLedger(limit_usd=1.0, run_id="g1")
        router, _ = _router(ledger)
        agents = bundled_agents()
        planner = agents["planner"]  # min_tier 1: must go remote
        g = Graph("support")
        g.step("summarize", [agent_skill(agents["summarizer"], router)])
        g.step(
            "plan", [agent_skill(planner, router, name="agent.plan")], after="summarize", inputs={}
        )
        r = await Runner().run(g, {"text": "Customer says the invoice is wrong twice."})
        assert r.status == "completed", r.reason
        assert r.outputs["summarize"]["model"] == "local"
        assert r.outputs["plan"]["model"] == "remote"
        snap = await ledger.snapshot()
        assert snap.calls == 2 and snap.spent_usd > 0
        assert r.spent_usd == pytest.approx(snap.spent_usd)  # the run books what the agents report

    async def test_budget_too_small_for_any_model_escalates_without_a_fallback(self) -> None:
        """A run whose budget fits no model, with no fallback goal, escalates with the reason;
        nothing spent."""
        ledger = InMemoryLedger(limit_usd=1e-10, run_id="tiny")
        router, fakes = _router(ledger)
        agents = bundled_agents()
        g = Graph("support")
        g.step("summarize", [agent_skill(agents["summarizer"], router)])
        r = await Runner().run(g, {"text": "x" * 200})
        assert r.status == "escalated", r.status
        assert "No declared fallback goal is reachable." in r.reason
        reasons = r.reason + " ".join(d.reason for d in r.decisions)
        assert "no model fits the remaining hard budget" in reasons
        assert not fakes["local"].calls and not fakes["remote"].calls
        assert (await ledger.snapshot()).spent_usd == 0

    async def test_router_serves_core_demotion(self) -> None:
        """The router is the core's demotion model: the demotion call is routed and booked."""
        from orchestra import skill
        from orchestra.testing import misbehave

        ledger = InMemoryLedger(limit_usd=1.0)
        router, fakes = _router(ledger, {"local": ["draft"], "remote": ["draft"]})

        @skill
        def fetch() -> Doc:
            return Doc(doc="d")

        @skill
        def publish(doc: str) -> Url:
            return Url(url="u")

        g = Graph("pub", goal="publish")
        g.step("fetch", [fetch])
        g.step("publish", [misbehave(publish, "exception")], after="fetch")
        g.fallback("fetch")
        fakes["local"].answers = ["fetch"]
        fakes["remote"].answers = ["fetch"]
        r = await Runner(demotion_model=router).run(g)
        assert r.status == "demoted", r.reason
        assert r.goal == "fetch"
        assert r.llm_calls == 1 and (await ledger.snapshot()).calls == 1
