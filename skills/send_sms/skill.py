"""SMS stand-in: messages are recorded in ``SENT``."""

from __future__ import annotations

import re

SENT: list[dict[str, str]] = []


def send(phone: str, text: str) -> dict[str, object]:
    """Send ``text`` to ``phone``."""
    if not re.fullmatch(r"\+[1-9]\d{6,14}", phone):
        raise ValueError(f"not an international phone number: {phone!r}")
    SENT.append({"phone": phone, "text": text})
    return {"message_id": f"sms-{len(SENT):06d}", "segments": max(1, -(-len(text) // 160))}
