"""Model backends: what one LLM endpoint is, and the litellm adapter that calls it.

A :class:`Backend` declares one endpoint as a litellm model string — a locally hosted vLLM
server (``hosted_vllm/<served model>`` with its ``api_base``), or any remote provider
litellm knows (``openai/...``, ``anthropic/...``) — with a ``tier`` (0 = cheapest, higher =
stronger) and prices (configured, or read from litellm's cost map).

:class:`LiteLLMChatModel` implements :class:`~orchestra.models.base.ChatModel` for one
backend.  This is the only module that imports litellm; every litellm exception is
translated here into :class:`BackendError` (a :class:`~orchestra.errors.ModelError`) with
``raise ... from exc``, and ``kind`` says whether the router should cool the backend down.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import math
import os
import threading
import warnings
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestra import tracing
from orchestra.errors import ConfigError, ModelError
from orchestra.models.base import ChatMessage, ChatResponse, Usage
from orchestra.redact import add_secret

__all__ = [
    "Backend",
    "BackendError",
    "ErrorKind",
    "LiteLLMChatModel",
    "Prices",
    "import_litellm",
    "preload_litellm",
]

ErrorKind = Literal[
    "timeout", "rate_limit", "unavailable", "auth", "bad_request", "context", "other"
]
"""Why a backend call failed.  All but ``bad_request`` and ``context`` cool the backend down."""

# Providers that run on our own hardware: free in USD unless prices are configured.
_LOCAL_PROVIDERS = frozenset({"hosted_vllm", "ollama", "ollama_chat", "lm_studio", "llamafile"})


class BackendError(ModelError):
    """A backend call failed; ``kind`` classifies it, ``backend`` names the endpoint."""

    def __init__(self, message: str, *, backend: str, kind: ErrorKind, status: int | None = None):
        self.backend = backend
        self.kind: ErrorKind = kind
        self.status = status
        super().__init__(f"{backend}: {kind}: {message}")

    @property
    def cools_down(self) -> bool:
        """True when the backend itself is at fault and should be routed around for a while."""
        return self.kind not in ("bad_request", "context")


class Prices(BaseModel):
    """USD per token, input and output."""

    model_config = ConfigDict(frozen=True)

    input_per_token: float = Field(ge=0)
    output_per_token: float = Field(ge=0)

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """USD for a call that used these tokens."""
        return input_tokens * self.input_per_token + output_tokens * self.output_per_token


class Backend(BaseModel):
    """One LLM endpoint the router may send a call to.

    ``model`` is a litellm model string.  ``input_cost_per_token``/``output_cost_per_token``
    override litellm's cost map; a local provider (``hosted_vllm/...``) defaults to free, and
    a remote model litellm does not price must be priced here (else :class:`ConfigError`).
    ``max_output_tokens`` caps a call that asks for no limit, so its cost can be bounded.
    ``template_overhead_tokens`` bounds what a chat template adds to the prompt.
    """

    model_config = ConfigDict(frozen=True)

    model: str = Field(min_length=3)
    name: str = ""
    api_base: str | None = None
    api_key: str | None = Field(default=None, repr=False)
    tier: int = Field(default=0, ge=0)
    input_cost_per_token: float | None = Field(default=None, ge=0)
    output_cost_per_token: float | None = Field(default=None, ge=0)
    timeout_s: float = Field(default=60.0, gt=0)
    max_output_tokens: int = Field(default=512, ge=1)
    context_window: int | None = Field(default=None, ge=1)
    template_overhead_tokens: int = Field(default=64, ge=0)
    cooldown_s: float = Field(default=30.0, ge=0)
    extra: dict[str, Any] = Field(default_factory=dict)

    @field_validator("model")
    @classmethod
    def _has_provider(cls, v: str) -> str:
        if "/" not in v:
            raise ValueError(
                "must be a litellm model string with its provider, e.g. 'openai/gpt-4o-mini' "
                "or 'hosted_vllm/<served-model-name>'"
            )
        return v

    @property
    def label(self) -> str:
        """The name used in logs, the ledger and the policy (``name`` or ``model``)."""
        return self.name or self.model

    @property
    def provider(self) -> str:
        """The litellm provider prefix (``hosted_vllm``, ``openai``, ...)."""
        return self.model.split("/", 1)[0]

    @property
    def is_local(self) -> bool:
        """True for servers we host (vLLM and friends)."""
        return self.provider in _LOCAL_PROVIDERS

    @cached_property
    def prices(self) -> Prices:
        """Configured prices, else litellm's cost map, else free for local providers."""
        cin, cout = self.input_cost_per_token, self.output_cost_per_token
        if cin is None or cout is None:
            mapped = _cost_map_prices(self.model)
            if mapped is None:
                if not self.is_local:
                    raise ConfigError(
                        f"litellm's cost map has no price for {self.model!r}; set "
                        "input_cost_per_token and output_cost_per_token on this backend",
                        field="input_cost_per_token",
                        source=self.label,
                    )
                mapped = (0.0, 0.0)
            cin = mapped[0] if cin is None else cin
            cout = mapped[1] if cout is None else cout
        return Prices(input_per_token=cin, output_per_token=cout)

    def input_token_bound(self, messages: Sequence[ChatMessage]) -> int:
        """An upper bound on the prompt tokens ``messages`` can cost on any tokenizer.

        A byte-level BPE token covers at least one UTF-8 byte, so the byte count plus the chat
        template's overhead bounds the count a backend will bill.
        """
        body = sum(len(m.content.encode("utf-8")) + len(m.role) for m in messages)
        return body + self.template_overhead_tokens + 8 * len(messages)

    def output_token_bound(self, max_tokens: int | None) -> int:
        """The most completion tokens a call may produce (``max_tokens`` or the backend cap)."""
        return min(max_tokens, self.max_output_tokens) if max_tokens else self.max_output_tokens

    def cost_bound(
        self, messages: Sequence[ChatMessage], max_tokens: int | None
    ) -> tuple[float, int]:
        """The most a call can cost: (USD, tokens)."""
        tin, tout = self.input_token_bound(messages), self.output_token_bound(max_tokens)
        return self.prices.cost(tin, tout), tin + tout


def _cost_map_prices(model: str) -> tuple[float, float] | None:
    litellm = _litellm()
    for key in (model, model.split("/", 1)[1]):
        info = litellm.model_cost.get(key)
        if info and info.get("input_cost_per_token") is not None:
            return float(info["input_cost_per_token"]), float(
                info.get("output_cost_per_token") or 0.0
            )
    return None


_READONLY_WARNING = r".*is using the `ReadOnly` qualifier.*"

_LAZY_LITELLM_MODULES = (
    # imported by litellm on the first completion; at import it builds a pydantic TypeAdapter
    # that warns (ReadOnly TypedDict items), which fails under warnings-as-errors mid-call.
    "litellm.llms.github_copilot.per_user_auth",
)


@functools.cache
def _litellm() -> Any:
    """Import litellm lazily (it is slow to import) and offline (no cost-map download)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import litellm

        for name in _LAZY_LITELLM_MODULES:
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
    litellm.telemetry = False
    litellm.suppress_debug_info = True
    return litellm


_preload: threading.Thread | None = None
_preload_lock = threading.Lock()


def preload_litellm() -> None:
    """Start importing litellm on a background thread, once per process.

    litellm takes seconds to import.  A run whose graph has agent steps (and a worker that
    hosts them) calls this at its start, so the import is done, off the hot path, before
    the first model call starts its clock; ``import orchestra`` never imports litellm.
    """
    global _preload
    with _preload_lock:
        if _preload is None and _litellm.cache_info().currsize == 0:
            _preload = threading.Thread(
                target=_preload_target, name="orchestra-litellm-import", daemon=True
            )
            _preload.start()


def _preload_target() -> None:
    try:
        _litellm()
    except BaseException:  # the first model call imports it again, and says why
        return


def import_litellm() -> None:
    """Import litellm now (a worker at start, before its pool forks)."""
    _litellm_loaded()


def _litellm_loaded() -> Any:
    with _preload_lock:
        t = _preload
    if t is not None:
        t.join()
    return _litellm()


async def litellm_ready() -> Any:
    """litellm, imported off the event loop (waits for a preload in progress)."""
    if _litellm.cache_info().currsize:
        return _litellm()
    return await asyncio.to_thread(_litellm_loaded)


class LiteLLMChatModel:
    """A :class:`~orchestra.models.base.ChatModel` for one :class:`Backend`, through litellm.

    Calls are not retried here (the router decides where a failed call goes next); the cost
    of a call is computed from the usage the backend reports and this backend's prices.
    """

    def __init__(self, backend: Backend):
        self.backend = backend
        add_secret(backend.api_key)  # never in a log line or a span

    @property
    def name(self) -> str:
        """The backend's label."""
        return self.backend.label

    def __repr__(self) -> str:
        return f"LiteLLMChatModel({self.backend.label!r})"

    async def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ChatResponse:
        """Send one chat completion; raise :class:`BackendError` on any failure.

        The call is a ``chat {model}`` span (GenAI attributes, usage, cost, the model the
        server says answered, and ``orchestra.route_reason`` when the router says why it chose
        this backend) and the request carries the W3C trace headers, so the server joins the
        run's trace.  litellm's import is awaited before the span starts: never in its time.
        """
        await litellm_ready()
        provider, model = tracing.provider_name(self.backend.model)
        attributes: dict[str, Any] = {
            "orchestra.backend": self.backend.label,
            "orchestra.tier": self.backend.tier,
        }
        route_reason = (metadata or {}).get("route_reason")
        if isinstance(route_reason, str) and route_reason:
            attributes["orchestra.route_reason"] = route_reason
        with tracing.chat_span(
            model,
            provider=provider,
            max_tokens=self.backend.output_token_bound(max_tokens),
            attributes=attributes,
        ) as span:
            response = await self._chat(messages, max_tokens, tracing.inject_context())
            tracing.record_chat_response(span, response)
            if response.response_model and span.is_recording():
                span.set_attribute("gen_ai.response.model", response.response_model)
            return response

    async def _chat(
        self,
        messages: Sequence[ChatMessage],
        max_tokens: int | None,
        trace_headers: Mapping[str, str],
    ) -> ChatResponse:
        litellm = _litellm()
        b = self.backend
        kwargs: dict[str, Any] = {
            "model": b.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": b.output_token_bound(max_tokens),
            "timeout": b.timeout_s,
            "num_retries": 0,
            **b.extra,
        }
        if trace_headers:
            kwargs["extra_headers"] = {**kwargs.get("extra_headers", {}), **trace_headers}
        if b.api_base:
            kwargs["api_base"] = b.api_base
        if b.api_key:
            kwargs["api_key"] = b.api_key
        try:
            with warnings.catch_warnings():
                # litellm builds pydantic adapters lazily, mid-call, over TypedDicts with
                # ReadOnly items; pydantic warns about each.  Not ours to fix; not an error.
                warnings.filterwarnings("ignore", message=_READONLY_WARNING, category=UserWarning)
                resp = await litellm.acompletion(**kwargs)
        except Exception as exc:
            raise _translate(exc, b.label) from exc
        try:
            text = resp.choices[0].message.content or ""
            usage = getattr(resp, "usage", None)
            tin = int(getattr(usage, "prompt_tokens", 0) or 0)
            tout = int(getattr(usage, "completion_tokens", 0) or 0)
            answered_by = str(getattr(resp, "model", "") or "")
        except (AttributeError, IndexError, TypeError, ValueError) as exc:
            raise BackendError(f"malformed response: {exc}", backend=b.label, kind="other") from exc
        if usage is None or tin + tout == 0:
            # No usage reported: book the bound, never less than what may have been spent.
            tin, tout = b.input_token_bound(messages), b.output_token_bound(max_tokens)
        cost = b.prices.cost(tin, tout)
        if not math.isfinite(cost):
            raise BackendError("non-finite cost", backend=b.label, kind="other")
        return ChatResponse(
            text=text,
            model=b.label,
            usage=Usage(input_tokens=tin, output_tokens=tout),
            cost_usd=cost,
            response_model=answered_by,
        )


def _translate(exc: Exception, backend: str) -> BackendError:
    """The most specific :class:`BackendError` for a litellm (or transport) exception."""
    litellm = _litellm()
    ex = litellm.exceptions
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    table: tuple[tuple[Any, ErrorKind], ...] = (
        (ex.ContextWindowExceededError, "context"),
        (ex.Timeout, "timeout"),
        (ex.RateLimitError, "rate_limit"),
        (ex.AuthenticationError, "auth"),
        (ex.PermissionDeniedError, "auth"),
        (ex.APIConnectionError, "unavailable"),
        (ex.ServiceUnavailableError, "unavailable"),
        (ex.InternalServerError, "unavailable"),
        (ex.BadGatewayError, "unavailable"),
        (ex.NotFoundError, "unavailable"),
        (ex.BadRequestError, "bad_request"),
    )
    kind: ErrorKind = "other"
    for cls, k in table:
        if isinstance(exc, cls):
            kind = k
            break
    else:
        if isinstance(exc, TimeoutError):
            kind = "timeout"
        elif isinstance(exc, (ConnectionError, OSError)) or (status is not None and status >= 500):
            kind = "unavailable"
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return BackendError(msg[:300], backend=backend, kind=kind, status=status)
