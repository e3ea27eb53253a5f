"""Extractive summarizer: frequent-word sentence scoring, no model."""

from __future__ import annotations

import re
from collections import Counter

_STOP = set(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "from",
        "has",
        "have",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "was",
        "were",
        "will",
        "with",
    ]
)


def run(text: str, max_sentences: int = 3) -> dict[str, object]:
    """Keep the ``max_sentences`` most informative sentences of ``text``, in order."""
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s.strip()]
    words = [w for w in re.findall(r"[a-z']+", text.lower()) if w not in _STOP]
    freq = Counter(words)

    def score(s: str) -> float:
        toks = [w for w in re.findall(r"[a-z']+", s.lower()) if w not in _STOP]
        return sum(freq[w] for w in toks) / (len(toks) or 1)

    best = sorted(range(len(sentences)), key=lambda i: -score(sentences[i]))[
        : max(1, max_sentences)
    ]
    kept = [sentences[i] for i in sorted(best)]
    return {"summary": " ".join(kept), "kept": len(kept)}
