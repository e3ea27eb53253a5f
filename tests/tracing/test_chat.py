"""InstrumentedChatModel and chat_span: a ``chat {model}`` span around any ChatModel."""

from __future__ import annotations

import pytest

from orchestra import tracing
from orchestra.errors import ModelError
from orchestra.models import ChatMessage
from orchestra.testing import ScriptedChatModel
from orchestra.tracing import InstrumentedChatModel, provider_name

HELLO = [ChatMessage(role="user", content="hello there, how are you")]


class TestInstrumentedChatModel:
    async def test_answers_like_the_model_inside_a_chat_span(self) -> None:
        """Same answer; one CLIENT span ``chat {model}`` with the GenAI attributes."""
        inner = ScriptedChatModel(["fine"], name="openai/gpt-4o-mini", cost_per_call=0.002)
        model = InstrumentedChatModel(inner)
        assert model.name == inner.name
        with (
            tracing.capture_spans() as cap,
            tracing.run_span("g", "run-1"),
            tracing.tool_span("agent.x", run_id="run-1", step_id="s1"),
        ):
            resp = await model.chat(HELLO, max_tokens=20)
        assert resp.text == "fine"
        (span,) = cap.named("chat ")
        assert span.name == "chat gpt-4o-mini"
        assert span.kind.name == "CLIENT"
        a = dict(span.attributes or {})
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.provider.name"] == "openai"
        assert a["gen_ai.request.model"] == "gpt-4o-mini"
        assert a["gen_ai.request.max_tokens"] == 20
        assert a["gen_ai.usage.input_tokens"] == resp.usage.input_tokens
        assert a["gen_ai.usage.output_tokens"] == resp.usage.output_tokens
        assert a["orchestra.cost"] == 0.002
        assert (a["orchestra.run_id"], a["orchestra.step_id"]) == ("run-1", "s1")
        (tool,) = cap.named("execute_tool")
        assert span.parent is not None and span.parent.span_id == tool.context.span_id

    async def test_a_failed_call_is_an_error_span_and_the_error_propagates(self) -> None:
        model = InstrumentedChatModel(
            ScriptedChatModel([ModelError("rate limited; key sk-abcdefghijklmnopqrstu")]),
            provider="anthropic",
            request_model="claude",
        )
        with tracing.capture_spans() as cap, pytest.raises(ModelError):
            await model.chat(HELLO)
        (span,) = cap.spans
        assert span.name == "chat claude"
        assert span.status.status_code.name == "ERROR"
        assert dict(span.attributes or {})["error.type"] == "ModelError"
        assert "sk-abcdefghijklmnopqrstu" not in (span.status.description or "")

    async def test_without_tracing_it_is_a_transparent_wrapper(self) -> None:
        tracing.setup_tracing({}, reconfigure=True)
        try:
            resp = await InstrumentedChatModel(ScriptedChatModel(["ok"])).chat(HELLO)
        finally:
            tracing.shutdown_tracing()
        assert resp.text == "ok"


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("openai/gpt-4o-mini", ("openai", "gpt-4o-mini")),
        ("hosted_vllm/smollm2", ("vllm", "smollm2")),
        ("bedrock/anthropic.claude-3", ("aws.bedrock", "anthropic.claude-3")),
        ("mistral/mistral-small", ("mistral_ai", "mistral-small")),
        ("somecloud/m", ("somecloud", "m")),
        ("scripted", ("orchestra", "scripted")),
    ],
)
def test_provider_name_maps_litellm_prefixes_to_semantic_convention_values(
    model: str, expected: tuple[str, str]
) -> None:
    assert provider_name(model) == expected
