"""Reply template for a resolved refund ticket."""

from __future__ import annotations


def run(name: str, refund_id: str, amount: float, currency: str, provider: str, text: str) -> dict[str, str]:
    body = (
        f"Hello {name},\n\nwe refunded {amount:.2f} {currency} to your original payment method "
        f"(reference {refund_id}). It shows on your statement within 5-10 business days.\n\n"
        "Kind regards,\nSupport"
    )
    notes = (
        f"Customer wrote: {text.strip()}\n"
        f"Resolution: refunded {amount:.2f} {currency} via {provider} (reference {refund_id}); "
        "customer notified."
    )
    return {"subject": f"Your refund of {amount:.2f} {currency}", "body": body, "case_notes": notes}
