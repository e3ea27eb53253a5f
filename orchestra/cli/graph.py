"""``orchestra graph GRAPH``: draw a declared graph (Mermaid, DOT, SVG or PNG)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from orchestra.cli.common import print_error
from orchestra.errors import OrchestraError

__all__ = ["register", "write_picture"]


def write_picture(data: bytes, fmt: str, output: Path | None, console: Console) -> None:
    """Write a rendered picture to ``output``, or text formats to standard output."""
    if output is not None:
        output.write_bytes(data)
        console.print(f"[dim]wrote {output} ({fmt}, {len(data):,} bytes)[/]", highlight=False)
        return
    if fmt in ("svg", "png") and sys.stdout.isatty():
        raise typer.BadParameter(f"{fmt} is binary or long: give -o FILE", param_hint="--output")
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    """Add ``orchestra graph`` to the command line."""

    @app.command("graph")
    def graph_cmd(
        graph: Annotated[Path, typer.Argument(help="A graph: .py (defines `graph`) or .yaml")],
        format: Annotated[
            str | None,
            typer.Option(
                "--format",
                "-f",
                help="mermaid, dot, svg or png (default: from -o's suffix, else mermaid)",
            ),
        ] = None,
        output: Annotated[
            Path | None, typer.Option("--output", "-o", help="Write the picture to this file")
        ] = None,
        scenario: Annotated[
            str | None, typer.Option(help="Scenario id, when GRAPH is a scenario file")
        ] = None,
    ) -> None:
        """Draw GRAPH: its steps in dependency order, each with its candidate skills and their
        static weights (cost per call, latency), the goal and the fallback goals.

        A run of it, with the path taken, failures and reroutes: orchestra trace RUN_ID -o run.svg
        """
        from orchestra import viz
        from orchestra.loaders import load_any_graph

        console = Console(stderr=True)
        fmt = viz.format_for(str(output) if output else None, format)
        try:
            if fmt not in viz.FORMATS:
                raise viz.RenderError(
                    f"unknown format {fmt!r}: use one of {', '.join(viz.FORMATS)}"
                )
            loaded, _ = load_any_graph(graph, scenario=scenario)
            data = viz.render(viz.graph_picture(loaded), fmt)
        except (OrchestraError, OSError, ValueError) as exc:
            print_error(console, exc)
            raise typer.Exit(2) from None
        write_picture(data, fmt, output, console)
