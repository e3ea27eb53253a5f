"""CRM stand-in: a small built-in customer table."""

from __future__ import annotations

CUSTOMERS = {
    "C-1001": {
        "name": "Ada Keller",
        "email": "ada@example.com",
        "phone": "+41791234567",
        "currency": "CHF",
        "status": "active",
    },
    "C-1002": {
        "name": "Ben Ortiz",
        "email": "ben@example.com",
        "phone": "+14155550123",
        "currency": "USD",
        "status": "active",
    },
    "C-1003": {
        "name": "Chloe Martin",
        "email": "chloe@example.com",
        "phone": "+33612345678",
        "currency": "EUR",
        "status": "suspended",
    },
}


def run(customer_id: str | None = None, email: str | None = None) -> dict[str, str]:
    """Find a customer by id, else by email."""
    if customer_id is None and email is None:
        raise ValueError("give customer_id or email")
    for cid, rec in CUSTOMERS.items():
        if cid == customer_id or (email is not None and rec["email"] == email.lower()):
            return {"customer_id": cid, **rec}
    raise LookupError(f"no customer with id={customer_id!r} email={email!r}")
