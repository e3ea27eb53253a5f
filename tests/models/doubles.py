"""Test doubles of the model-router tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from orchestra.errors import ModelError
from orchestra.models import ChatMessage, ChatResponse, Usage


class FakeModel:
    """A scripted ChatModel for unit tests: answers, or raises what it is given."""

    def __init__(
        self,
        name: str,
        answers: Sequence[Any] = ("ok",),
        *,
        tokens: tuple[int, int] = (10, 5),
        cost: float = 0.0,
    ):
        self._name = name
        self.answers = list(answers)
        self.tokens = tokens
        self.cost = cost
        self.calls: list[tuple[list[ChatMessage], int | None, Mapping[str, Any] | None]] = []

    @property
    def name(self) -> str:
        return self._name

    async def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ChatResponse:
        self.calls.append((list(messages), max_tokens, metadata))
        answer = self.answers[min(len(self.calls) - 1, len(self.answers) - 1)]
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, ModelError):
            raise answer
        return ChatResponse(
            text=str(answer),
            model=self._name,
            usage=Usage(input_tokens=self.tokens[0], output_tokens=self.tokens[1]),
            cost_usd=self.cost,
        )
