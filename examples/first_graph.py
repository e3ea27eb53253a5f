"""A first graph in 20 lines: two interchangeable translators, one of them broken."""

from orchestra import Graph, run_sync, skill


@skill(cost=0.001)
def fast_translate(text: str) -> str:
    raise ConnectionError("fast-translate API is down")


@skill(cost=0.004)
def careful_translate(text: str) -> str:
    return {"hello": "bonjour"}.get(text, text)


graph = Graph("translate")
graph.step("translate", [fast_translate, careful_translate])

if __name__ == "__main__":
    result = run_sync(graph, {"text": "hello"})
    for decision in result.decisions:
        print(decision)
    print(result.status, result.outputs["translate"], f"${result.spent_usd:.3f}")
