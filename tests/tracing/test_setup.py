"""setup_tracing: the standard OTEL_* environment, off by default, both OTLP protocols,
the console exporter, sampling, idempotence."""

from __future__ import annotations

import io
import sys

import pytest
from opentelemetry import trace

from orchestra import tracing
from orchestra.errors import ConfigError
from orchestra.tracing import tracing_config

from .otlp import GrpcReceiver, HttpReceiver


class TestConfigFromEnvironment:
    def test_off_by_default(self) -> None:
        """No exporter and no endpoint: nothing is traced."""
        cfg = tracing_config({})
        assert not cfg.enabled and cfg.exporters == () and not cfg.disabled

    def test_an_endpoint_alone_turns_otlp_on_over_http_protobuf(self) -> None:
        """OTEL_EXPORTER_OTLP_ENDPOINT is a base URL: ``/v1/traces`` is appended."""
        cfg = tracing_config({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318/"})
        assert cfg.enabled and cfg.exporters == ("otlp",)
        assert cfg.protocol == "http/protobuf"
        assert cfg.endpoint == "http://jaeger:4318/v1/traces"
        assert cfg.insecure

    def test_the_traces_endpoint_is_used_as_given_and_wins(self) -> None:
        cfg = tracing_config(
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://b:443/custom",
            }
        )
        assert cfg.endpoint == "https://b:443/custom" and not cfg.insecure

    def test_grpc_takes_the_endpoint_as_host_and_port(self) -> None:
        cfg = tracing_config(
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4317",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            }
        )
        assert (cfg.protocol, cfg.endpoint) == ("grpc", "http://jaeger:4317")

    def test_exporter_list_service_sampler_and_resource(self) -> None:
        cfg = tracing_config(
            {
                "OTEL_TRACES_EXPORTER": "console, otlp",
                "OTEL_SERVICE_NAME": "driver",
                "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": "0.25",
                "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,team=ops",
                "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=a%20b",
            }
        )
        assert cfg.exporters == ("console", "otlp")
        assert cfg.service_name == "driver"
        assert (cfg.sampler, cfg.sampler_arg) == ("parentbased_traceidratio", 0.25)
        assert dict(cfg.resource_attributes) == {"deployment.environment": "prod", "team": "ops"}
        assert dict(cfg.headers) == {"x-tenant": "a b"}
        assert cfg.endpoint == "http://localhost:4318/v1/traces"

    def test_service_name_default_is_the_callers(self) -> None:
        assert (
            tracing_config({}, service_name="orchestra-worker").service_name == "orchestra-worker"
        )
        assert tracing_config({}).service_name == "orchestra"

    def test_none_exporter_and_sdk_disabled_turn_tracing_off(self) -> None:
        assert not tracing_config(
            {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"}
        ).enabled
        cfg = tracing_config({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"})
        assert cfg.disabled and not cfg.enabled

    @pytest.mark.parametrize(
        ("env", "variable"),
        [
            ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
            ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER"),
            (
                {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
                "OTEL_TRACES_SAMPLER_ARG",
            ),
            (
                {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ),
            ({"OTEL_EXPORTER_OTLP_ENDPOINT": "jaeger"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
            ({"OTEL_RESOURCE_ATTRIBUTES": "novalue"}, "OTEL_RESOURCE_ATTRIBUTES"),
        ],
    )
    def test_a_value_that_cannot_work_names_its_variable(
        self, env: dict[str, str], variable: str
    ) -> None:
        with pytest.raises(ConfigError, match=variable):
            tracing_config(env)

    def test_describe_hides_credentials_in_the_endpoint(self) -> None:
        cfg = tracing_config({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://u:s3cr3tpass@otlp.example"})
        assert "s3cr3tpass" not in cfg.describe() and "tracing on" in cfg.describe()


class TestInstall:
    def teardown_method(self) -> None:
        tracing.shutdown_tracing()

    def test_setup_is_idempotent_until_reconfigured(self, otlp: HttpReceiver) -> None:
        env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp.url}
        first = tracing.setup_tracing(env, reconfigure=True)
        assert tracing.setup_tracing({"OTEL_SDK_DISABLED": "true"}) is first
        off = tracing.setup_tracing({"OTEL_SDK_DISABLED": "true"}, reconfigure=True)
        assert off.disabled
        with tracing.tracer().start_as_current_span("dropped") as span:
            assert not span.is_recording()

    def test_off_means_no_recording_spans(self) -> None:
        """With nothing configured Orchestra's spans are OpenTelemetry's no-op spans."""
        tracing.setup_tracing({}, reconfigure=True)
        with tracing.run_span("g", "r1") as span:
            assert not span.is_recording()
            assert tracing.inject_context() == {}

    def test_an_untraced_worker_keeps_the_drivers_context_for_its_logs(self) -> None:
        """Tracing off on a worker: no tool span, but the driver's context (from the task)
        stays current, so log lines there still carry the run's trace id."""
        tracing.setup_tracing({"OTEL_SDK_DISABLED": "true"}, reconfigure=True)
        carrier = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
        with (
            tracing.extract_context(carrier),
            tracing.tool_span("k", run_id="r", step_id="s") as span,
        ):
            assert not span.is_recording()
            ctx = trace.get_current_span().get_span_context()
            assert f"{ctx.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"

    def test_grpc_export_reaches_a_grpc_receiver(self, otlp_grpc: GrpcReceiver) -> None:
        tracing.setup_tracing(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_grpc.url, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            reconfigure=True,
        )
        with (
            tracing.run_span("grpc-graph", "run-g"),
            tracing.step_span("s", run_id="run-g", skill="k"),
        ):
            pass
        assert tracing.flush_tracing()
        spans = otlp_grpc.wait_for(lambda ss: len(ss) == 2)
        assert {s.name for s in spans} == {"invoke_agent grpc-graph", "step s"}

    def test_http_export_sends_configured_headers(self, otlp: HttpReceiver) -> None:
        tracing.setup_tracing(
            {
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp.url,
                "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=blue",
            },
            reconfigure=True,
        )
        with tracing.run_span("g", "r"):
            pass
        tracing.flush_tracing()
        otlp.wait_for(lambda ss: len(ss) == 1)
        assert otlp.headers[0]["x-tenant"] == "blue"

    def test_sampler_always_off_records_nothing(self, otlp: HttpReceiver) -> None:
        tracing.setup_tracing(
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp.url, "OTEL_TRACES_SAMPLER": "always_off"},
            reconfigure=True,
        )
        with tracing.run_span("g", "r") as span:
            assert not span.is_recording()

    def test_console_exporter_prints_scrubbed_spans_on_stderr(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        err = io.StringIO()
        monkeypatch.setattr(sys, "stderr", err)
        tracing.setup_tracing({"OTEL_TRACES_EXPORTER": "console"}, reconfigure=True)
        with tracing.run_span("console-graph", "r1") as span:
            span.set_attribute("db.url", "postgres://app:pa55w0rd-x@db/x")
        out = err.getvalue()
        assert '"name": "invoke_agent console-graph"' in out
        assert "pa55w0rd-x" not in out and "[REDACTED]" in out

    def test_capture_spans_works_with_tracing_off_and_restores_it(self) -> None:
        tracing.setup_tracing({}, reconfigure=True)
        with tracing.capture_spans() as cap, tracing.run_span("g", "r"):
            pass
        assert [s.name for s in cap.spans] == ["invoke_agent g"]
        with tracing.run_span("g", "r2") as span:
            assert not span.is_recording()

    def test_first_span_sets_tracing_up_from_the_environment(
        self, monkeypatch: pytest.MonkeyPatch, otlp: HttpReceiver
    ) -> None:
        """A process started with OTEL_* set traces without calling setup_tracing."""
        tracing.shutdown_tracing()
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", otlp.url)
        with tracing.run_span("auto", "r") as span:
            assert span.is_recording()
        tracing.flush_tracing()
        assert [s.name for s in otlp.wait_for(lambda ss: len(ss) == 1)] == ["invoke_agent auto"]

    def test_a_bad_environment_leaves_tracing_off_instead_of_failing_runs(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        tracing.shutdown_tracing()
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
        with tracing.run_span("g", "r") as span:
            assert not span.is_recording()
