"""The one chat-model interface every LLM call in Orchestra goes through.

Demotion (the core), agent steps and the model router all speak :class:`ChatModel`.
Concrete backends (litellm, the local vLLM server) and wrappers (budget, fallback,
tracing) implement it; :class:`orchestra.testing.ScriptedChatModel` is the test double.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

__all__ = ["ChatMessage", "ChatModel", "ChatResponse", "Usage"]


class ChatMessage(BaseModel):
    """One message of a chat exchange."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str


class Usage(BaseModel):
    """Tokens a call consumed, as the backend reported them."""

    input_tokens: int = 0
    output_tokens: int = 0


class ChatResponse(BaseModel):
    """What a chat call returned, with what it cost.

    ``model`` names the backend that answered (its label); ``response_model`` the model the
    server says answered (``gen_ai.response.model``), when it says.  ``booked`` is true when
    the cost is already on the run's ledger (the router books what it routes).
    """

    text: str
    model: str
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = 0.0
    response_model: str = ""
    booked: bool = False


@runtime_checkable
class ChatModel(Protocol):
    """Anything that can answer a chat: a backend, a router, a scripted double."""

    @property
    def name(self) -> str:
        """A stable name for logs and traces (e.g. ``hosted_vllm/smollm2``)."""
        ...

    async def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ChatResponse:
        """Answer ``messages``. Raise :class:`orchestra.errors.ModelError` on failure."""
        ...
