"""The graph the tracing tests run: lookup → refund (stripe fails, razorpay works) → an LLM
summary through the model router and litellm."""

from __future__ import annotations

import asyncio
import os

from pydantic import BaseModel

from orchestra import Graph, skill
from orchestra.agents import AgentProfile, agent_skill
from orchestra.models import Backend, ModelRouter

PLANTED_KEY = "sk-proj-PLANTEDx9Q2w8E7r6T5y4U3i2O1p0AbCdEf"
"""The LLM backend's API key (sent to the server as ``Authorization: Bearer``)."""
LEAKED_KEY = "sk-ant-api03-LEAKEDz8Y7x6W5v4U3t2S1r0QpOnMl"
"""A key the failing tool leaks in its error message; registered nowhere."""


class Customer(BaseModel):
    customer_id: str
    email: str


class Receipt(BaseModel):
    refund_id: str
    amount: float


@skill(cost=0.0001, capability="crm.lookup")
async def crm_lookup(customer_id: str) -> Customer:
    """Find the customer."""
    await asyncio.sleep(0.005)
    return Customer(customer_id=customer_id, email=f"{customer_id}@example.com")


@skill(cost=0.001, capability="payments.refund", timeout_s=2)
async def stripe_refund(customer_id: str, amount: float) -> Receipt:
    """Refund through Stripe — down in these tests, and it leaks its key in the error."""
    raise ConnectionError(f"stripe unreachable with key {LEAKED_KEY}")


@skill(cost=0.005, capability="payments.refund", timeout_s=2)
async def razorpay_refund(customer_id: str, amount: float) -> Receipt:
    """Refund through Razorpay."""
    await asyncio.sleep(0.005)
    return Receipt(refund_id="rzp_1", amount=amount)


SUMMARIZER = AgentProfile(
    name="summarizer",
    role="a concise support agent",
    instructions="Say in one sentence what happened.",
    prompt="Refund {refund_id} of {amount} for {email}",
    max_tokens=32,
)


def refund_graph(llm_base_url: str | None, *, api_key: str = PLANTED_KEY) -> Graph:
    """The test graph; the LLM step calls ``llm_base_url`` (an OpenAI-compatible server).

    Without a URL the graph stops after the refund (no LLM step).
    """
    g = Graph("refund")
    g.step("lookup", [crm_lookup])
    g.step("refund", [stripe_refund, razorpay_refund], after="lookup")
    if llm_base_url is not None:
        backend = Backend(
            model="hosted_vllm/tiny", api_base=llm_base_url, api_key=api_key, timeout_s=10
        )
        summarize = agent_skill(SUMMARIZER, ModelRouter([backend]))
        g.step("summarize", [summarize], after="refund")
    return g


def build_graph() -> Graph:
    """The graph file form (``orchestra worker --graph``/``orchestra run``): the LLM step calls
    ``$TRACING_TEST_LLM_URL`` when it is set."""
    return refund_graph(os.environ.get("TRACING_TEST_LLM_URL"))
