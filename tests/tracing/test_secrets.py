"""A planted API key (and other secrets) appears in no log line and in no exported span."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from orchestra import Runner, tracing

from .fake_llm import FakeLLM
from .graphs import LEAKED_KEY, PLANTED_KEY, refund_graph
from .otlp import HttpReceiver

ENV_TOKEN = "ghp_ENVplantedTokenAbCdEfGhIjKlMnOpQrSt12"
DB_PASSWORD = "Hunter2-db-pa55word"
BEARER = "opaque.bearer.tok3n-ZYXWVUTSRQ"
SECRETS = (PLANTED_KEY, LEAKED_KEY, ENV_TOKEN, DB_PASSWORD, BEARER)


def lines(buf: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


class TestPlantedSecrets:
    async def test_no_secret_in_logs_or_exported_spans(
        self,
        monkeypatch: pytest.MonkeyPatch,
        otlp: HttpReceiver,
        fake_llm: FakeLLM,
        json_logs: io.StringIO,
        capfd: pytest.CaptureFixture[str],
    ) -> None:
        """Secrets reach logs and spans by every road we know — a tool's error message, a
        backend's API key, an environment variable, structured fields, free text, an
        exception, stdlib logging, span attributes and recorded exceptions — and none of them
        arrives in a log line or an OTLP export request."""
        monkeypatch.setenv("GITHUB_TOKEN", ENV_TOKEN)
        tracing.setup_tracing({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp.url}, reconfigure=True)
        try:
            log = structlog.get_logger("test.secrets")
            with tracing.tracer().start_as_current_span("user work") as span:
                span.set_attribute("db.url", f"postgres://app:{DB_PASSWORD}@db:5432/shop")
                span.set_attribute("http.request.header.authorization", f"Bearer {BEARER}")
                span.set_attribute("llm.api_key", PLANTED_KEY)
                span.add_event("env", {"note": f"token is {ENV_TOKEN}"})
                try:
                    raise PermissionError(f"rejected key {PLANTED_KEY}")
                except PermissionError as exc:
                    span.record_exception(exc)
                    log.exception("call failed", api_key=PLANTED_KEY)
                log.info(
                    "calling provider",
                    url=f"redis://:{DB_PASSWORD}@cache:6379/0",
                    headers={"Authorization": f"Bearer {BEARER}"},
                    note=f"OPENAI_API_KEY={PLANTED_KEY} token {ENV_TOKEN}",
                )
                logging.getLogger("litellm").warning("retrying with key %s", LEAKED_KEY)
                # a library with a handler of its own (litellm does this), printing directly
                own = logging.getLogger("some.sdk")
                own.propagate = False
                own.addHandler(logging.StreamHandler())
                try:
                    own.error(
                        "auth header was Bearer %s", BEARER, exc_info=PermissionError(PLANTED_KEY)
                    )
                finally:
                    own.handlers.clear()
                    own.propagate = True

            result = await Runner().run(
                refund_graph(fake_llm.base_url), {"customer_id": "c-1", "amount": 5.0}
            )
            assert result.status == "completed"
            # the failing tool's error message really held the key before scrubbing
            fail = next(d for d in result.decisions if d.kind == "fail")
            assert LEAKED_KEY in fail.reason

            fake_llm.status = 401  # an auth failure: litellm's error text is logged by the router
            with pytest.raises(Exception, match="auth"):
                await (
                    refund_graph(fake_llm.base_url)
                    .skills["agent.summarizer"]
                    .acall({"refund_id": "r", "amount": 1.0, "email": "e"})
                )
            assert tracing.flush_tracing()
        finally:
            tracing.shutdown_tracing()

        # the secrets were really used: the model server got the key as a bearer token
        assert fake_llm.requests[0][1]["authorization"] == f"Bearer {PLANTED_KEY}"

        spans = otlp.wait_for(lambda ss: any(s.name.startswith("invoke_agent") for s in ss))
        raw = b"".join(otlp.bodies)
        out, err = capfd.readouterr()  # what other libraries' own handlers printed
        text = json_logs.getvalue() + out + err
        assert "user work" in {s.name for s in spans}
        assert "calling provider" in text and "retrying with key" in text
        assert "auth header was Bearer" in err
        for secret in SECRETS:
            assert secret.encode() not in raw, f"{secret} exported in a span"
            assert secret not in text, f"{secret} in a log line"
        assert "[REDACTED]" in text
        assert b"[REDACTED]" in raw

    def test_log_lines_inside_a_span_carry_its_trace_and_span_ids(
        self, json_logs: io.StringIO
    ) -> None:
        """structlog and stdlib lines logged inside a span carry ``trace_id``/``span_id``;
        lines outside any span carry neither."""
        log = structlog.get_logger("test.ids")
        with tracing.capture_spans() as cap:
            with tracing.tracer().start_as_current_span("outer") as span:
                log.info("inside")
                logging.getLogger("celery").warning("stdlib inside")
            log.info("outside")
        ctx = span.get_span_context()
        got = {ln["event"]: ln for ln in lines(json_logs)}
        for event in ("inside", "stdlib inside"):
            assert got[event]["trace_id"] == f"{ctx.trace_id:032x}"
            assert got[event]["span_id"] == f"{ctx.span_id:016x}"
        assert "trace_id" not in got["outside"]
        assert [s.name for s in cap.spans] == ["outer"]
