"""Currency conversion against a fixed reference table (offline, deterministic)."""

from __future__ import annotations

# Units of each currency per 1 USD (a reference snapshot).
RATES = {"USD": 1.0, "EUR": 0.92, "GBP": 0.79, "JPY": 151.0, "CHF": 0.88, "CAD": 1.36}


def run(amount: float, from_currency: str, to_currency: str) -> dict[str, object]:
    """Convert ``amount`` from ``from_currency`` to ``to_currency``."""
    src, dst = from_currency.upper(), to_currency.upper()
    for code in (src, dst):
        if code not in RATES:
            raise ValueError(f"unknown currency {code!r}; known: {', '.join(sorted(RATES))}")
    rate = RATES[dst] / RATES[src]
    digits = 0 if dst == "JPY" else 2
    return {"amount": round(amount * rate, digits), "currency": dst, "rate": round(rate, 6)}
