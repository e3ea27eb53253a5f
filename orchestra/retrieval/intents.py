"""Multi-intent requests: split a request into the sub-requests that each need a tool.

"Convert the amount, then email the receipt" needs two tools; a single ranked list of the
whole request tends to fill its top with near-duplicates of whichever intent dominates the
wording.  :func:`split_intents` cuts a request at sentence ends and at the connectives that
chain actions ("then", "after that", "additionally", "and also", ", and …"), and merges back
pieces too short to name a task on their own.  Rule-based, deterministic, no model: it runs
in microseconds on every query.
"""

from __future__ import annotations

import re

from orchestra.retrieval.lexical import tokenize

__all__ = ["split_intents"]

# Connectives that start a new action.  Ordered longest first so "and then" wins over "and".
_CONNECTIVES = (
    r"(?:after|once|when|upon) [^,.;!?]{1,60},",  # "After obtaining this information,"
    r"after (?:that|this|which)",
    r"and (?:then|also|after that|afterwards|finally|additionally|next|lastly)",
    r"as well as",
    r"in addition(?: to that)?",
    r"additionally",
    r"furthermore",
    r"moreover",
    r"afterwards",
    r"followed by",
    r"finally",
    r"lastly",
    r"besides(?: that)?",
    r"then",
    r"also",
    r"plus",
    r"next",
)
_CONNECTIVE_RE = re.compile(
    r"(?:,\s*|\s+|^)(?:" + "|".join(_CONNECTIVES) + r")(?!\w)[,:]?\s*", re.IGNORECASE
)
# ", and" / "; and" / " and " between clauses; split only when both sides stand alone.
_AND_RE = re.compile(r"\s*[,;]?\s+and\s+", re.IGNORECASE)
# Both sides of a split at a bare "and" need this many content words ("salt and pepper" stays).
_AND_MIN_TOKENS = 3
_SENTENCE_RE = re.compile(r"(?<=[.!?;])\s+|\n+")


def _content(text: str) -> int:
    return len(tokenize(text))


def split_intents(request: str, *, min_tokens: int = 1, max_parts: int = 8) -> list[str]:
    """The sub-requests of ``request``, in order; ``[request]`` when it has one intent.

    A piece with fewer than ``min_tokens`` content words (after stop words) is merged into
    its neighbour; at most ``max_parts`` pieces come back (the tail is merged).
    """
    text = request.strip()
    if not text:
        return []
    pieces: list[str] = []
    for sentence in _SENTENCE_RE.split(text):
        for clause in _CONNECTIVE_RE.split(sentence):
            parts = _AND_RE.split(clause)
            if len(parts) > 1 and all(_content(p) >= _AND_MIN_TOKENS for p in parts):
                pieces.extend(parts)
            else:
                pieces.append(clause)
    pieces = [p.strip(" ,;:.") for p in pieces if p and p.strip(" ,;:.")]
    merged: list[str] = []
    for p in pieces:
        if merged and _content(p) < min_tokens:
            merged[-1] = f"{merged[-1]} {p}"
        else:
            merged.append(p)
    if len(merged) > 1 and _content(merged[0]) < min_tokens:
        merged[1] = f"{merged[0]} {merged[1]}"
        merged.pop(0)
    if len(merged) > max_parts:
        merged = [*merged[: max_parts - 1], " ".join(merged[max_parts - 1 :])]
    return merged or [text]
