"""End to end: every listed tool of a step fails, the catalog supplies a substitute, the run completes."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestra import Graph, run_sync
from orchestra.catalog import load_catalog
from orchestra.retrieval import Retriever
from orchestra.retrieval.embedders import SentenceTransformerEmbedder
from orchestra.testing import misbehave

from .helpers import ROOT, needs_embed

ORDER = {"order_id": "ord_42", "amount": 19.9, "currency": "USD"}


def _graph(retriever: Retriever | None) -> Graph:
    catalog = {s.name: s for s in load_catalog(ROOT / "skills")}
    graph = Graph("refund-with-fallback", skills=list(catalog.values()), retriever=retriever)
    graph.step(
        "refund",
        ["stripe_refund", "paypal_refund"],
        description="refund the customer's card payment for the order",
    )
    for name in ("stripe_refund", "paypal_refund"):  # both listed providers are down today
        graph.skills.add(misbehave(catalog[name], "exception"), replace=True)
    return graph


@pytest.mark.parametrize(
    "embedder",
    [
        pytest.param("minilm", marks=needs_embed),
        pytest.param(None, id="bm25-only"),
    ],
)
def test_all_listed_tools_fail_and_a_catalog_substitute_completes_the_run(
    embedder: str | None, tmp_path: Path
) -> None:
    emb = SentenceTransformerEmbedder() if embedder == "minilm" else None
    retriever = Retriever(load_catalog(ROOT / "skills"), embedder=emb, cache_dir=tmp_path)
    result = run_sync(_graph(retriever), ORDER)

    assert result.status == "completed", [str(d) for d in result.decisions]
    assert result.chosen["refund"] == "adyen_refund"  # the one compatible refund provider left
    assert result.outputs["refund"]["provider"] == "adyen"
    reroutes = [d.reason for d in result.decisions if d.kind == "reroute"]
    assert "every candidate of refund failed; substitute adyen_refund from the catalog" in reroutes
    # It came as soon as both listed tools had failed, before either was given a second try.
    kinds = [(d.kind, d.skill) for d in result.decisions]
    assert ("succeed", "adyen_refund") in kinds
    assert [k for k in kinds if k[0] in ("fail", "probe")] == [
        ("fail", "stripe_refund"),
        ("fail", "paypal_refund"),
    ]
    # The substitute came before any LLM demotion or human escalation.
    assert not [d for d in result.decisions if d.kind in ("demote", "escalate")]


def test_without_a_retriever_the_same_failure_escalates() -> None:
    """No catalog to ask and no fallback goal: each listed tool gets its attempts (first call
    and half-open trials, 3 by default), then the run escalates with the reason."""
    result = run_sync(_graph(None), ORDER)
    assert result.status == "escalated", result.reason
    assert result.reason.startswith(
        "Step 'refund' (refund the customer's card payment for the order) cannot be done: "
        "stripe_refund and paypal_refund failed 3 time(s) each. "
        "No declared fallback goal is reachable."
    )
    fails = [d.skill for d in result.decisions if d.kind == "fail"]
    assert sorted(fails) == ["paypal_refund"] * 3 + ["stripe_refund"] * 3
    assert [d.kind for d in result.decisions][-1] == "escalate"
    assert result.llm_calls == 0
    assert not [d for d in result.decisions if d.kind == "reroute" and d.skill == "adyen_refund"]
