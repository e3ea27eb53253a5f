"""Budgets: a run never spends past its hard limit; it demotes or escalates instead."""

from orchestra import Graph, run_sync, skill


@skill(cost=0.02)
def enrich(lead: str) -> str:
    return f"{lead} (enriched)"


@skill(cost=0.50)
def deep_research(lead: str) -> str:
    return f"{lead}: 40-page dossier"


@skill(cost=0.05)
def quick_research(lead: str) -> str:
    return f"{lead}: one-page brief"


graph = Graph("lead-research", fallback_goals=["enrich"])
graph.step("enrich", [enrich])
graph.step("research", [deep_research, quick_research], after="enrich")

if __name__ == "__main__":
    for budget in (1.00, 0.10, 0.03):
        r = run_sync(graph, {"lead": "ACME"}, budget_usd=budget)
        print(
            f"budget ${budget:.2f}: {r.status:<9} path={r.path} spent=${r.spent_usd:.2f}"
            + (f"  ({r.reason})" if r.reason else "")
        )
        assert r.spent_usd <= budget
