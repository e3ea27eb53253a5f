"""Fixtures: a real OTLP receiver, Orchestra's tracing pointed at it, a fake LLM server."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
import structlog

from orchestra import tracing
from orchestra.logs import configure_logging

from .fake_llm import FakeLLM
from .otlp import GrpcReceiver, HttpReceiver


@pytest.fixture
def otlp() -> Iterator[HttpReceiver]:
    """An OTLP/HTTP receiver on 127.0.0.1 (``otlp.url`` is its ``/v1/traces`` endpoint)."""
    r = HttpReceiver().start()
    yield r
    r.stop()


@pytest.fixture
def otlp_grpc() -> Iterator[GrpcReceiver]:
    """An OTLP/gRPC receiver on 127.0.0.1."""
    r = GrpcReceiver().start()
    yield r
    r.stop()


@pytest.fixture
def traced(otlp: HttpReceiver) -> Iterator[HttpReceiver]:
    """This process's tracing exporting by OTLP/HTTP to ``otlp``; switched off afterwards."""
    tracing.setup_tracing(
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp.url, "OTEL_SERVICE_NAME": "orchestra-test"},
        reconfigure=True,
    )
    yield otlp
    tracing.shutdown_tracing()


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    """An OpenAI-compatible chat server on 127.0.0.1 (``fake_llm.base_url`` ends in ``/v1``)."""
    f = FakeLLM().start()
    yield f
    f.stop()


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """structlog (and stdlib logging) rendering JSON lines into a buffer; restored afterwards."""
    saved = structlog.get_config()
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    buf = io.StringIO()
    configure_logging("DEBUG", json=True, stream=buf, stdlib=True)
    yield buf
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)
