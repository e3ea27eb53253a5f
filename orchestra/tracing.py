"""OpenTelemetry spans for runs, steps, tool calls and model calls.

Span names and attributes follow the OpenTelemetry GenAI semantic conventions:

* the run: ``invoke_agent {graph}`` (``gen_ai.operation.name=invoke_agent``)
* each attempt of a step, on the driver: ``step {step_id}``
* each tool call, where the skill runs: ``execute_tool {skill}``
  (``gen_ai.operation.name=execute_tool``)
* each model call: ``chat {model}`` (``gen_ai.operation.name=chat``,
  ``gen_ai.provider.name``, ``gen_ai.request.model``, ``gen_ai.usage.input_tokens``,
  ``gen_ai.usage.output_tokens``) — see :func:`chat_span` and :class:`InstrumentedChatModel`

Orchestra's own attributes live under ``orchestra.*`` (run id, step id, route and route
reason, health of the chosen skill, budget remaining, cost…), and every decision of the run
(reroute, demotion, escalation…) is a span event ``orchestra.<kind>`` with its
``orchestra.reason``.

**Set-up.** :func:`setup_tracing` reads the standard ``OTEL_*`` environment:

=====================================  ======================================================
variable                               effect
=====================================  ======================================================
``OTEL_SDK_DISABLED=true``             no tracing at all (the no-op tracer)
``OTEL_TRACES_EXPORTER``               ``otlp``, ``console``, ``none`` or a comma list;
                                       unset: ``otlp`` if an OTLP endpoint is set, else none
``OTEL_EXPORTER_OTLP_ENDPOINT``        base URL (``http://jaeger:4318``; ``/v1/traces`` is
                                       appended for http/protobuf)
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` full URL of the traces endpoint, used as given
``OTEL_EXPORTER_OTLP_PROTOCOL``        ``http/protobuf`` (default) or ``grpc``
                                       (``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` wins)
``OTEL_EXPORTER_OTLP_HEADERS``         ``k=v,k2=v2`` sent with every export
``OTEL_SERVICE_NAME``                  ``service.name`` (default ``orchestra``)
``OTEL_RESOURCE_ATTRIBUTES``           ``k=v,k2=v2`` resource attributes
``OTEL_TRACES_SAMPLER`` / ``_ARG``     ``parentbased_always_on`` (default), ``always_on``,
                                       ``always_off``, ``traceidratio``,
                                       ``parentbased_traceidratio`` (arg: the ratio)…
=====================================  ======================================================

Off by default: with no exporter configured nothing is installed and every call here goes
to OpenTelemetry's no-op tracer.  The first span of a process calls :func:`setup_tracing`
itself, so a driver or worker started with ``OTEL_EXPORTER_OTLP_ENDPOINT`` set traces without
code.  An SDK provider that the application installed itself is used as it is.

**Secrets.** Every exporter Orchestra installs is wrapped so that secrets
(:mod:`orchestra.redact`) are scrubbed from span names, attributes, events and statuses
before they leave the process; :func:`log_processors` does the same for log lines and adds
``trace_id``/``span_id`` to every line logged inside a span.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit, urlunsplit

import structlog
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, format_span_id, format_trace_id

from orchestra.errors import ConfigError
from orchestra.logs import get_logger
from orchestra.redact import redact_mapping, redact_text, refresh_env_secrets

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from orchestra._tracing_sdk import Fanout, SwitchSampler
    from orchestra.models.base import ChatMessage, ChatModel, ChatResponse

__all__ = [
    "InstrumentedChatModel",
    "SpanCapture",
    "TracingConfig",
    "active",
    "answer_event",
    "capture_spans",
    "chat_span",
    "compensation_span",
    "decision_event",
    "extract_context",
    "flush_tracing",
    "inject_context",
    "log_processors",
    "mark_error",
    "process_span",
    "provider_name",
    "publish_span",
    "record_chat_response",
    "run_span",
    "setup_tracing",
    "shutdown_tracing",
    "span_carrier",
    "span_service",
    "step_span",
    "tool_span",
    "tracer",
    "tracing_config",
]

_TRACER_NAME = "orchestra"
_SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
_EXPORTERS = ("otlp", "console", "none")
_PROTOCOLS = ("http/protobuf", "grpc")

log = get_logger("orchestra.tracing")


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class TracingConfig:
    """What :func:`setup_tracing` read from the environment (and did)."""

    enabled: bool = False
    """True when spans are recorded and exported."""
    disabled: bool = False
    """``OTEL_SDK_DISABLED=true``: the no-op tracer, whatever else is set."""
    exporters: tuple[str, ...] = ()
    service_name: str = "orchestra"
    protocol: str = "http/protobuf"
    endpoint: str | None = None
    """The OTLP traces endpoint, when ``otlp`` is among the exporters."""
    insecure: bool = True
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    sampler: str = "parentbased_always_on"
    sampler_arg: float | None = None
    resource_attributes: tuple[tuple[str, str], ...] = ()
    foreign_provider: bool = False
    """The application had installed its own SDK provider; Orchestra's spans go there."""

    def describe(self) -> str:
        """One line for logs and ``--help`` output (no secrets)."""
        if self.disabled:
            return "tracing disabled (OTEL_SDK_DISABLED)"
        if self.foreign_provider:
            return "tracing through the application's own TracerProvider"
        if not self.enabled:
            return "tracing off (no OTEL_TRACES_EXPORTER / OTEL_EXPORTER_OTLP_ENDPOINT)"
        where = f" {self.protocol} {redact_text(self.endpoint or '')}" if self.endpoint else ""
        return (
            f"tracing on: service {self.service_name!r}, exporters {', '.join(self.exporters)}"
            f"{where}, sampler {self.sampler}"
            + (f"({self.sampler_arg:g})" if self.sampler_arg is not None else "")
        )


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _pairs(value: str | None, variable: str) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for item in (value or "").split(","):
        if not item.strip():
            continue
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise ConfigError(f"{item.strip()!r} is not key=value", field=variable)
        out.append((unquote(k.strip()), unquote(v.strip())))
    return tuple(out)


def tracing_config(
    env: Mapping[str, str] | None = None, *, service_name: str | None = None
) -> TracingConfig:
    """Read the tracing set-up from ``env`` (default: ``os.environ``); pure, installs nothing.

    ``service_name`` is the default when ``OTEL_SERVICE_NAME`` is unset (a worker passes
    ``orchestra-worker``).  Raises :class:`~orchestra.errors.ConfigError` naming the variable
    that holds a value that cannot work.
    """
    e = os.environ if env is None else env

    def get(*names: str) -> str | None:
        for n in names:
            v = e.get(n)
            if v is not None and v.strip():
                return v.strip()
        return None

    attrs = _pairs(get("OTEL_RESOURCE_ATTRIBUTES"), "OTEL_RESOURCE_ATTRIBUTES")
    name = get("OTEL_SERVICE_NAME") or dict(attrs).get("service.name") or service_name
    base = TracingConfig(service_name=name or "orchestra", resource_attributes=attrs)
    if _flag(get("OTEL_SDK_DISABLED")):
        return TracingConfig(disabled=True, service_name=base.service_name)

    traces_endpoint = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    base_endpoint = get("OTEL_EXPORTER_OTLP_ENDPOINT")
    raw = get("OTEL_TRACES_EXPORTER")
    if raw is None:
        exporters: tuple[str, ...] = ("otlp",) if (traces_endpoint or base_endpoint) else ()
    else:
        exporters = tuple(dict.fromkeys(x.strip().lower() for x in raw.split(",") if x.strip()))
        for x in exporters:
            if x not in _EXPORTERS:
                raise ConfigError(
                    f"unknown exporter {x!r}; use {', '.join(_EXPORTERS)}",
                    field="OTEL_TRACES_EXPORTER",
                )
        exporters = tuple(x for x in exporters if x != "none")

    sampler = (get("OTEL_TRACES_SAMPLER") or "parentbased_always_on").lower()
    if sampler not in _SAMPLERS:
        raise ConfigError(
            f"unknown sampler {sampler!r}; use {', '.join(_SAMPLERS)}", field="OTEL_TRACES_SAMPLER"
        )
    arg: float | None = None
    raw_arg = get("OTEL_TRACES_SAMPLER_ARG")
    if raw_arg is not None and "ratio" in sampler:
        try:
            arg = float(raw_arg)
        except ValueError:
            arg = -1.0
        if not 0.0 <= arg <= 1.0:
            raise ConfigError(
                f"{raw_arg!r} is not a ratio between 0 and 1", field="OTEL_TRACES_SAMPLER_ARG"
            )

    protocol = (
        get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
    ).lower()
    endpoint: str | None = None
    insecure = True
    headers: tuple[tuple[str, str], ...] = ()
    if "otlp" in exporters:
        if protocol not in _PROTOCOLS:
            raise ConfigError(
                f"unsupported protocol {protocol!r}; use {' or '.join(_PROTOCOLS)}",
                field="OTEL_EXPORTER_OTLP_PROTOCOL",
            )
        endpoint = _otlp_endpoint(protocol, traces_endpoint, base_endpoint)
        scheme = urlsplit(endpoint).scheme
        insecure_flag = get("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "OTEL_EXPORTER_OTLP_INSECURE")
        insecure = _flag(insecure_flag) if insecure_flag is not None else scheme != "https"
        headers = _pairs(get("OTEL_EXPORTER_OTLP_HEADERS"), "OTEL_EXPORTER_OTLP_HEADERS") + _pairs(
            get("OTEL_EXPORTER_OTLP_TRACES_HEADERS"), "OTEL_EXPORTER_OTLP_TRACES_HEADERS"
        )
    return TracingConfig(
        enabled=bool(exporters),
        exporters=exporters,
        service_name=base.service_name,
        protocol=protocol,
        endpoint=endpoint,
        insecure=insecure,
        headers=headers,
        sampler=sampler,
        sampler_arg=arg,
        resource_attributes=attrs,
    )


def _otlp_endpoint(protocol: str, traces: str | None, base: str | None) -> str:
    if protocol == "grpc":
        url = traces or base or "http://localhost:4317"
    elif traces:
        url = traces
    else:
        url = (base or "http://localhost:4318").rstrip("/") + "/v1/traces"
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        raise ConfigError(
            f"{redact_text(url)!r} is not a URL like http://host:port",
            field="OTEL_EXPORTER_OTLP_ENDPOINT",
        )
    return urlunsplit(parts)


# --------------------------------------------------------------------------- the provider


class _State:
    """The tracer every Orchestra span comes from, and the provider Orchestra installed."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.tracer: trace.Tracer | None = None  # None: not set up yet (first span sets up)
        self.config: TracingConfig | None = None
        self.provider: TracerProvider | None = None
        self.fanout: Fanout | None = None
        self.sampler: SwitchSampler | None = None

    @property
    def scrubs_export(self) -> bool:
        """True when spans go to Orchestra's provider, whose exporters all scrub secrets
        (so the hot path need not); False for the application's own provider."""
        return (
            self.provider is not None
            and self.config is not None
            and not self.config.foreign_provider
        )


_STATE = _State()


def tracer() -> trace.Tracer:
    """The tracer Orchestra's spans come from (sets tracing up from the environment once)."""
    t = _STATE.tracer
    if t is None:
        try:
            setup_tracing()
        except ConfigError as exc:
            log.warning("tracing.off", reason=str(exc))
            with _STATE.lock:
                _STATE.config = TracingConfig()
                _STATE.tracer = (
                    trace.NoOpTracer()
                    if _STATE.provider is not None
                    else trace.get_tracer(_TRACER_NAME)
                )
        t = _STATE.tracer
        assert t is not None
    return t


def active() -> bool:
    """Whether Orchestra's spans record anything in this process (worth building their
    attributes)."""
    return not _off()


def _off() -> bool:
    """True when Orchestra's spans would be no-ops, so building them can be skipped.

    That is: tracing disabled, or off with no provider installed by anyone (yet).
    """
    t = _STATE.tracer or tracer()
    if isinstance(t, trace.NoOpTracer):
        return True
    if isinstance(t, trace.ProxyTracer):
        return isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    return False


def _install(cfg: TracingConfig) -> TracerProvider | None:
    """Orchestra's provider (created and made global on first use), or None if foreign."""
    from orchestra import _tracing_sdk as sdk

    if _STATE.provider is not None:
        return _STATE.provider
    current = trace.get_tracer_provider()
    if sdk.is_sdk_provider(current):
        return None
    provider, fanout, sampler = sdk.new_provider(cfg.service_name, dict(cfg.resource_attributes))
    trace.set_tracer_provider(provider)
    if trace.get_tracer_provider() is not provider:  # someone else won the race
        provider.shutdown()
        return None
    _STATE.provider, _STATE.fanout, _STATE.sampler = provider, fanout, sampler
    return provider


def _swap(processors: Sequence[SpanProcessor]) -> None:
    assert _STATE.fanout is not None
    old = _STATE.fanout.processors
    _STATE.fanout.processors = tuple(processors)
    for p in old:
        if p not in processors:
            p.shutdown()


def setup_tracing(
    env: Mapping[str, str] | None = None,
    *,
    service_name: str | None = None,
    exporter: SpanExporter | None = None,
    reconfigure: bool = False,
) -> TracingConfig:
    """Install tracing from the ``OTEL_*`` environment (see the module docs); idempotent.

    The first call decides; later calls return that decision unless ``reconfigure`` is true
    (exporters and sampler are then replaced; the resource, including ``service.name``, stays
    what the first installation made it).  ``exporter`` adds one more exporter (e.g. an
    in-memory one) and turns tracing on by itself.  Raises
    :class:`~orchestra.errors.ConfigError` for an ``OTEL_*`` value that cannot work.
    """
    with _STATE.lock:
        if _STATE.config is not None and _STATE.tracer is not None and not reconfigure:
            return _STATE.config
        cfg = tracing_config(env, service_name=service_name)
        refresh_env_secrets(env)
        if exporter is not None and not cfg.disabled:
            cfg = replace(cfg, enabled=True)
        if not cfg.enabled:
            if _STATE.fanout is not None:
                _swap([])
            # Nothing to export: OpenTelemetry's no-op tracer (or the application's provider,
            # through the proxy, unless tracing is disabled outright).
            _STATE.tracer = (
                trace.NoOpTracer()
                if cfg.disabled or _STATE.provider is not None
                else trace.get_tracer(_TRACER_NAME)
            )
            _STATE.config = cfg
            return cfg
        provider = _install(cfg)
        if provider is None:
            cfg = replace(cfg, foreign_provider=True)
            _STATE.tracer = trace.get_tracer(_TRACER_NAME)
            _STATE.config = cfg
            log.info("tracing.setup", config=cfg.describe())
            return cfg
        from orchestra import _tracing_sdk as sdk

        processors: list[SpanProcessor] = []
        for name in cfg.exporters:
            if name == "otlp":
                assert cfg.endpoint is not None
                processors.append(
                    sdk.batch(
                        sdk.otlp_exporter(
                            cfg.protocol, cfg.endpoint, dict(cfg.headers), cfg.insecure
                        )
                    )
                )
            elif name == "console":
                processors.append(sdk.simple(sdk.console_exporter()))
        if exporter is not None:
            processors.append(sdk.simple(exporter))
        assert _STATE.sampler is not None
        _STATE.sampler.delegate = sdk.make_sampler(cfg.sampler, cfg.sampler_arg)
        _swap(processors)
        _STATE.tracer = provider.get_tracer(_TRACER_NAME)
        _STATE.config = cfg
        log.info("tracing.setup", config=cfg.describe())
        return cfg


def flush_tracing(timeout_s: float = 5.0) -> bool:
    """Export every finished span now (call before a process exits); False on timeout."""
    provider = _STATE.provider
    if provider is None:
        current = trace.get_tracer_provider()
        flush = getattr(current, "force_flush", None)
        return bool(flush(int(timeout_s * 1000))) if callable(flush) else True
    return bool(provider.force_flush(int(timeout_s * 1000)))


def shutdown_tracing() -> None:
    """Flush, then stop exporting (Orchestra's spans become no-ops until the next set-up)."""
    with _STATE.lock:
        if _STATE.fanout is not None:
            flush_tracing()
            _swap([])
        _STATE.tracer = None
        _STATE.config = None


@dataclass
class SpanCapture:
    """Spans captured by :func:`capture_spans` (scrubbed, as an exporter would see them)."""

    _exporter: Any

    @property
    def spans(self) -> list[ReadableSpan]:
        """Finished spans so far, in the order they ended."""
        return list(self._exporter.get_finished_spans())

    def named(self, prefix: str) -> list[ReadableSpan]:
        """Finished spans whose name starts with ``prefix``."""
        return [s for s in self.spans if s.name.startswith(prefix)]

    def clear(self) -> None:
        """Forget the spans captured so far."""
        self._exporter.clear()


@contextmanager
def capture_spans() -> Iterator[SpanCapture]:
    """Record Orchestra's spans in memory inside the block (tests, benchmarks).

    Works whether or not tracing is set up; exporters already configured keep receiving
    spans.  Restores the previous set-up on exit.
    """
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from orchestra import _tracing_sdk as sdk

    exp = InMemorySpanExporter()
    proc = sdk.simple(exp)
    with _STATE.lock:
        cfg = _STATE.config or tracing_config({})
        provider = _install(cfg)
        if provider is None:
            raise ConfigError(
                "the application installed its own TracerProvider; capture spans with its "
                "exporters instead",
                field="capture_spans",
            )
        assert _STATE.fanout is not None and _STATE.sampler is not None
        saved = (_STATE.tracer, _STATE.config, _STATE.sampler.delegate)
        if not cfg.enabled:
            _STATE.sampler.delegate = sdk.make_sampler("parentbased_always_on", None)
        _STATE.fanout.processors = (*_STATE.fanout.processors, proc)
        _STATE.tracer = provider.get_tracer(_TRACER_NAME)
        _STATE.config = _STATE.config or cfg
    try:
        yield SpanCapture(exp)
    finally:
        with _STATE.lock:
            _STATE.fanout.processors = tuple(p for p in _STATE.fanout.processors if p is not proc)
            _STATE.tracer, _STATE.config, _STATE.sampler.delegate = saved


# --------------------------------------------------------------------------- run, step, tool

# (run id, step id) of the innermost Orchestra span, for chat spans (set only when recording).
_SCOPE: ContextVar[tuple[str, str | None] | None] = ContextVar("orchestra_scope", default=None)

# Route notes of the decision log, waiting for the step span they describe:
# (trace id, step, skill) -> attributes.  Bounded: a note whose span never opens is dropped.
_ROUTE_NOTES: OrderedDict[tuple[int, str, str], dict[str, Any]] = OrderedDict()
_ROUTE_NOTES_MAX = 4096


@contextmanager
def _scoped(span: Span, run_id: str, step_id: str | None) -> Iterator[None]:
    if not span.is_recording():
        yield
        return
    token = _SCOPE.set((run_id, step_id))
    try:
        yield
    finally:
        _SCOPE.reset(token)


@contextmanager
def _span(name: str, attrs: dict[str, Any], run_id: str, step_id: str | None) -> Iterator[Span]:
    """Start ``name`` as the current span, with the run/step ids scoped onto log lines."""
    with (
        tracer().start_as_current_span(name, kind=SpanKind.INTERNAL, attributes=attrs) as span,
        _scoped(span, run_id, step_id),
    ):
        yield span


@contextmanager
def compensation_span(
    step_id: str,
    *,
    run_id: str,
    skill: str,
    undoes: str,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span]:
    """The span of one compensating call: ``compensate {step_id}`` (``skill`` undoes what
    ``undoes`` did at the step)."""
    if _off():
        yield trace.INVALID_SPAN
        return
    attrs: dict[str, Any] = {
        "orchestra.run_id": run_id,
        "orchestra.step_id": step_id,
        "orchestra.skill": skill,
        "orchestra.compensates": undoes,
    }
    attrs.update(attributes or {})
    with _span(f"compensate {step_id}", attrs, run_id, step_id) as span:
        yield span


@contextmanager
def run_span(
    graph: str,
    run_id: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    resumes: Mapping[str, str] | None = None,
) -> Iterator[Span]:
    """The span of a whole run: ``invoke_agent {graph}``.

    ``resumes`` is the first part's :func:`span_carrier` when the run is resumed: the new
    span then joins the first part's trace (as its child) and links to it
    (``orchestra.link=resumes``), so a resumed run is one trace in Jaeger.
    """
    if _off():
        yield trace.INVALID_SPAN
        return
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": graph,
        "orchestra.run_id": run_id,
        "orchestra.graph": graph,
    }
    attrs.update(attributes or {})
    first = None
    if resumes:
        parent = propagate.extract(dict(resumes))
        ctx = trace.get_current_span(parent).get_span_context()
        if ctx.is_valid:
            first = (parent, ctx)
    if first is None:
        with _span(f"invoke_agent {graph}", attrs, run_id, None) as span:
            yield span
        return
    parent, ctx = first
    attrs["orchestra.resumed"] = True
    with (
        tracer().start_as_current_span(
            f"invoke_agent {graph}",
            context=parent,
            kind=SpanKind.INTERNAL,
            attributes=attrs,
            links=[trace.Link(ctx, {"orchestra.link": "resumes"})],
        ) as span,
        _scoped(span, run_id, None),
    ):
        yield span


def span_carrier(span: Span) -> dict[str, str]:
    """``span``'s context as W3C headers (``traceparent``), to store and join later; empty
    when the span is not recorded."""
    if not span.get_span_context().is_valid:
        return {}
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


def span_service(span: Span) -> str:
    """The ``service.name`` of the process that records ``span`` (``""`` if unknown)."""
    resource = getattr(span, "resource", None)
    name = getattr(resource, "attributes", {}).get("service.name") if resource else None
    return str(name) if name else ""


def answer_event(answer: str) -> None:
    """A human's answer to an escalated run, as an event ``orchestra.answer`` on the current
    span (the resumed run's)."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    span.add_event(
        "orchestra.answer",
        attributes={
            "orchestra.decision": "answer",
            "orchestra.answer": answer if _STATE.scrubs_export else redact_text(answer),
        },
    )


# what the span helpers return when nothing is traced: reusable, and no generator to run
_NO_SPAN: AbstractContextManager[Span] = nullcontext(trace.INVALID_SPAN)
_NOTHING: AbstractContextManager[None] = nullcontext()


def step_span(
    step_id: str, *, run_id: str, skill: str, attributes: Mapping[str, Any] | None = None
) -> AbstractContextManager[Span]:
    """The span of one attempt of one step, on the driver: ``step {step_id}``.

    Carries the route the attempt follows (``orchestra.route``) and, after a reroute, why
    (``orchestra.route_reason``), taken from the decision log.
    """
    if _off():
        return _NO_SPAN  # nothing to build: no generator, no attributes
    return _step_span(step_id, run_id=run_id, skill=skill, attributes=attributes)


@contextmanager
def _step_span(
    step_id: str, *, run_id: str, skill: str, attributes: Mapping[str, Any] | None
) -> Iterator[Span]:
    attrs: dict[str, Any] = {
        "orchestra.run_id": run_id,
        "orchestra.step_id": step_id,
        "orchestra.skill": skill,
    }
    attrs.update(attributes or {})
    if _ROUTE_NOTES:
        ctx = trace.get_current_span().get_span_context()
        note = _ROUTE_NOTES.pop((ctx.trace_id, step_id, skill), None)
        if note:
            attrs.update(note)
    with _span(f"step {step_id}", attrs, run_id, step_id) as span:
        yield span


def tool_span(
    skill: str, *, run_id: str, step_id: str, attributes: Mapping[str, Any] | None = None
) -> AbstractContextManager[Span]:
    """The span of one tool call: ``execute_tool {skill}``.

    When this process does not trace, the span is skipped and the caller's context (e.g. the
    driver's, extracted from a task) stays current, so log lines still carry its trace id.
    """
    if _off():
        return _NO_SPAN
    return _tool_span(skill, run_id=run_id, step_id=step_id, attributes=attributes)


@contextmanager
def _tool_span(
    skill: str, *, run_id: str, step_id: str, attributes: Mapping[str, Any] | None
) -> Iterator[Span]:
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": skill,
        "orchestra.run_id": run_id,
        "orchestra.step_id": step_id,
    }
    attrs.update(attributes or {})
    with _span(f"execute_tool {skill}", attrs, run_id, step_id) as span:
        yield span


def _messaging_attrs(
    operation: str, queue: str, message_id: str, run_id: str, step_id: str, skill: str
) -> dict[str, Any]:
    return {
        "messaging.system": "celery",
        "messaging.operation.name": operation,
        "messaging.operation.type": operation,
        "messaging.destination.name": queue,
        "messaging.message.id": message_id,
        "celery.task_name": "orchestra.step",
        "orchestra.run_id": run_id,
        "orchestra.step_id": step_id,
        "orchestra.skill": skill,
    }


@contextmanager
def publish_span(
    queue: str, *, message_id: str, run_id: str, step_id: str, skill: str
) -> Iterator[Span]:
    """The driver sending one step to the fleet: ``send {queue}``, a PRODUCER span.

    Messaging semantic conventions (``messaging.destination.name`` is the skill's queue,
    ``messaging.message.id`` the task id).  Inject :func:`inject_context` into the task
    inside the block so the worker's :func:`process_span` is its child: the gap between the
    two is the time the step waited in the queue.
    """
    if _off():
        yield trace.INVALID_SPAN
        return
    attrs = _messaging_attrs("send", queue, message_id, run_id, step_id, skill)
    with (
        tracer().start_as_current_span(
            f"send {queue}", kind=SpanKind.PRODUCER, attributes=attrs
        ) as span,
        _scoped(span, run_id, step_id),
    ):
        yield span


@contextmanager
def process_span(
    queue: str,
    *,
    message_id: str,
    run_id: str,
    step_id: str,
    skill: str,
    queue_wait_ms: float | None = None,
    worker: str | None = None,
) -> Iterator[Span]:
    """A worker taking one step off its queue: ``process {queue}``, a CONSUMER span (a child
    of the driver's :func:`publish_span`, through the task's trace context), with the time
    the step waited in the queue as ``orchestra.queue_wait_ms``."""
    if _off():
        yield trace.INVALID_SPAN
        return
    attrs = _messaging_attrs("process", queue, message_id, run_id, step_id, skill)
    if queue_wait_ms is not None:
        attrs["orchestra.queue_wait_ms"] = round(queue_wait_ms, 3)
    if worker:
        attrs["orchestra.worker"] = worker
    with (
        tracer().start_as_current_span(
            f"process {queue}", kind=SpanKind.CONSUMER, attributes=attrs
        ) as span,
        _scoped(span, run_id, step_id),
    ):
        yield span


def mark_error(span: Span, message: str, error_class: str, *, kind: str | None = None) -> None:
    """Set the span's status to ERROR with ``message`` (scrubbed), ``error.type`` (the kind of
    failure, as the decision log names it: ``exception``, ``timeout``, ``malformed``,
    ``budget``; or ``kind`` when given) and ``orchestra.error_class`` (``ToolRaised``…).
    The step span and the tool span of one failure carry the same values."""
    if not span.is_recording():
        return
    from orchestra.errors import error_kind

    span.set_status(
        Status(StatusCode.ERROR, message if _STATE.scrubs_export else redact_text(message))
    )
    span.set_attribute("error.type", kind or error_kind(error_class))
    span.set_attribute("orchestra.error_class", error_class)


def decision_event(kind: str, reason: str, attributes: Mapping[str, Any] | None = None) -> None:
    """Record a decision of the run as an event ``orchestra.<kind>`` on the current span."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    attrs = {"orchestra.decision": kind, "orchestra.reason": reason}
    attrs.update({k: v for k, v in (attributes or {}).items() if v is not None})
    if not _STATE.scrubs_export:
        attrs = redact_mapping(attrs)
    span.add_event(f"orchestra.{kind}", attributes=attrs)
    step, skill = attrs.get("orchestra.step_id"), attrs.get("orchestra.skill")
    if kind in ("execute", "reroute") and isinstance(step, str) and isinstance(skill, str):
        key = (span.get_span_context().trace_id, step, skill)
        note = _ROUTE_NOTES.setdefault(key, {})
        if "orchestra.route" in attrs:
            note["orchestra.route"] = attrs["orchestra.route"]
        if kind == "reroute":
            note["orchestra.route_reason"] = attrs["orchestra.reason"]
        _ROUTE_NOTES.move_to_end(key)
        while len(_ROUTE_NOTES) > _ROUTE_NOTES_MAX:
            _ROUTE_NOTES.popitem(last=False)


def inject_context() -> dict[str, str]:
    """The current trace context as W3C headers (to send with a task or an HTTP call)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def extract_context(carrier: Mapping[str, str]) -> AbstractContextManager[None]:
    """Make the trace context carried by ``carrier`` current (on a worker)."""
    if not carrier:
        return _NOTHING
    return _extract_context(carrier)


@contextmanager
def _extract_context(carrier: Mapping[str, str]) -> Iterator[None]:
    token = otel_context.attach(propagate.extract(dict(carrier)))
    try:
        yield
    finally:
        otel_context.detach(token)


# --------------------------------------------------------------------------- model calls

# litellm provider prefix -> gen_ai.provider.name (the semantic conventions' well-known values
# where there is one).
_PROVIDERS = {
    "openai": "openai",
    "text-completion-openai": "openai",
    "azure": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "anthropic": "anthropic",
    "bedrock": "aws.bedrock",
    "vertex_ai": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "cohere": "cohere",
    "cohere_chat": "cohere",
    "mistral": "mistral_ai",
    "groq": "groq",
    "deepseek": "deepseek",
    "xai": "x_ai",
    "perplexity": "perplexity",
    "watsonx": "ibm.watsonx.ai",
    "hosted_vllm": "vllm",
    "ollama": "ollama",
    "ollama_chat": "ollama",
}


def provider_name(model: str) -> tuple[str, str]:
    """``(gen_ai.provider.name, gen_ai.request.model)`` of a litellm-style model string.

    ``"openai/gpt-4o-mini"`` → ``("openai", "gpt-4o-mini")``; a name without a provider
    prefix → ``("orchestra", name)``.
    """
    prefix, sep, rest = model.partition("/")
    if not sep or not rest:
        return "orchestra", model
    return _PROVIDERS.get(prefix, prefix), rest


@contextmanager
def chat_span(
    model: str,
    *,
    provider: str,
    max_tokens: int | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span]:
    """The span of one model call: ``chat {model}`` (a CLIENT span).

    Inject :func:`inject_context` into the HTTP request made inside the block so the server
    joins the trace; record the answer with :func:`record_chat_response`.  An exception
    leaving the block sets the span's status and ``error.type`` (the error's ``kind`` if it
    has one, else its class name).
    """
    if _off():
        yield trace.INVALID_SPAN
        return
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
    }
    if max_tokens is not None:
        attrs["gen_ai.request.max_tokens"] = max_tokens
    scope = _SCOPE.get()
    if scope is not None:
        attrs["orchestra.run_id"] = scope[0]
        if scope[1] is not None:
            attrs["orchestra.step_id"] = scope[1]
    attrs.update(attributes or {})
    with tracer().start_as_current_span(
        f"chat {model}",
        kind=SpanKind.CLIENT,
        attributes=attrs,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as exc:
            kind = getattr(exc, "kind", None)
            mark_error(
                span,
                str(exc) or type(exc).__name__,
                type(exc).__name__,
                kind=str(kind or type(exc).__name__),
            )
            raise


def record_chat_response(span: Span, response: ChatResponse) -> None:
    """Put a :class:`~orchestra.models.base.ChatResponse`'s model, usage and cost on ``span``.

    A router's response (``decision`` with a ``reason``) also sets ``orchestra.route_reason``.
    """
    if not span.is_recording():
        return
    span.set_attribute("gen_ai.response.model", response.model)
    span.set_attribute("gen_ai.usage.input_tokens", response.usage.input_tokens)
    span.set_attribute("gen_ai.usage.output_tokens", response.usage.output_tokens)
    span.set_attribute("orchestra.cost", response.cost_usd)
    decision = getattr(response, "decision", None)
    reason = getattr(decision, "reason", None)
    if isinstance(reason, str) and reason:
        span.set_attribute("orchestra.route_reason", redact_text(reason))


class InstrumentedChatModel:
    """Wraps any :class:`~orchestra.models.base.ChatModel` so each call is a ``chat`` span.

    ``InstrumentedChatModel(model)`` answers exactly like ``model``; every call becomes a
    ``chat {model}`` span with the GenAI attributes (provider, request model, usage tokens)
    plus ``orchestra.cost``.  ``provider`` and ``request_model`` default to what
    :func:`provider_name` reads from ``model.name`` (``openai/gpt-4o-mini``).
    """

    def __init__(
        self, inner: ChatModel, *, provider: str | None = None, request_model: str | None = None
    ):
        self.inner = inner
        p, m = provider_name(inner.name)
        self.provider = provider or p
        self.request_model = request_model or m

    @property
    def name(self) -> str:
        """The wrapped model's name."""
        return self.inner.name

    def __repr__(self) -> str:
        return f"InstrumentedChatModel({self.inner!r})"

    async def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ChatResponse:
        """Call the wrapped model inside a ``chat`` span."""
        with chat_span(self.request_model, provider=self.provider, max_tokens=max_tokens) as span:
            response = await self.inner.chat(messages, max_tokens=max_tokens, metadata=metadata)
            record_chat_response(span, response)
            return response


# --------------------------------------------------------------------------- logs


def add_trace_ids(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: ``trace_id`` and ``span_id`` of the current span, when there is one."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event_dict.setdefault("trace_id", format_trace_id(ctx.trace_id))
        event_dict.setdefault("span_id", format_span_id(ctx.span_id))
    return event_dict


def scrub_secrets(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: scrub secrets from every value (see :mod:`orchestra.redact`)."""
    return redact_mapping(event_dict)


def log_processors() -> list[Any]:
    """structlog processors: trace ids on, exceptions rendered, then secrets scrubbed.

    Exceptions are rendered to text here (``exception`` key) so that the scrubber sees their
    messages too; put these processors before the renderer.
    """
    return [
        add_trace_ids,
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        scrub_secrets,
    ]
