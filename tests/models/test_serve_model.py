"""``orchestra serve-model`` stops the server it started when it is told to stop.

The server runs in its own session (so a Ctrl-C in the terminal reaches ``serve-model`` first);
``kill <serve-model pid>`` must not leave it running.  One test uses a stand-in for the vLLM
interpreter (a real process serving the OpenAI-compatible test server), one the real vLLM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from skip_policy import missing

from .conftest import _vllm_missing_reason, free_port

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) is not running
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _group(pgid: int) -> list[int]:
    """Every live process of process group ``pgid``."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            fields = (p / "stat").read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(p.name))
    return out


def _wait(cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} after {timeout:.0f}s")
        time.sleep(0.1)


def _ready(port: int, name: str) -> bool:
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2)
    except httpx.HTTPError:
        return False
    return r.status_code == 200 and name in r.text


def _serve(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "orchestra", "serve-model", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_to_serve_model_stops_the_server_it_started(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """SIGTERM, SIGINT or SIGHUP to ``serve-model``: it stops its server, then exits 0."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/sh\nexec {sys.executable} {HERE / "fake_vllm.py"} "$@"\n')
    fake.chmod(0o755)
    pidfile = tmp_path / "server.pid"
    port = free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, "FAKE_VLLM_PIDFILE": str(pidfile), "COLUMNS": "200"}
    proc = _serve(
        ["--python", str(fake), "--model", str(model), "--port", str(port), "--device", "cpu"],
        log,
        env,
    )
    try:
        _wait(lambda: _ready(port, "smollm2-135m-instruct"), 60, "the server never answered")
        _wait(lambda: "ready in" in log.read_text(), 60, "serve-model never said ready")
        server = int(pidfile.read_text())
        assert _alive(server)
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == 0, log.read_text()
        _wait(lambda: not _alive(server), 30, "the server still runs")
        assert not _ready(port, "smollm2-135m-instruct")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if pidfile.exists() and _alive(int(pidfile.read_text())):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigterm_stops_the_real_vllm_server_and_its_engine(tmp_path: Path) -> None:
    """The real CPU vLLM: after ``kill <serve-model pid>`` no process of its server is left."""
    reason = _vllm_missing_reason()
    if reason is not None:
        missing(f"vLLM tests must run under CI: {reason}")
    port = free_port()
    log = tmp_path / "serve.log"
    proc = _serve(["--port", str(port), "--device", "cpu"], log, {**os.environ, "COLUMNS": "200"})
    server = None
    try:
        _wait(lambda: "ready in" in log.read_text(), 600, "vLLM never became ready")
        children = [
            int(p.name)
            for p in Path("/proc").iterdir()
            if p.name.isdigit()
            and (p / "stat").exists()
            and (p / "stat").read_text().rsplit(") ", 1)[1].split()[1] == str(proc.pid)
        ]
        assert len(children) == 1, children
        server = children[0]
        assert _group(server), "the server runs in its own process group"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
        _wait(lambda: not _group(server), 60, f"vLLM processes {_group(server)} still run")
        assert not _ready(port, "smollm2-135m-instruct")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if server is not None:
            for pid in _group(server):
                os.kill(pid, signal.SIGKILL)
