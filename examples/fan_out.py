"""Fan-out / fan-in: three independent checks run concurrently, then a verdict joins them."""

import asyncio

from pydantic import BaseModel

from orchestra import Graph, run_sync, skill


class Check(BaseModel):
    ok: bool


events: list[str] = []


async def _check(name: str) -> Check:
    events.append(f"start {name}")
    await asyncio.sleep(0.2)
    events.append(f"end {name}")
    return Check(ok=True)


@skill(latency_ms=200)
async def check_fraud(order_id: str) -> Check:
    return await _check("fraud")


@skill(latency_ms=200)
async def check_stock(order_id: str) -> Check:
    return await _check("stock")


@skill(latency_ms=200)
async def check_address(order_id: str) -> Check:
    return await _check("address")


@skill
def verdict(ok: bool) -> str:
    return "ship it" if ok else "hold"


graph = Graph("order-checks")
graph.step("fraud", [check_fraud])
graph.step("stock", [check_stock])
graph.step("address", [check_address])
graph.step("verdict", [verdict], after=["fraud", "stock", "address"])

if __name__ == "__main__":
    result = run_sync(graph, {"order_id": "o-7"})
    print(result.status, result.outputs["verdict"], f"in {result.wall_ms:.0f} ms")
    print(" -> ".join(events))
    assert events[:3] == ["start fraud", "start stock", "start address"], "the checks overlap"
