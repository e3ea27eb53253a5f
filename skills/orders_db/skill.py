"""Order history stand-in (orders_db)."""

from __future__ import annotations

import hashlib
import time
from typing import Any


def run(customer_id: str) -> dict[str, Any]:
    time.sleep(120 / 1000)
    h = int(hashlib.sha1(customer_id.encode()).hexdigest(), 16)
    return {
        "order_id": f"ord_{h % 10**6:06d}",
        "order_amount": round(20 + (h % 9000) / 100, 2),
        "order_currency": "USD",
        "orders": 1 + h % 12,
    }
