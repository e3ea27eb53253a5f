"""The lexical side of retrieval: tokenization and a fielded BM25 index (bm25s).

Tool names are identifiers (``getHealthWorkforce``, ``send_email``, ``PDF&URLTool``), so the
tokenizer splits camelCase, snake_case and kebab-case before it lowercases, drops stop words
(including the filler of spoken requests: "can you help me…") and stems (Snowball, through
PyStemmer when it is installed).

Each field of a skill (name, description, parameters, body) gets its own BM25 index, so a
long body cannot drown a short name through length normalization; a query's score is the
weighted sum of the per-field scores (a simple BM25F).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_FIELD_WEIGHTS",
    "FIELDS",
    "FieldedBM25",
    "split_identifier",
    "tokenize",
]

#: The fields of a skill document, in index order.
FIELDS = ("name", "description", "parameters", "body")

#: How much each field's BM25 score counts.
DEFAULT_FIELD_WEIGHTS: Mapping[str, float] = {
    "name": 1.0,
    "description": 1.0,
    "parameters": 0.5,
    "body": 0.3,
}

# Lucene's English stop words plus the filler of requests addressed to an assistant.
STOP_WORDS = frozenset(
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
        "if",
        "in",
        "into",
        "is",
        "it",
        "no",
        "not",
        "of",
        "on",
        "or",
        "such",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "will",
        "with",
        "i",
        "me",
        "my",
        "mine",
        "myself",
        "we",
        "our",
        "ours",
        "you",
        "your",
        "yours",
        "he",
        "him",
        "his",
        "she",
        "her",
        "it",
        "its",
        "them",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
        "am",
        "were",
        "been",
        "being",
        "have",
        "has",
        "had",
        "having",
        "do",
        "does",
        "did",
        "doing",
        "would",
        "should",
        "could",
        "can",
        "may",
        "might",
        "must",
        "shall",
        "so",
        "than",
        "too",
        "very",
        "just",
        "also",
        "any",
        "some",
        "all",
        "both",
        "each",
        "few",
        "more",
        "most",
        "other",
        "own",
        "same",
        "only",
        "about",
        "above",
        "after",
        "again",
        "against",
        "before",
        "below",
        "between",
        "during",
        "from",
        "further",
        "here",
        "once",
        "out",
        "over",
        "under",
        "until",
        "up",
        "down",
        "off",
        "s",
        "t",
        "please",
        "want",
        "wanted",
        "wants",
        "like",
        "need",
        "needs",
        "needed",
        "help",
        "helps",
        "let",
        "lets",
        "know",
        "tell",
        "give",
        "find",
        "looking",
        "look",
        "trying",
        "try",
        "get",
        "got",
        "use",
        "using",
        "able",
        "us",
        "anyone",
        "something",
        "anything",
        "someone",
    ]
)

_CAMEL_1 = re.compile(r"([a-z0-9])([A-Z])")
_CAMEL_2 = re.compile(r"([A-Z]+)([A-Z][a-z])")
_WORD = re.compile(r"[a-z0-9]+")


def split_identifier(text: str) -> str:
    """Split camelCase, PascalCase, snake_case and kebab-case into space-separated words.

    >>> split_identifier("getHealthWorkforce PDF&URLTool send_email")
    'get Health Workforce PDF URL Tool send email'
    """
    text = _CAMEL_2.sub(r"\1 \2", _CAMEL_1.sub(r"\1 \2", text))
    return re.sub(r"[_\-./&:]+", " ", text)


@lru_cache(maxsize=1)
def _stemmer() -> Callable[[list[str]], list[str]]:
    try:
        import Stemmer  # type: ignore[import-not-found]  # PyStemmer (Snowball)
    except ImportError:  # pragma: no cover - PyStemmer is a declared dependency
        return _suffix_stem
    s = Stemmer.Stemmer("english")
    return s.stemWords  # type: ignore[no-any-return]


def _suffix_stem(words: list[str]) -> list[str]:
    """A crude fallback stemmer: strip plural and common verb endings."""
    out = []
    for w in words:
        for suf in ("ing", "ies", "ed", "es", "s"):
            if len(w) > len(suf) + 3 and w.endswith(suf):
                w = w[: -len(suf)]
                break
        out.append(w)
    return out


def tokenize(text: str) -> list[str]:
    """Identifier-aware, stop-word-free, stemmed tokens of ``text``."""
    words = [w for w in _WORD.findall(split_identifier(text).lower()) if w not in STOP_WORDS]
    return _stemmer()(words) if words else []


class FieldedBM25:
    """One bm25s index per field; a query scores every document in one pass per field."""

    def __init__(
        self,
        docs: Sequence[Mapping[str, Sequence[str]]],
        *,
        weights: Mapping[str, float] = DEFAULT_FIELD_WEIGHTS,
        k1: float = 1.2,
        b: float = 0.75,
    ) -> None:
        """Index ``docs``: per document, a mapping of field name to its tokens."""
        import bm25s  # deferred: keeps ``import orchestra`` light

        self.size = len(docs)
        self.weights = dict(weights)
        self._indexes: dict[str, Any] = {}
        for field in FIELDS:
            if self.weights.get(field, 0.0) <= 0:
                continue
            corpus = [list(d.get(field, ())) for d in docs]
            if not any(corpus):
                continue
            index = bm25s.BM25(k1=k1, b=b, method="lucene")
            index.index(corpus, show_progress=False)
            self._indexes[field] = index

    def scores(self, tokens: Sequence[str]) -> npt.NDArray[np.float32]:
        """BM25F-style scores of every document for one tokenized query."""
        total = np.zeros(self.size, dtype=np.float32)
        if not tokens or not self.size:
            return total
        for field, index in self._indexes.items():
            ids = index.get_tokens_ids(list(tokens))
            if ids:
                total += self.weights[field] * index.get_scores_from_ids(ids)
        return total
