"""PayPal refund stand-in."""

from __future__ import annotations

import hashlib
import time
from typing import Any

REFUNDS: list[dict[str, Any]] = []


def run(order_id: str, amount: float, currency: str) -> dict[str, Any]:
    time.sleep(150 / 1000)
    if amount <= 0:
        raise ValueError(f"refund amount must be positive, got {amount}")
    if amount >= 10_000:
        raise ValueError("refunds of 10,000 or more need a manual review")
    refund_id = "pa_" + hashlib.sha1(f"{order_id}|{len(REFUNDS)}".encode()).hexdigest()[:12]
    REFUNDS.append({"refund_id": refund_id, "order_id": order_id, "amount": amount})
    return {"refund_id": refund_id, "provider": "paypal", "amount": amount, "currency": currency, "status": "succeeded"}
