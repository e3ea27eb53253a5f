"""The Retriever: hybrid search, multi-intent coverage, persistence, substitutes, fallbacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel, ValidationError
from structlog.testing import capture_logs

from orchestra.catalog import load_catalog
from orchestra.retrieval import (
    HashingEmbedder,
    Retrieve,
    Retriever,
    RetrieverConfig,
    SentenceTransformerEmbedder,
    default_embedder,
    retrieve,
)
from orchestra.retrieval import embedders as embedders_mod
from orchestra.retrieval.ann import IVFIndex
from orchestra.retrieval.hybrid import skill_passages
from orchestra.skills import Skill, skill

from .helpers import DATA, ROOT, CountingEmbedder, needs_embed


def names(hits: list) -> list[str]:  # type: ignore[type-arg]
    return [h.skill.name for h in hits]


@needs_embed
class TestHybridSearch:
    def test_two_intents_both_at_the_top(
        self, bundled: list[Skill], minilm: SentenceTransformerEmbedder, embed_cache: Path
    ) -> None:
        r = Retriever(bundled, embedder=minilm, cache_dir=embed_cache)
        top = names(r.search("convert the amount, then email the receipt", k=2))
        assert set(top) == {"currency_convert", "send_email"}

    def test_three_intents_all_in_the_top_three(
        self, bundled: list[Skill], minilm: SentenceTransformerEmbedder, embed_cache: Path
    ) -> None:
        r = Retriever(bundled, embedder=minilm, cache_dir=embed_cache)
        q = "Look up the customer's record, then convert the total into their currency and text it to their phone"
        assert set(names(r.search(q, k=3))) == {"lookup_customer", "currency_convert", "send_sms"}

    def test_single_intent_best_first_with_falling_scores(
        self, bundled: list[Skill], minilm: SentenceTransformerEmbedder, embed_cache: Path
    ) -> None:
        r = Retriever(bundled, embedder=minilm, cache_dir=embed_cache)
        hits = r.search("shorten these meeting notes to a few sentences", k=5)
        assert hits[0].skill.name == "summarize_text"
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        assert len(hits) == 5
        assert r.search("", k=3) == [] and r.search("x", k=0) == []
        assert len(r.search("anything", k=50)) == len(bundled)

    def test_the_body_is_searched(
        self, minilm: SentenceTransformerEmbedder, embed_cache: Path
    ) -> None:
        """A detail only the Markdown body mentions still finds the skill (real Agent Skills)."""
        skills = load_catalog(DATA / "agent-skills")
        q = "write frames to a file with imageio"  # only slack-gif-creator's body says imageio
        assert "imageio" not in next(s for s in skills if s.name == "slack-gif-creator").description
        small = {
            "slack-gif-creator",
            "canvas-design",
            "algorithmic-art",
            "theme-factory",
            "internal-comms",
        }
        with_body = Retriever(
            [s for s in skills if s.name in small], embedder=minilm, cache_dir=embed_cache
        )
        assert with_body.search(q, k=1)[0].skill.name == "slack-gif-creator"
        assert skill_passages(
            next(s for s in skills if s.name == "claude-api")
        )  # long body → passages

    def test_agent_skills_found_by_what_they_do(
        self, minilm: SentenceTransformerEmbedder, embed_cache: Path
    ) -> None:
        light = [s for s in load_catalog(DATA / "agent-skills") if len(s.body) < 12_000]
        r = Retriever(light, embedder=minilm, cache_dir=embed_cache)
        assert (
            r.search("write a status update for the leadership team", k=1)[0].skill.name
            == "internal-comms"
        )
        assert (
            r.search("test my local web app in a headless browser", k=1)[0].skill.name
            == "webapp-testing"
        )


class TestPersistence:
    """Vectors persist by content hash; a rebuild embeds only the skills that changed."""

    def _catalog(self) -> list[Skill]:
        return [
            Skill(
                name=f"tool_{i}",
                description=f"Handles task number {i} about {w}",
                body=f"Details on {w}.",
            )
            for i, w in enumerate(["invoices", "weather", "flights", "songs", "recipes"])
        ]

    @needs_embed
    def test_rebuild_embeds_only_changed_skills(
        self, minilm: SentenceTransformerEmbedder, tmp_path: Path
    ) -> None:
        skills = self._catalog()
        first = CountingEmbedder(minilm)
        r1 = Retriever(skills, embedder=first, cache_dir=tmp_path)
        assert r1.embedded_count == len(first.documents) == 2 * len(skills)  # header + body passage

        second = CountingEmbedder(minilm)
        r2 = Retriever(skills, embedder=second, cache_dir=tmp_path)
        assert second.documents == [] and r2.embedded_count == 0
        assert names(r2.search("weather", k=1)) == ["tool_1"]

        changed = [
            *skills[:3],
            skills[3].model_copy(update={"description": "Plays music from a playlist"}),
            skills[4],
        ]
        third = CountingEmbedder(minilm)
        r3 = Retriever(changed, embedder=third, cache_dir=tmp_path)
        assert third.documents == ["tool 3: Plays music from a playlist"]
        assert r3.embedded_count == 1
        assert names(r3.search("play a music playlist", k=1)) == ["tool_3"]

    def test_cache_is_keyed_by_embedder(self, tmp_path: Path) -> None:
        Retriever(self._catalog(), embedder=HashingEmbedder(64), cache_dir=tmp_path)
        Retriever(self._catalog(), embedder=HashingEmbedder(32), cache_dir=tmp_path)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["hashing_32", "hashing_64"]


class TestFallbacks:
    def test_bm25_only_without_embedder(self, bundled: list[Skill]) -> None:
        r = Retriever(bundled, embedder=None)
        assert not r.has_dense
        assert names(r.search("send an email", k=1)) == ["send_email"]
        assert names(r.search("send an email", k=1, method="dense")) == ["send_email"]

    def test_default_embedder_warns_and_returns_none_without_the_extra(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(embedders_mod, "_embed_extra_installed", lambda: False)
        with capture_logs() as logs:
            assert default_embedder() is None
            r = Retriever([Skill(name="a", description="alpha tool")], embedder="default")
        assert not r.has_dense
        assert any(e["log_level"] == "warning" and "BM25 only" in e["event"] for e in logs)

    def test_importing_orchestra_does_not_import_torch(self) -> None:
        code = "import orchestra, orchestra.retrieval, orchestra.catalog, sys; print('torch' in sys.modules)"
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
        )
        assert out.stdout.strip() == "False"

    def test_duplicate_names_are_rejected(self) -> None:
        from orchestra.errors import SkillSpecError

        with pytest.raises(SkillSpecError, match="unique"):
            Retriever([Skill(name="a"), Skill(name="a")], embedder=None)


class TestSubstitutes:
    """Substitutes need an implementation and an input schema the step can fill."""

    def _skills(self) -> list[Skill]:
        @skill
        def notify_email(to: str, subject: str, body: str) -> str:
            """Send a notification message to the customer by email."""
            return "ok"

        @skill
        def notify_sms(phone: str, text: str) -> str:
            """Send a notification message to the customer by SMS."""
            return "ok"

        @skill
        def notify_push(user_id: str, text: str, badge: int = 0) -> str:
            """Send a notification message to the customer's phone app as a push message."""
            return "ok"

        @skill
        def bake_cake(flour: str) -> str:
            """Bake a chocolate cake."""
            return "ok"

        doc_only = Skill(
            name="notify_guide", description="How to send a notification message to a customer"
        )
        return [notify_email, notify_sms, notify_push, bake_cake, doc_only]

    def test_only_satisfiable_implemented_skills_come_back(self) -> None:
        r = Retriever(self._skills(), embedder=HashingEmbedder())
        subs = r.substitutes(
            "notify the customer", {"phone", "text", "user_id"}, exclude={"notify_sms"}, k=3
        )
        assert [s.name for s in subs] == ["notify_push"]

    @pytest.mark.parametrize(
        ("request_text", "first"),
        [
            ("notify the customer by SMS text to their phone", "notify_sms"),
            ("notify the customer by email with a subject", "notify_email"),
            ("push a notification to the customer's phone app", "notify_push"),
        ],
    )
    def test_ranked_by_fit_and_capped_at_k(self, request_text: str, first: str) -> None:
        """The skill that fits the request best comes first; the order is the search's order
        with what cannot stand in (no implementation, unfillable input) left out."""
        r = Retriever(self._skills(), embedder=HashingEmbedder())
        fields = {"phone", "text", "user_id", "to", "subject", "body", "flour"}
        subs = [s.name for s in r.substitutes(request_text, fields, exclude=set(), k=3)]
        assert subs[0] == first
        searched = [h.skill.name for h in r.search(request_text, k=5)]
        assert subs == [n for n in searched if n.startswith("notify_") and n != "notify_guide"]
        assert (
            r.substitutes(request_text, fields, exclude=set(), k=2)
            == r.substitutes(request_text, fields, exclude=set(), k=3)[:2]
        )
        assert r.substitutes("x", fields, exclude=set(), k=0) == []


class TestRerankAndMarker:
    def test_reranker_reorders_the_head(self, bundled: list[Skill]) -> None:
        class ByNameLength:
            def rerank(self, query: str, skills: object) -> list[float]:
                return [-len(s.name) for s in skills]  # type: ignore[attr-defined]

        r = Retriever(
            bundled, embedder=None, reranker=ByNameLength(), config=RetrieverConfig(rerank_depth=3)
        )
        hits = r.search("send a message", k=5)
        head = names(hits[:3])
        assert head == sorted(head, key=len)

    def test_retrieve_marker(self) -> None:
        assert retrieve("convert money", k=2) == Retrieve(query="convert money", k=2)
        assert retrieve("x").k == 3
        with pytest.raises(ValidationError):
            retrieve("x", k=0)
        assert isinstance(retrieve("x"), BaseModel)


class TestIVF:
    def test_probed_cells_are_exact_and_top_hits_found(self) -> None:
        rng = np.random.default_rng(0)
        centers = rng.normal(size=(40, 32))
        vecs = centers[rng.integers(0, 40, size=4000)] + 0.3 * rng.normal(size=(4000, 32))
        vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
        index = IVFIndex(vecs, n_lists=64, n_probe=8)
        queries = vecs[rng.choice(4000, size=50, replace=False)] + 0.05 * rng.normal(
            size=(50, 32)
        ).astype(np.float32)
        queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
        approx, exact = index.scores(queries), queries @ vecs.T
        found = np.mean(np.argmax(approx, axis=1) == np.argmax(exact, axis=1))
        assert found >= 0.95
        best = np.argmax(approx, axis=1)
        assert np.allclose(approx[np.arange(50), best], exact[np.arange(50), best], atol=1e-5)

    def test_retriever_uses_ivf_above_threshold(self, bundled: list[Skill]) -> None:
        cfg = RetrieverConfig(ann_threshold=2)
        r = Retriever(bundled, embedder=HashingEmbedder(), config=cfg)
        assert r._ann is not None
        assert names(r.search("convert an amount of money between currencies", k=1)) == [
            "currency_convert"
        ]


class TestAdaptiveFusion:
    """BM25 counts more only when its best hit stands far out of the catalog."""

    def _pair(self) -> tuple[Retriever, Retriever]:
        from orchestra.bench.retrieval import synthetic_catalog

        rare = Skill(
            name="listPolarBearSightings",
            description="List the polar bear sightings logged by Arctic rangers",
        )
        skills = [*synthetic_catalog(2000), rare]
        emb = HashingEmbedder(64)
        plain = Retriever(skills, embedder=emb, config=RetrieverConfig(lexical_boost=0.0))
        return plain, Retriever(skills, embedder=emb)

    def test_a_request_naming_a_skill_trusts_bm25_more(self) -> None:
        plain, adaptive = self._pair()
        query = "call listPolarBearSightings for the arctic records"
        lex = adaptive._lexical_scores([query])
        assert lex.max() > adaptive.config.lexical_confident_z  # the case it is meant for
        a, p = adaptive.score([query])[0], plain.score([query])[0]
        assert int(np.argmax(a)) == 2000
        # The named skill stands further ahead of the runner-up than with fixed weights.
        gap = lambda s: float(s[2000] - np.sort(s)[-2])  # noqa: E731
        assert gap(a) > gap(p)

    def test_a_vague_request_is_scored_as_before(self) -> None:
        plain, adaptive = self._pair()
        query = "check something about the weather"
        assert adaptive._lexical_scores([query]).max() < adaptive.config.lexical_confident_z
        assert np.allclose(adaptive.score([query]), plain.score([query]))
