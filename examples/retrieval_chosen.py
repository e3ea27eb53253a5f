"""Retrieval-chosen tools: a step names what it must do; the catalog supplies the skills.

The skill retriever (BM25 over name, description, parameters and body, fused with dense
embeddings when the `embed` extra is installed) picks the candidates from `skills/`.
"""

from pathlib import Path

from orchestra import Graph, run_sync
from orchestra.catalog import load_catalog
from orchestra.retrieval import Retriever, retrieve
from orchestra.testing import misbehave

ROOT = Path(__file__).resolve().parents[1]
catalog = load_catalog(ROOT / "skills")
retriever = Retriever(catalog)

for hit in retriever.search("convert the amount to euros, then email the receipt", 4):
    print(f"{hit.score:6.3f}  {hit.skill.name:<18} {hit.skill.description[:60]}")

graph = Graph("refund-by-retrieval", skills=catalog, retriever=retriever)
graph.step("refund", retrieve("refund a customer's card payment for an order", k=3))
# the cheapest provider the retriever found is broken today: the run reroutes among the others
stripe = next(s for s in catalog if s.name == "stripe_refund")
graph.skills.add(misbehave(stripe, "exception"), replace=True)

if __name__ == "__main__":
    print("candidates:", graph.compile().candidates["refund"])
    result = run_sync(graph, {"order_id": "ord_1", "amount": 19.9, "currency": "USD"})
    for d in result.decisions:
        print(d)
    assert result.status == "completed" and result.chosen["refund"] != "stripe_refund"
