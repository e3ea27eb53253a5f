"""Goal demotion: when the main goal is out of reach, pick a declared lesser goal.

This is the only place the core asks an LLM anything, and it asks once per demotion: given
why the run is stuck and which declared fallback goals are still reachable, which one to
settle for.  Without a model the first reachable fallback in declared order is taken.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from orchestra.errors import ModelError
from orchestra.models.base import ChatMessage, ChatModel
from orchestra.models.budget import book_unreserved, meter_model_call

__all__ = ["DemotionChoice", "choose_fallback"]


@dataclass(frozen=True)
class DemotionChoice:
    goal: str | None
    reason: str
    llm_calls: int


_SYSTEM = (
    "You are the control plane of a workflow engine. The workflow cannot reach its goal. "
    "Pick the best lesser goal from the list, or answer NONE if none is acceptable. "
    "Answer with the goal's name only."
)


async def choose_fallback(
    model: ChatModel | None,
    *,
    graph: str,
    why: str,
    completed: Sequence[str],
    reachable: Sequence[tuple[str, Sequence[str]]],
) -> DemotionChoice:
    """Choose among ``reachable`` goals (name, required steps), in declared preference order."""
    if not reachable:
        return DemotionChoice(None, "no declared fallback goal is reachable", 0)
    if model is None:
        name = reachable[0][0]
        return DemotionChoice(
            name, f"first reachable fallback goal {name!r} (no demotion model configured)", 0
        )
    options = "\n".join(f"- {n}: needs steps {', '.join(req)}" for n, req in reachable)
    prompt = (
        f"Workflow: {graph}\nWhy it is stuck: {why}\n"
        f"Steps already completed: {', '.join(completed) or 'none'}\n"
        f"Reachable lesser goals, in the author's order of preference:\n{options}\n"
        "Which goal should the run settle for?"
    )
    try:
        resp = await model.chat(
            [ChatMessage(role="system", content=_SYSTEM), ChatMessage(role="user", content=prompt)],
            max_tokens=20,
            metadata={"purpose": "demotion", "graph": graph},
        )
    except ModelError as exc:
        return DemotionChoice(None, f"demotion model {model.name} failed: {exc}", 1)
    if not resp.booked:  # a model that is not a router: its cost goes on the run's ledger
        await book_unreserved(
            resp.cost_usd,
            resp.usage.input_tokens + resp.usage.output_tokens,
            label="demotion",
        )
        # a router (with a ledger of its own) counted its calls already
        routed = getattr(resp, "decision", None) is not None
        meter_model_call(calls=0 if routed else 1, booked_usd=resp.cost_usd)
    names = [n for n, _ in reachable]
    found = [
        (m.start(), n) for n in names for m in [re.search(rf"\b{re.escape(n)}\b", resp.text)] if m
    ]
    if found:
        name = min(found)[1]
        return DemotionChoice(name, f"{model.name} chose {name!r}", 1)
    return DemotionChoice(
        None, f"{model.name} accepted no lesser goal (answered {resp.text.strip()[:60]!r})", 1
    )
