"""The flagship: triage a support ticket and resolve a refund, end to end.

    classify ─┐
    customer ─┼─► refund ─► draft ─► notify ─► summarize
    history ──┘   (retrieved)         (email|sms)  (agent | extractive)

* ``classify``, ``customer`` and ``history`` run concurrently (fan-out), ``refund`` joins them;
* ``history`` has two interchangeable sources (orders database, read-through cache);
* ``refund``'s candidates are *retrieved* from the skill catalog (``skills/``): every payment
  provider that can refund a card payment (Stripe, PayPal, Adyen);
* ``notify`` e-mails or texts the customer;
* ``summarize`` writes the case note with the ``summarizer`` agent (``agents/summarizer.yaml``)
  through the budget-aware model router, on the local vLLM server when one answers
  (``orchestra serve-model``; ``ORCHESTRA_LOCAL_MODEL_URL``), on a paid remote tier when one
  is configured (``ORCHESTRA_REMOTE_MODEL``, optional ``_URL`` and ``ORCHESTRA_REMOTE_API_KEY``)
  and the run's ``--budget`` allows it, or extractively when none does.  The agent's output
  check (invented numbers, addresses, links; length) rejects a weak tier's drift: the call
  cascades to the next tier, then to the extractive summary.

Every tool is a local stand-in with realistic latency and failure modes; make any of them
misbehave from the command line::

    orchestra run graphs/support_triage.py --fail stripe_refund            # raises
    orchestra run graphs/support_triage.py --fail paypal_refund:timeout    # hangs
    orchestra run graphs/support_triage.py --down send_email               # known down
    orchestra run graphs/support_triage.py -i '{"ticket_id": "T-2", "customer_id": "C-1002",
        "subject": "Refund", "body": "Please refund $12,500 now"}'            # over the limit

With no ``--input`` the demo ticket below is used.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel

from orchestra import Graph
from orchestra.agents import AgentRegistry, agent_skill
from orchestra.catalog import load_catalog
from orchestra.models import Backend, ModelRouter
from orchestra.retrieval import Retriever, retrieve

ROOT = Path(__file__).resolve().parents[1]


class Ticket(BaseModel):
    """A support ticket as the help desk hands it over."""

    ticket_id: str = "T-1001"
    customer_id: str = "C-1001"
    subject: str = "Charged twice for my order"
    body: str = (
        "Hi, I was charged twice for my last order ($42.50). Please refund the duplicate "
        "charge as soon as possible. Thanks, Ada"
    )


def model_router() -> ModelRouter:
    """The local vLLM tier, plus a remote tier when ``ORCHESTRA_REMOTE_MODEL`` names one."""
    backends = [
        Backend(
            model=os.environ.get("ORCHESTRA_LOCAL_MODEL", "hosted_vllm/smollm2-135m-instruct"),
            name="local",
            api_base=os.environ.get("ORCHESTRA_LOCAL_MODEL_URL", "http://127.0.0.1:8000/v1"),
            tier=0,
            timeout_s=60,
            max_output_tokens=160,
            input_cost_per_token=0.0,
            output_cost_per_token=0.0,
        )
    ]
    remote = os.environ.get("ORCHESTRA_REMOTE_MODEL")
    if remote:
        backends.append(
            Backend(
                model=remote,
                name="remote",
                api_base=os.environ.get("ORCHESTRA_REMOTE_MODEL_URL") or None,
                api_key=os.environ.get("ORCHESTRA_REMOTE_API_KEY") or None,
                tier=1,
                input_cost_per_token=float(os.environ.get("ORCHESTRA_REMOTE_INPUT_PRICE", "1e-6")),
                output_cost_per_token=float(
                    os.environ.get("ORCHESTRA_REMOTE_OUTPUT_PRICE", "3e-6")
                ),
            )
        )
    # No ledger here: each call books on the ledger of the run that makes it (--budget).
    return ModelRouter(backends, quality=0.5)


def build_graph() -> Graph:
    skills = load_catalog(ROOT / "skills")
    router = model_router()
    summarizer = agent_skill(
        AgentRegistry().load_dir(ROOT / "agents").require("summarizer"), router
    )
    # probed before routing: with no backend that may answer (no model server accepting
    # connections, no provider API that is not cooling down), the route avoids the agent
    summarizer = summarizer.model_copy(
        update={
            "probe": router.probe(),
            "timeout_s": 120.0,  # a summary on a CPU model server; below the fleet's visibility timeout
        }
    )
    # The extractive fallback is always available but writes worse notes: its declared
    # reliability (the prior that its result is acceptable) is what makes the agent preferred.
    extractive = next(s for s in skills if s.name == "summarize_text").model_copy(
        update={"reliability": 0.6}
    )
    catalog = [s for s in skills if s.name != "summarize_text"] + [extractive, summarizer]
    g = Graph(
        "support-triage",
        description="Triage a support ticket and resolve a refund",
        skills=catalog,
        input_model=Ticket,
        retriever=Retriever(catalog),
        fallback_goals=["notify", "refund"],
        max_amount=5_000,  # refunds above this need a support lead's approval
    )
    g.step("classify", ["classify_ticket"], description="classify the ticket")
    g.step("customer", ["lookup_customer"], description="look up the customer")
    g.step("history", ["orders_db", "orders_cache"], description="fetch the customer's orders")
    g.step(
        "refund",
        retrieve("refund a customer's card payment for an order", k=3),
        after=["classify", "customer", "history"],
        inputs={
            "amount": "classify.amount",
            "currency": "classify.currency",
            "order_id": "history.order_id",
        },
        description="refund the customer's payment",
    )
    g.step(
        "draft",
        ["draft_reply"],
        after="refund",
        inputs={"text": "classify.text", "name": "customer.name"},
    )
    g.step(
        "notify",
        ["send_email", "send_sms"],
        after=["draft", "customer"],
        inputs={"to": "customer.email", "phone": "customer.phone", "text": "draft.subject"},
        description="tell the customer",
    )
    g.step(
        "summarize",
        [summarizer.name, "summarize_text"],
        after="notify",
        inputs={"text": "draft.case_notes"},
        description="write the case note",
    )
    return g


graph = build_graph()
