"""A refund: look up the customer, pay back through one of two providers, notify them.

orchestra run graphs/refund.py -i '{"customer_id": "c-42", "amount": 30}' --fail stripe_refund
"""

import asyncio
import random

from pydantic import BaseModel

from orchestra import Graph, skill


class RefundInput(BaseModel):
    customer_id: str
    amount: float


class Customer(BaseModel):
    customer_id: str
    email: str
    phone: str


class Receipt(BaseModel):
    refund_id: str
    amount: float
    provider: str


class Notice(BaseModel):
    channel: str
    delivered: bool


@skill(cost=0.0001, latency_ms=20, capability="crm.lookup")
async def crm_lookup(customer_id: str) -> Customer:
    """Find a customer's contact details in the CRM."""
    await asyncio.sleep(0.02)
    return Customer(customer_id=customer_id, email=f"{customer_id}@example.com", phone="+15550100")


@skill(cost=0.003, latency_ms=60, capability="payments.refund", timeout_s=2, idempotent=False)
async def stripe_refund(customer_id: str, amount: float) -> Receipt:
    """Refund through Stripe."""
    await asyncio.sleep(0.06)
    return Receipt(refund_id=f"re_{random.randrange(10**8)}", amount=amount, provider="stripe")


@skill(cost=0.005, latency_ms=90, capability="payments.refund", timeout_s=2, idempotent=False)
async def razorpay_refund(customer_id: str, amount: float) -> Receipt:
    """Refund through Razorpay."""
    await asyncio.sleep(0.09)
    return Receipt(refund_id=f"rzp_{random.randrange(10**8)}", amount=amount, provider="razorpay")


@skill(cost=0.0002, latency_ms=30, capability="notify.email")
async def send_email(email: str, refund_id: str) -> Notice:
    """E-mail the customer their refund receipt."""
    await asyncio.sleep(0.03)
    return Notice(channel="email", delivered=True)


@skill(cost=0.001, latency_ms=40, capability="notify.sms")
async def send_sms(phone: str, refund_id: str) -> Notice:
    """Text the customer their refund id."""
    await asyncio.sleep(0.04)
    return Notice(channel="sms", delivered=True)


graph = Graph("refund", input_model=RefundInput, description="Refund a customer and tell them.")
graph.step("lookup", [crm_lookup])
graph.step("refund", [stripe_refund, razorpay_refund], after="lookup")
graph.step("notify", [send_email, send_sms], after="refund")
graph.fallback("refund")  # refunded but not told beats not refunded
