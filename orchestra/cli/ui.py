"""``orchestra ui``: the web view of runs (list, run pages with the route picture, live)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from orchestra.cli.common import print_error

__all__ = ["DEFAULT_PORT", "register"]

DEFAULT_PORT = 8765


def register(app: typer.Typer) -> None:
    """Add ``orchestra ui`` to the command line."""

    @app.command("ui")
    def ui_cmd(
        host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port to listen on")] = DEFAULT_PORT,
        checkpoint: Annotated[
            str | None,
            typer.Option(
                "--checkpoint",
                help="Checkpoint URL to read runs from (default: ORCHESTRA_CHECKPOINT_URL, "
                "sqlite:///.orchestra/runs.sqlite)",
            ),
        ] = None,
    ) -> None:
        """Serve the web view: recent runs, and a page per run with its route graph drawn
        (path taken, failures, reroutes), the decision log, live updates while it runs, and
        a link to its trace in Jaeger. Works offline."""
        console = Console(stderr=True)
        try:
            import uvicorn

            from orchestra.ui import create_app
        except ModuleNotFoundError as exc:
            print_error(
                console,
                f"the web view needs {exc.name}: pip install -e '.[service]' "
                "(in the Orchestra checkout)",
            )
            raise typer.Exit(2) from None
        from orchestra.config import get_settings
        from orchestra.errors import ConfigError

        try:
            web = create_app(checkpoint or get_settings().checkpoint_url)
        except ConfigError as exc:
            print_error(console, exc)
            raise typer.Exit(2) from None
        console.print(f"Orchestra runs: http://{host}:{port}/", highlight=False)
        uvicorn.run(web, host=host, port=port, log_level="warning")
