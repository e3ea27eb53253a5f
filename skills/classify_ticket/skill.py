"""Rule-based ticket classifier (stand-in for a help desk's first-pass triage)."""

from __future__ import annotations

import re
import time
from typing import Any

_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d{1,2})?|\d+(?:\.\d{1,2})?"
_AMOUNT = re.compile(
    rf"(?:(?P<sym>[$€£])\s?(?P<a>{_NUMBER})|(?P<b>{_NUMBER})\s?(?P<code>USD|EUR|GBP|CHF))"
)
_SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP"}
_INTENTS = (
    ("refund", ("refund", "money back", "reimburse", "charged twice", "return")),
    ("billing", ("invoice", "bill", "charge", "payment", "receipt")),
    ("technical", ("error", "crash", "bug", "down", "broken", "fails")),
    ("account", ("login", "password", "account", "email address", "profile")),
)


def run(subject: str, body: str) -> dict[str, Any]:
    time.sleep(0.03)
    text = f"{subject}\n{body}"
    low = text.lower()
    intent = next((name for name, words in _INTENTS if any(w in low for w in words)), "account")
    urgency = "high" if any(w in low for w in ("urgent", "asap", "immediately", "twice")) else "normal"
    m = _AMOUNT.search(text)
    amount, currency = 0.0, "USD"
    if m:
        raw = m.group("a") or m.group("b")
        amount = float(raw.replace(",", ""))
        currency = _SYMBOLS.get(m.group("sym") or "", m.group("code") or "USD")
    return {"intent": intent, "urgency": urgency, "amount": amount, "currency": currency, "text": text}
