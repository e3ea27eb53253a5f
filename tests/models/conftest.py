"""Fixtures of the model-router tests: real HTTP endpoints and the real local vLLM server."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from skip_policy import missing

from orchestra.bench._procs import free_port
from orchestra.errors import ModelError
from orchestra.models.serve import VLLMServer, default_model_dir, vllm_python

HERE = Path(__file__).resolve().parent


class HttpEndpoint:
    """A real OpenAI-compatible server process (``openai_compat_server.py``)."""

    def __init__(self, *models: str):
        self.port = free_port()
        self.models = models
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> HttpEndpoint:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "openai_compat_server.py"), str(self.port), *self.models],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base_url}/models", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"test endpoint on port {self.port} did not start")

    def stats(self) -> dict[str, int]:
        return dict(httpx.get(f"http://127.0.0.1:{self.port}/stats", timeout=2).json())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def endpoint_factory() -> Iterator[Any]:
    """Start real OpenAI-compatible HTTP servers; all are stopped after the test."""
    started: list[HttpEndpoint] = []

    def make(*models: str) -> HttpEndpoint:
        ep = HttpEndpoint(*models).start()
        started.append(ep)
        return ep

    yield make
    for ep in started:
        ep.stop()


# ---------------------------------------------------------------- the real local vLLM server


def _vllm_missing_reason() -> str | None:
    if not vllm_python().exists():
        return f"no vLLM environment at {vllm_python()} (run scripts/setup-vllm.sh)"
    if not (default_model_dir() / "config.json").exists():
        return f"no converted model at {default_model_dir()} (run scripts/setup-vllm.sh)"
    return None


@pytest.fixture(scope="session")
def vllm_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMServer]:
    """One real vLLM server for the session (CPU build here), started from .venv-vllm.

    Skips only when vLLM is not installed and CI is not "true"; under CI a missing vLLM fails.
    """
    reason = _vllm_missing_reason()
    if reason is not None:
        missing(f"vLLM tests must run under CI: {reason}")
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    server = VLLMServer(port=free_port(), log_path=log)
    server.start()
    try:
        server.wait_ready(timeout_s=420)
    except ModelError:
        server.stop()
        raise
    yield server
    server.stop()


@pytest.fixture
def vllm_server(vllm_session: VLLMServer) -> VLLMServer:
    """The session's vLLM server, restarted first if an earlier test stopped it."""
    if not vllm_session.is_ready():
        vllm_session.start()
        vllm_session.wait_ready(timeout_s=420)
    return vllm_session
