"""The OpenTelemetry SDK parts of :mod:`orchestra.tracing`, imported only when tracing is on.

Importing the SDK costs about 0.2 s, so :mod:`orchestra.tracing` imports this module only
from :func:`~orchestra.tracing.setup_tracing` (when an exporter is configured) and
:func:`~orchestra.tracing.capture_spans`.  Nothing here is public API.

* :class:`RedactingSpanExporter` wraps every exporter, so secrets never leave the process;
* :class:`Fanout` and :class:`SwitchSampler` let :func:`~orchestra.tracing.setup_tracing`
  reconfigure the one global provider (OpenTelemetry allows setting it only once).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import IO, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind, Status
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from orchestra.redact import redact, redact_text

__all__ = [
    "Fanout",
    "RedactingSpanExporter",
    "SwitchSampler",
    "batch",
    "console_exporter",
    "make_sampler",
    "new_provider",
    "otlp_exporter",
    "redact_span",
    "simple",
]


def _attrs(attributes: Attributes) -> dict[str, Any] | None:
    """A scrubbed copy of ``attributes``, or None when there was nothing to scrub."""
    out: dict[str, Any] = {}
    changed = False
    for k, v in (attributes or {}).items():
        r = redact(v, k)
        if r is not v and r != v:
            changed = True
        out[k] = r
    return out if changed else None


def redact_span(span: ReadableSpan) -> ReadableSpan:
    """``span`` with secrets scrubbed from its name, attributes, events and status.

    A span with nothing to scrub is returned as it is (no copy).
    """
    status = span.status
    if status.description:
        clean = redact_text(status.description)
        if clean != status.description:
            status = Status(status.status_code, clean)
    name = redact_text(span.name)
    attributes = _attrs(span.attributes)
    events = list(span.events)
    events_changed = False
    for i, e in enumerate(events):
        a = _attrs(e.attributes)
        if a is not None:
            events[i] = Event(e.name, a, e.timestamp)
            events_changed = True
    if attributes is None and not events_changed and status is span.status and name == span.name:
        return span
    return ReadableSpan(
        name=name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=span.attributes if attributes is None else attributes,
        events=events,
        links=span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class RedactingSpanExporter(SpanExporter):
    """Scrubs secrets from every span (see :mod:`orchestra.redact`) before ``inner`` sees it.

    Runs in the export path (the batch processor's thread), not on the traced code's path.
    """

    def __init__(self, inner: SpanExporter):
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Export scrubbed copies of ``spans``."""
        return self.inner.export([redact_span(s) for s in spans])

    def shutdown(self) -> None:
        """Shut the inner exporter down."""
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the inner exporter."""
        return bool(self.inner.force_flush(timeout_millis))


class Fanout(SpanProcessor):
    """The provider's one span processor: forwards to a list that can be swapped at run time."""

    def __init__(self) -> None:
        self.processors: tuple[SpanProcessor, ...] = ()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Forward to every processor."""
        for p in self.processors:
            p.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        """Forward to every processor."""
        for p in self.processors:
            p.on_end(span)

    def shutdown(self) -> None:
        """Shut every processor down."""
        for p in self.processors:
            p.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush every processor; False if one did not finish in time."""
        ok = True
        for p in self.processors:
            ok = p.force_flush(timeout_millis) and ok
        return ok


class SwitchSampler(Sampler):
    """A sampler whose delegate can be replaced after the provider was installed."""

    def __init__(self, delegate: Sampler):
        self.delegate = delegate

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        """Ask the delegate."""
        return self.delegate.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        """The delegate's description."""
        return str(self.delegate.get_description())


def make_sampler(name: str, arg: float | None) -> Sampler:
    """The sampler ``OTEL_TRACES_SAMPLER=name`` (``OTEL_TRACES_SAMPLER_ARG=arg``) describes."""
    ratio = 1.0 if arg is None else arg
    table: dict[str, Sampler] = {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "traceidratio": TraceIdRatioBased(ratio),
        "parentbased_always_on": ParentBased(ALWAYS_ON),
        "parentbased_always_off": ParentBased(ALWAYS_OFF),
        "parentbased_traceidratio": ParentBased(TraceIdRatioBased(ratio)),
    }
    return table[name]


def new_provider(
    service_name: str, resource_attributes: Mapping[str, str]
) -> tuple[TracerProvider, Fanout, SwitchSampler]:
    """A provider with one :class:`Fanout` processor and one :class:`SwitchSampler`."""
    resource = Resource.create({**resource_attributes, "service.name": service_name})
    sampler = SwitchSampler(ParentBased(ALWAYS_ON))
    provider = TracerProvider(sampler=sampler, resource=resource)
    fanout = Fanout()
    provider.add_span_processor(fanout)
    return provider, fanout, sampler


def otlp_exporter(
    protocol: str, endpoint: str, headers: Mapping[str, str], insecure: bool
) -> SpanExporter:
    """An OTLP span exporter: ``http/protobuf`` (full ``/v1/traces`` URL) or ``grpc``."""
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter(endpoint=endpoint, insecure=insecure, headers=dict(headers) or None)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    return HttpExporter(endpoint=endpoint, headers=dict(headers) or None)


def console_exporter(out: IO[str] | None = None) -> SpanExporter:
    """Spans as JSON on stderr (stdout stays free for a command's own output)."""
    return ConsoleSpanExporter(out=out or sys.stderr)


def batch(exporter: SpanExporter) -> SpanProcessor:
    """A batch processor (``OTEL_BSP_*`` settings) around a redacting ``exporter``."""
    return BatchSpanProcessor(RedactingSpanExporter(exporter))


def simple(exporter: SpanExporter) -> SpanProcessor:
    """A synchronous processor around a redacting ``exporter`` (console, tests)."""
    return SimpleSpanProcessor(RedactingSpanExporter(exporter))


def is_sdk_provider(provider: trace.TracerProvider) -> bool:
    """True for an SDK provider (someone else's, when it is not ours)."""
    return isinstance(provider, TracerProvider)
