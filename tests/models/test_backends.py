"""Backends through litellm against a real OpenAI-compatible HTTP server: usage, cost, errors."""

from __future__ import annotations

import pytest

from orchestra.errors import ConfigError
from orchestra.models import Backend, BackendError, ChatMessage, LiteLLMChatModel

MSG = [
    ChatMessage(role="system", content="Be brief."),
    ChatMessage(role="user", content="Hello there, how are you today?"),
]


class TestBackendSpec:
    def test_model_needs_a_provider(self) -> None:
        """A model string without a provider prefix is rejected with an example."""
        with pytest.raises(ValueError, match="hosted_vllm"):
            Backend(model="gpt-4o")

    def test_prices_from_litellm_cost_map(self) -> None:
        """Known remote models are priced from litellm's (bundled, offline) cost map."""
        b = Backend(model="openai/gpt-4o-mini", tier=1)
        assert b.prices.input_per_token > 0 and b.prices.output_per_token > b.prices.input_per_token

    def test_local_is_free_unless_priced(self) -> None:
        """A hosted vLLM backend costs nothing unless prices are configured."""
        assert Backend(model="hosted_vllm/x").prices.cost(1000, 1000) == 0
        assert Backend(
            model="hosted_vllm/x", input_cost_per_token=1e-7, output_cost_per_token=1e-7
        ).prices.cost(10, 10) == pytest.approx(2e-6)

    def test_unpriced_remote_is_config_error(self) -> None:
        """A remote model litellm does not price must be priced in the spec; the error says how."""
        with pytest.raises(ConfigError, match="input_cost_per_token"):
            _ = Backend(model="openai/no-such-model-xyz").prices

    def test_cost_bound_covers_any_tokenizer(self) -> None:
        """The bound counts every UTF-8 byte as a token plus the template, and max_tokens out."""
        b = Backend(
            model="openai/x",
            input_cost_per_token=1.0,
            output_cost_per_token=10.0,
            max_output_tokens=50,
        )
        usd, tokens = b.cost_bound([ChatMessage(role="user", content="héllo")], 20)
        assert tokens == (6 + 4 + 64 + 8) + 20 and usd == (6 + 4 + 64 + 8) * 1.0 + 20 * 10.0
        assert b.cost_bound([ChatMessage(role="user", content="x")], None)[1] >= 50


def _backend(base: str, model: str = "remote-model", **kw: object) -> Backend:
    return Backend.model_validate(
        {
            "model": f"openai/{model}",
            "name": model,
            "api_base": base,
            "api_key": "test-key",
            "tier": 1,
            "input_cost_per_token": 1e-6,
            "output_cost_per_token": 2e-6,
            "timeout_s": 10,
            **kw,
        }
    )


class TestLiteLLMChatModel:
    async def test_answer_usage_and_cost(self, endpoint_factory) -> None:  # type: ignore[no-untyped-def]
        """A real HTTP round trip: the text, the usage the server reported, cost from prices."""
        ep = endpoint_factory("remote-model")
        b = _backend(ep.base_url)
        resp = await LiteLLMChatModel(b).chat(MSG, max_tokens=30)
        assert resp.text.startswith("remote-model says: Hello there")
        assert resp.usage.input_tokens > 0 and resp.usage.output_tokens > 0
        assert resp.cost_usd == pytest.approx(
            b.prices.cost(resp.usage.input_tokens, resp.usage.output_tokens)
        )
        bound_usd, _ = b.cost_bound(MSG, 30)
        assert resp.cost_usd <= bound_usd
        assert ep.stats() == {"remote-model": 1}

    @pytest.mark.parametrize(
        ("model", "kind"),
        [("fail-x", "unavailable"), ("limit-x", "rate_limit"), ("bad-x", "bad_request")],
    )
    async def test_http_errors_are_translated(
        self, endpoint_factory, model: str, kind: str
    ) -> None:  # type: ignore[no-untyped-def]
        """HTTP 500, 429 and 400 become BackendError kinds, chained to litellm's exception."""
        ep = endpoint_factory(model)
        with pytest.raises(BackendError) as err:
            await LiteLLMChatModel(_backend(ep.base_url, model)).chat(MSG)
        assert err.value.kind == kind and err.value.backend == model
        assert err.value.__cause__ is not None
        assert err.value.cools_down is (kind != "bad_request")

    async def test_connection_refused_is_unavailable(self, endpoint_factory) -> None:  # type: ignore[no-untyped-def]
        """A server that is gone is 'unavailable'."""
        ep = endpoint_factory("remote-model")
        ep.stop()
        with pytest.raises(BackendError) as err:
            await LiteLLMChatModel(_backend(ep.base_url)).chat(MSG)
        assert err.value.kind == "unavailable"

    async def test_timeout(self, endpoint_factory) -> None:  # type: ignore[no-untyped-def]
        """A server slower than the backend's timeout gives kind 'timeout'."""
        ep = endpoint_factory("slow-x")
        with pytest.raises(BackendError) as err:
            await LiteLLMChatModel(_backend(ep.base_url, "slow-x", timeout_s=1)).chat(MSG)
        assert err.value.kind == "timeout"
