"""Tracing: the spans of one run, with a failing refund provider rerouted around.

``capture_spans()`` records Orchestra's OpenTelemetry spans in memory (no collector needed;
in production ``setup_tracing()`` exports them by OTLP from the ``OTEL_*`` environment).
A run is one trace: ``invoke_agent <graph>`` at the root, a ``step <id>`` span per attempt,
an ``execute_tool <skill>`` span under each, and routing decisions (reroutes, demotions,
escalations) as events with their reasons.
"""

import asyncio
from pathlib import Path

from orchestra import Runner
from orchestra.loaders import load_any_graph
from orchestra.testing import misbehave
from orchestra.tracing import capture_spans

ROOT = Path(__file__).resolve().parents[1]
QUIET = ("orchestra.execute", "orchestra.succeed")  # every step has these: left out
KEYS = ("orchestra.skill", "orchestra.route_reason", "gen_ai.tool.name", "orchestra.error_kind")


def print_tree(spans) -> None:  # type: ignore[no-untyped-def]
    children: dict[int | None, list] = {}  # type: ignore[type-arg]
    for s in sorted(spans, key=lambda s: s.start_time):
        parent = s.parent.span_id if s.parent is not None else None
        children.setdefault(parent, []).append(s)

    def show(span, depth: int) -> None:  # type: ignore[no-untyped-def]
        pad = "  " * depth
        status = "" if span.status.is_ok else f"  [ERROR: {span.status.description}]"
        ms = (span.end_time - span.start_time) / 1e6
        print(f"{pad}{span.name}  ({ms:.1f} ms){status}")
        for key in KEYS:
            if key in span.attributes:
                print(f"{pad}    {key} = {span.attributes[key]}")
        for event in span.events:
            if event.name.startswith("orchestra.") and event.name not in QUIET:
                reason = event.attributes.get("orchestra.reason", "")
                print(f"{pad}    ↪ event {event.name}: {reason}")
        for child in children.get(span.context.span_id, []):
            show(child, depth + 1)

    for root in children.get(None, []):
        print(f"trace {root.context.trace_id:032x}")
        show(root, 0)


async def main() -> None:
    graph, _ = load_any_graph(ROOT / "graphs" / "refund.py")
    # Stripe raises on every call: the run reroutes the refund to Razorpay
    graph.skills.add(misbehave(graph.skills.require("stripe_refund"), "exception"), replace=True)
    with capture_spans() as captured:
        result = await Runner().run(graph, {"customer_id": "c-42", "amount": 30})
    print(f"run {result.run_id}: {result.status.upper()}  path={' -> '.join(result.path)}\n")
    print_tree(captured.spans)
    assert len({s.context.trace_id for s in captured.spans}) == 1, "one run, one trace"


if __name__ == "__main__":
    asyncio.run(main())
