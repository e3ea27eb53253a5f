"""A test kit for your own graphs: a scripted chat model and misbehaving tools.

::

    from orchestra.testing import ScriptedChatModel, misbehave

    model = ScriptedChatModel(["charge"])            # answers in order, records prompts
    broken = misbehave(stripe, "timeout")             # same skill, now times out
    flaky = misbehave(stripe, "exception", count=2)   # fails twice, then works
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from orchestra.errors import ModelError
from orchestra.models.base import ChatMessage, ChatResponse, Usage
from orchestra.skills import Skill

__all__ = ["FaultKind", "ScriptedChatModel", "faults_from", "misbehave"]

FaultKind = Literal["exception", "timeout", "malformed"]


class ScriptedChatModel:
    """A :class:`~orchestra.models.ChatModel` that answers from a script.

    ``script`` is a list of answers (used in order; the last repeats) or a function of the
    messages.  Every call is recorded in :attr:`calls`.  An answer that is an exception
    instance is raised (wrap it as :class:`ModelError` to simulate a backend failure).
    """

    def __init__(
        self,
        script: Sequence[str | BaseException] | Callable[[Sequence[ChatMessage]], str],
        *,
        name: str = "scripted",
        cost_per_call: float = 0.0,
    ):
        self._script = script
        self._name = name
        self.cost_per_call = cost_per_call
        self.calls: list[list[ChatMessage]] = []

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
        self.calls.append(list(messages))
        if callable(self._script):
            answer: str | BaseException = self._script(messages)
        else:
            answer = self._script[min(len(self.calls), len(self._script)) - 1]
        if isinstance(answer, BaseException):
            if isinstance(answer, ModelError):
                raise answer
            raise ModelError(f"{self._name}: {answer}") from answer
        tokens_in = sum(len(m.content) for m in messages) // 4
        return ChatResponse(
            text=answer,
            model=self._name,
            usage=Usage(input_tokens=tokens_in, output_tokens=max(1, len(answer) // 4)),
            cost_usd=self.cost_per_call,
        )


def misbehave(
    skill: Skill,
    kind: FaultKind,
    *,
    count: int | None = None,
    from_call: int = 1,
    calls: list[int] | None = None,
) -> Skill:
    """A copy of ``skill`` that fails with ``kind`` on calls ``from_call`` .. ``+count-1``.

    ``count=None`` fails forever.  ``timeout`` sleeps past the skill's timeout; ``malformed``
    returns a value its output model rejects.  Pass a list as ``calls`` to have each call's
    number appended to it.
    """
    counter = itertools.count(1)
    inner = skill

    async def fn(**kwargs: Any) -> Any:
        n = next(counter)
        if calls is not None:
            calls.append(n)
        failing = n >= from_call and (count is None or n < from_call + count)
        if failing:
            if kind == "exception":
                raise RuntimeError(f"{inner.name}: injected failure (call {n})")
            if kind == "timeout":
                await asyncio.sleep(inner.timeout_s * 4 + 1)
            return _garbage()
        return await inner.acall(kwargs)

    return inner.model_copy(update={"fn": fn})


def _garbage() -> Any:
    return ["not", "what", "the", "schema", "says"]


def faults_from(specs: Iterable[str]) -> dict[str, FaultKind]:
    """Parse ``NAME[:KIND]`` command-line specs (kind defaults to ``exception``)."""
    out: dict[str, FaultKind] = {}
    for spec in specs:
        name, _, kind = spec.partition(":")
        kind = kind or "exception"
        if kind not in ("exception", "timeout", "malformed"):
            raise ValueError(f"{spec!r}: fault kind must be exception, timeout or malformed")
        out[name] = kind  # type: ignore[assignment]
    return out
