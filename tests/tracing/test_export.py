"""One embedded run with a reroute and an LLM step, exported by OTLP/HTTP to a real receiver."""

from __future__ import annotations

from orchestra import Runner

from .fake_llm import FakeLLM
from .graphs import refund_graph
from .otlp import HttpReceiver, ReceivedSpan

SPAN_KIND_CLIENT = 3
STATUS_ERROR = 2


def by_id(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {s.span_id: s for s in spans}


def chain(span: ReceivedSpan, index: dict[str, ReceivedSpan]) -> list[str]:
    """Span names from ``span`` up to the root."""
    out = [span.name]
    while span.parent_span_id and span.parent_span_id in index:
        span = index[span.parent_span_id]
        out.append(span.name)
    return out


async def run_once(fake_llm: FakeLLM) -> str:
    result = await Runner().run(
        refund_graph(fake_llm.base_url), {"customer_id": "c-42", "amount": 30.0}, budget_usd=1.0
    )
    assert result.status == "completed", result.reason
    assert result.path == ["crm_lookup", "razorpay_refund", "agent.summarizer"]
    return result.run_id


class TestEmbeddedRunTrace:
    async def test_one_trace_with_the_parent_chain_run_step_tool_llm(
        self, traced: HttpReceiver, fake_llm: FakeLLM
    ) -> None:
        """Every span of the run shares one trace id; run → step → tool → chat are linked."""
        run_id = await run_once(fake_llm)
        from orchestra import tracing

        assert tracing.flush_tracing()
        spans = traced.wait_for(lambda ss: any(s.name.startswith("invoke_agent") for s in ss))
        assert len({s.trace_id for s in spans}) == 1
        index = by_id(spans)
        (root,) = [s for s in spans if s.name == "invoke_agent refund"]
        assert root.parent_span_id == ""
        assert root.attributes["orchestra.run_id"] == run_id
        assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
        assert (
            root.attributes["orchestra.path"] == "crm_lookup -> razorpay_refund -> agent.summarizer"
        )
        assert root.attributes["orchestra.status"] == "completed"
        assert root.attributes["orchestra.cost"] > 0

        tool = {
            s.attributes["gen_ai.tool.name"]: s for s in spans if s.name.startswith("execute_tool")
        }
        assert set(tool) == {"crm_lookup", "stripe_refund", "razorpay_refund", "agent.summarizer"}
        assert chain(tool["razorpay_refund"], index) == [
            "execute_tool razorpay_refund",
            "step refund",
            "invoke_agent refund",
        ]
        (chat,) = [s for s in spans if s.name.startswith("chat ")]
        assert chain(chat, index) == [
            "chat tiny",
            "execute_tool agent.summarizer",
            "step summarize",
            "invoke_agent refund",
        ]

    async def test_llm_span_has_genai_attributes_and_the_server_joins_the_trace(
        self, traced: HttpReceiver, fake_llm: FakeLLM
    ) -> None:
        """``chat {model}``: operation, provider, request model, usage tokens, cost; the HTTP
        request to the model server carries a traceparent whose parent is the chat span."""
        run_id = await run_once(fake_llm)
        from orchestra import tracing

        tracing.flush_tracing()
        spans = traced.wait_for(lambda ss: any(s.name.startswith("chat ") for s in ss))
        (chat,) = [s for s in spans if s.name.startswith("chat ")]
        a = chat.attributes
        assert chat.kind == SPAN_KIND_CLIENT
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.provider.name"] == "vllm"
        assert a["gen_ai.request.model"] == "tiny"
        assert a["gen_ai.usage.input_tokens"] == fake_llm.prompt_tokens
        assert a["gen_ai.usage.output_tokens"] == fake_llm.completion_tokens
        assert a["gen_ai.request.max_tokens"] == 32
        assert a["orchestra.run_id"] == run_id
        assert a["orchestra.step_id"] == "summarize"
        assert "orchestra.cost" in a
        (req,) = fake_llm.requests
        version, trace_id, parent_id, _flags = req[1]["traceparent"].split("-")
        assert (version, trace_id, parent_id) == ("00", chat.trace_id, chat.span_id)

    async def test_reroute_is_an_event_with_its_reason_and_failures_are_errors(
        self, traced: HttpReceiver, fake_llm: FakeLLM
    ) -> None:
        """The failed attempt is an error span; the reroute is an event on the run span whose
        reason names the failure, and the rerouted step span carries route and reason."""
        await run_once(fake_llm)
        from orchestra import tracing

        tracing.flush_tracing()
        spans = traced.wait_for(lambda ss: any(s.name.startswith("invoke_agent") for s in ss))
        (root,) = [s for s in spans if s.name.startswith("invoke_agent")]
        (reroute,) = root.event("orchestra.reroute")
        reason = reroute.attributes["orchestra.reason"]
        assert "stripe_refund failed (exception)" in reason
        assert "rerouted to razorpay_refund" in reason
        assert reroute.attributes["orchestra.step_id"] == "refund"
        assert reroute.attributes["orchestra.skill"] == "razorpay_refund"
        assert (
            reroute.attributes["orchestra.route"] == "razorpay_refund -> agent.summarizer -> goal"
        )
        kinds = [e.name for e in root.events]
        assert kinds.index("orchestra.fail") < kinds.index("orchestra.reroute")

        steps = [s for s in spans if s.name == "step refund"]
        failed = next(s for s in steps if s.attributes["orchestra.skill"] == "stripe_refund")
        good = next(s for s in steps if s.attributes["orchestra.skill"] == "razorpay_refund")
        assert failed.status_code == STATUS_ERROR
        assert failed.attributes["error.type"] == "exception"
        assert "ConnectionError" in failed.status_message
        assert good.attributes["orchestra.route_reason"] == reason
        assert good.attributes["orchestra.route"] == "razorpay_refund -> agent.summarizer -> goal"
        assert good.attributes["orchestra.health"] == "closed"
        assert 0 < good.attributes["orchestra.budget_remaining"] <= 1.0
        assert good.attributes["orchestra.cost"] == 0.005
        (bad_tool,) = [s for s in spans if s.name == "execute_tool stripe_refund"]
        assert bad_tool.status_code == STATUS_ERROR
        # one failure, one error.type, on the step span and on the tool span alike
        assert bad_tool.attributes["error.type"] == failed.attributes["error.type"]
        assert bad_tool.attributes["orchestra.error_class"] == "ToolRaised"
        assert failed.attributes["orchestra.error_class"] == "ToolRaised"
