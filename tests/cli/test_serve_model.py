"""``orchestra serve-model``: vLLM's OpenAI-compatible server for the local tier, from its own
environment (``.venv-vllm``, ``scripts/setup-vllm.sh``); Ctrl-C stops it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from skip_policy import missing

from orchestra.bench._procs import free_port
from orchestra.models import Backend, ChatMessage, LiteLLMChatModel

from .conftest import ROOT

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(900)]


def _answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_dry_run_prints_the_vllm_command() -> None:
    from .conftest import orchestra

    p = orchestra("serve-model", "--port", "8123", "--device", "cpu", "--dry-run")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "vllm.entrypoints.openai.api_server" in p.stdout and "8123" in p.stdout


def test_a_bad_device_is_bad_input() -> None:
    from .conftest import orchestra

    p = orchestra("serve-model", "--device", "tpu", "--dry-run")
    assert p.returncode == 2
    assert "must be auto, cpu or gpu" in p.stderr


async def test_serves_the_local_model_until_ctrl_c(tmp_path: Path) -> None:
    from orchestra.models.serve import default_model_dir, vllm_python

    if not vllm_python().exists() or not (default_model_dir() / "config.json").exists():
        missing("no vLLM environment or model (run scripts/setup-vllm.sh)")
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestra", "serve-model", "--port", str(port)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "300"},
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 600
        while "ready in" not in log.read_text():
            assert proc.poll() is None, f"serve-model exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"not ready in 600 s:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        assert f"api_base='http://127.0.0.1:{port}/v1'" in log.read_text()
        model = LiteLLMChatModel(
            Backend(
                model="hosted_vllm/smollm2-135m-instruct",
                api_base=f"http://127.0.0.1:{port}/v1",
                tier=0,
                timeout_s=120,
            )
        )
        resp = await model.chat([ChatMessage(role="user", content="Say hello.")], max_tokens=8)
        assert resp.text.strip()
        assert resp.usage.output_tokens > 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in its terminal
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
                pytest.fail("serve-model did not stop on Ctrl-C")
    deadline = time.monotonic() + 60
    while _answers(port):
        assert time.monotonic() < deadline, "the vLLM server still answers after Ctrl-C"
        time.sleep(0.5)
