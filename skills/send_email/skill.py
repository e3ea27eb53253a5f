"""Email stand-in: messages go to an in-process outbox."""

from __future__ import annotations

import hashlib

OUTBOX: list[dict[str, str]] = []


def run(to: str, subject: str, body: str) -> dict[str, str]:
    """Queue an email to ``to``; return its message id."""
    if "@" not in to:
        raise ValueError(f"not an email address: {to!r}")
    message_id = hashlib.sha1(f"{len(OUTBOX)}|{to}|{subject}".encode()).hexdigest()[:16]
    OUTBOX.append({"id": message_id, "to": to, "subject": subject, "body": body})
    return {"message_id": message_id, "status": "queued"}
