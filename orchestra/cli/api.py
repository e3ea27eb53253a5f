"""``orchestra serve-api``: the HTTP API of runs as a service (FastAPI on uvicorn)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command("serve-api")
    def serve_api(
        host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port to bind")] = 8080,
        loglevel: Annotated[str, typer.Option("--loglevel", "-l", help="Log level")] = "warning",
        registry: Annotated[
            Path | None,
            typer.Option(
                help="A graph registry file: inputs are checked against the graphs' input "
                "models before runs are queued (default ORCHESTRA_GRAPHS)"
            ),
        ] = None,
    ) -> None:
        """Serve submit/list/get/result/cancel and live events (SSE) over HTTP.

        Runs go to the fleet named by ORCHESTRA_BROKER_URL / ORCHESTRA_RESULT_BACKEND and are
        recorded in ORCHESTRA_CHECKPOINT_URL; drivers are `orchestra worker --runs`.
        """
        try:
            import uvicorn

            from orchestra.service.api import create_api
        except ImportError as exc:
            typer.echo(
                f"error: the HTTP API needs the service extra: pip install 'orchestra[service]' "
                f"({exc})",
                err=True,
            )
            raise typer.Exit(2) from None
        from orchestra.errors import SpecError
        from orchestra.service.registry import GraphRegistry

        try:
            reg = GraphRegistry.from_sources(registry_file=registry) if registry else None
        except SpecError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        uvicorn.run(create_api(registry=reg), host=host, port=port, log_level=loglevel.lower())
