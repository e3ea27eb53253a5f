"""OpenTelemetry spans for runs, steps, tool calls and model calls.

Span names and attributes follow the OpenTelemetry GenAI semantic conventions:

* the run: ``invoke_agent {graph}`` (``gen_ai.operation.name=invoke_agent``)
* each tool call: ``execute_tool {skill}`` (``gen_ai.operation.name=execute_tool``)
* each model call: ``chat {model}`` (``gen_ai.operation.name=chat``, usage tokens)

Orchestra's own attributes live under ``orchestra.*`` (run id, step id, route, cost…), and
every decision of the run (reroute, demotion, escalation…) is a span event with its reason.

Without an SDK configured these calls go to OpenTelemetry's no-op tracer and cost next to
nothing; :func:`setup_tracing` installs one from the standard ``OTEL_*`` environment.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

__all__ = [
    "decision_event",
    "extract_context",
    "inject_context",
    "mark_error",
    "run_span",
    "step_span",
    "tool_span",
    "tracer",
]

_TRACER_NAME = "orchestra"


def tracer() -> trace.Tracer:
    return trace.get_tracer(_TRACER_NAME)


@contextmanager
def run_span(
    graph: str, run_id: str, attributes: Mapping[str, Any] | None = None
) -> Iterator[Span]:
    """The span of a whole run: ``invoke_agent {graph}``."""
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": graph,
        "orchestra.run_id": run_id,
        "orchestra.graph": graph,
    }
    attrs.update(attributes or {})
    with tracer().start_as_current_span(
        f"invoke_agent {graph}", kind=SpanKind.INTERNAL, attributes=attrs
    ) as span:
        yield span


@contextmanager
def step_span(
    step_id: str, *, run_id: str, skill: str, attributes: Mapping[str, Any] | None = None
) -> Iterator[Span]:
    """The span of one attempt of one step, on the driver: ``step {step_id}``."""
    attrs: dict[str, Any] = {
        "orchestra.run_id": run_id,
        "orchestra.step_id": step_id,
        "orchestra.skill": skill,
    }
    attrs.update(attributes or {})
    with tracer().start_as_current_span(
        f"step {step_id}", kind=SpanKind.INTERNAL, attributes=attrs
    ) as span:
        yield span


@contextmanager
def tool_span(
    skill: str, *, run_id: str, step_id: str, attributes: Mapping[str, Any] | None = None
) -> Iterator[Span]:
    """The span of one tool call: ``execute_tool {skill}``."""
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": skill,
        "orchestra.run_id": run_id,
        "orchestra.step_id": step_id,
    }
    attrs.update(attributes or {})
    with tracer().start_as_current_span(
        f"execute_tool {skill}", kind=SpanKind.INTERNAL, attributes=attrs
    ) as span:
        yield span


def mark_error(span: Span, message: str, kind: str) -> None:
    span.set_status(Status(StatusCode.ERROR, message))
    span.set_attribute("error.type", kind)


def decision_event(kind: str, reason: str, attributes: Mapping[str, Any] | None = None) -> None:
    """Record a decision of the run as an event on the current span."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    attrs = {"orchestra.decision": kind, "orchestra.reason": reason}
    attrs.update({k: v for k, v in (attributes or {}).items() if v is not None})
    span.add_event(f"orchestra.{kind}", attributes=attrs)


def inject_context() -> dict[str, str]:
    """The current trace context as W3C headers (to send with a task)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


@contextmanager
def extract_context(carrier: Mapping[str, str]) -> Iterator[None]:
    """Make the trace context carried by ``carrier`` current (on a worker)."""
    token = otel_context.attach(propagate.extract(dict(carrier)))
    try:
        yield
    finally:
        otel_context.detach(token)
