"""Refund cancellation stand-in (the compensation of the refund providers)."""

from __future__ import annotations

import time
from typing import Any

CANCELED: list[dict[str, Any]] = []


def run(refund_id: str, provider: str) -> dict[str, Any]:
    time.sleep(60 / 1000)
    if provider not in ("stripe", "paypal", "adyen"):
        raise ValueError(f"unknown refund provider {provider!r}")
    CANCELED.append({"refund_id": refund_id, "provider": provider})
    return {"refund_id": refund_id, "status": "canceled"}
