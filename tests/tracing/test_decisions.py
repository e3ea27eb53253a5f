"""Demotions and escalations are span events with their reason; an escalated run is an
error span."""

from __future__ import annotations

from orchestra import Runner, tracing

from .graphs import refund_graph


async def test_demotion_is_an_event_with_its_reason() -> None:
    """No way left to serve a step of the main goal: the run demotes, and says why."""
    graph = refund_graph(None)
    runner = Runner()
    runner.health.mark_down("razorpay_refund", "maintenance window")
    graph.fallback("lookup")
    with tracing.capture_spans() as cap:
        result = await runner.run(graph, {"customer_id": "c-1", "amount": 3.0})
    assert result.status == "demoted", result.reason
    (root,) = cap.named("invoke_agent")
    (demote,) = [e for e in root.events if e.name == "orchestra.demote"]
    reason = dict(demote.attributes or {})["orchestra.reason"]
    assert "demoted to 'lookup'" in reason and "razorpay_refund" in reason
    assert dict(root.attributes or {})["orchestra.status"] == "demoted"


async def test_escalation_is_an_event_and_the_run_span_is_an_error() -> None:
    runner = Runner()
    runner.health.mark_down("razorpay_refund", "maintenance window")
    with tracing.capture_spans() as cap:
        result = await runner.run(refund_graph(None), {"customer_id": "c-1", "amount": 3.0})
    assert result.status == "escalated"
    (root,) = cap.named("invoke_agent")
    (esc,) = [e for e in root.events if e.name == "orchestra.escalate"]
    assert dict(esc.attributes or {})["orchestra.reason"] == result.reason
    assert root.status.status_code.name == "ERROR"


async def test_the_run_span_covers_setup_and_a_bad_input_is_in_it() -> None:
    """invoke_agent opens before the run's setup: the first checkpoint is saved inside it, and
    a run input that fails its model is an error on it."""
    from typing import Any

    from opentelemetry import trace

    from orchestra.errors import RunInputError

    seen: list[str] = []

    class Recorder:
        async def save(self, state: Any) -> None:
            seen.append(getattr(trace.get_current_span(), "name", "?"))

        async def aclose(self) -> None:
            return None

    g = refund_graph(None)
    with tracing.capture_spans() as cap:
        await Runner(checkpointer=Recorder()).run(g, {"customer_id": "c-1", "amount": 3.0})
    assert seen and seen[0] == "invoke_agent refund", seen

    from pydantic import BaseModel

    class Needs(BaseModel):
        customer_id: str
        amount: float

    g.input_model = Needs
    with tracing.capture_spans() as cap:
        try:
            await Runner().run(g, {"customer_id": "c-1", "amount": "lots"})
        except RunInputError:
            pass
        else:
            raise AssertionError("the input was accepted")
    (root,) = cap.named("invoke_agent")
    assert root.status.status_code.name == "ERROR"
