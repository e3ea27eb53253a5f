"""Budgets and model tiers: the router picks a model per call and never crosses the budget.

Two tiers: a free local model (tier 0, e.g. vLLM on this machine) and a priced remote one
(tier 1). The router predicts each model's chance of success from the prompt and picks the
cheapest that is predicted good enough (the `quality` knob); the run's ledger refuses any call
whose worst-case cost would cross the hard limit. Scripted clients stand in for the two
servers here; with real ones, pass plain `Backend`s and litellm calls them.
"""

import asyncio

from orchestra import BudgetExceeded
from orchestra.models import Backend, ChatMessage, InMemoryLedger, ModelRouter
from orchestra.testing import ScriptedChatModel

local = Backend(
    model="hosted_vllm/smollm2",
    name="local",
    tier=0,
    input_cost_per_token=0.0,
    output_cost_per_token=0.0,
)
remote = Backend(
    model="openai/big-model",
    name="remote",
    tier=1,
    input_cost_per_token=10e-6,
    output_cost_per_token=30e-6,
    max_output_tokens=200,
)


async def main() -> None:
    ledger = InMemoryLedger(limit_usd=0.01)
    router = ModelRouter(
        [
            (local, ScriptedChatModel(["(local answer)"], name="local")),
            (remote, ScriptedChatModel(["(remote answer)"], name="remote", cost_per_call=0.004)),
        ],
        ledger=ledger,
        quality=0.9,
    )
    prompts = [
        ("Say hello.", {}),
        ("Prove that the sum of two odd integers is even, step by step.", {"min_tier": 1}),
        ("Translate 'thank you' to French.", {}),
    ] + [("Derive the closed form of the recurrence T(n)=2T(n/2)+n.", {"min_tier": 1})] * 3
    for text, metadata in prompts:
        try:
            resp = await router.chat(
                [ChatMessage(role="user", content=text)], max_tokens=100, metadata=metadata
            )
            why = getattr(getattr(resp, "decision", None), "reason", "")
            print(f"{resp.model:<8} ${resp.cost_usd:.4f}  {text[:50]}\n  -> {why}")
        except BudgetExceeded as exc:
            print(f"refused            {text[:50]}\n  -> {exc}")
    snap = await ledger.snapshot()
    print(f"spent ${snap.spent_usd:.4f} of ${snap.limit_usd:.2f}")
    assert snap.spent_usd <= 0.01


if __name__ == "__main__":
    asyncio.run(main())
