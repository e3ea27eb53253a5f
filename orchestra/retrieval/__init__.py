"""Skill retrieval: find the few skills that fit a step among thousands.

>>> from orchestra.retrieval import Retriever
>>> r = Retriever(load_catalog("skills"))            # doctest: +SKIP
>>> [h.skill.name for h in r.search("convert the amount, then email the receipt", k=3)]  # doctest: +SKIP
['currency_convert', 'send_email', 'send_sms']

A graph step can take its candidates from the catalog: ``Step(candidates=retrieve("what it
must do", k=3))``; the graph resolves the :class:`Retrieve` marker through
:meth:`Retriever.search` when it compiles.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from orchestra.retrieval.embedders import (
    Embedder,
    HashingEmbedder,
    SentenceTransformerEmbedder,
    default_embedder,
)
from orchestra.retrieval.hybrid import Hit, Method, Reranker, Retriever, RetrieverConfig
from orchestra.retrieval.index import EmbeddingStore, default_cache_dir
from orchestra.retrieval.intents import split_intents

__all__ = [
    "Embedder",
    "EmbeddingStore",
    "HashingEmbedder",
    "Hit",
    "Method",
    "Reranker",
    "Retrieve",
    "Retriever",
    "RetrieverConfig",
    "SentenceTransformerEmbedder",
    "default_cache_dir",
    "default_embedder",
    "retrieve",
    "split_intents",
]


class Retrieve(BaseModel):
    """Marker for a step's candidates: the ``k`` catalog skills that best fit ``query``."""

    model_config = ConfigDict(frozen=True)

    query: str = Field(min_length=1)
    k: int = Field(3, ge=1)


def retrieve(query: str, k: int = 3) -> Retrieve:
    """Candidates for a step, found in the catalog when the graph compiles."""
    return Retrieve(query=query, k=k)
