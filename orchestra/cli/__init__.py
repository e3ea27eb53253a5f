"""The ``orchestra`` command line."""

from __future__ import annotations

import importlib
from typing import Annotated, Any

import typer
import typer.core

from orchestra.cli.bench import bench_app
from orchestra.cli.run import register as _register_run


def _no_flag_placeholders() -> None:
    """typer (0.29) shows a flag's type in --help as ``<bool>``, as if it took a value: a flag
    takes none, so show nothing there."""
    original: Any = typer.core.TyperOption.display_type_rich
    if getattr(original, "_orchestra_patched", False):
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        if self.is_flag and self.metavar is None:
            return None
        result: str | None = original(self, ctx)
        return result

    display_type_rich._orchestra_patched = True  # type: ignore[attr-defined]
    typer.core.TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_no_flag_placeholders()

app = typer.Typer(
    name="orchestra",
    help="Run agent workflows that route around failing tools; run worker fleets; inspect traces.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show Python tracebacks with errors")
    ] = False,
) -> None:
    """Log lines (stderr) as ORCHESTRA_LOG_LEVEL and ORCHESTRA_LOG_JSON say; --debug shows
    tracebacks."""
    from orchestra.cli.common import set_debug
    from orchestra.errors import ConfigError
    from orchestra.logs import configure_logging_from_env

    set_debug(debug)
    try:
        configure_logging_from_env()
    except ConfigError as exc:
        from rich.console import Console

        from orchestra.cli.run import print_error

        print_error(Console(stderr=True), exc)
        raise typer.Exit(2) from None


@app.command("keygen")
def keygen() -> None:
    """Print a new key for ORCHESTRA_SECRET_KEY (put the new key first to rotate: NEW,OLD)."""
    from orchestra.secrets import generate_key

    typer.echo(generate_key())


_register_run(app)
app.add_typer(bench_app, name="bench")

# Command groups that live in their own modules; each is optional until it exists.
for _mod, _attr, _name in (
    ("orchestra.cli.skills", "skills_app", "skills"),
    ("orchestra.cli.fleet", "fleet_app", "fleet"),
    ("orchestra.cli.runs", "runs_app", "runs"),
):
    try:
        _m = importlib.import_module(_mod)
    except ModuleNotFoundError as exc:
        if exc.name != _mod:
            raise
        continue
    app.add_typer(getattr(_m, _attr), name=_name)

for _mod in (
    "orchestra.cli.serve",
    "orchestra.cli.worker",
    "orchestra.cli.trace",
    "orchestra.cli.graph",
    "orchestra.cli.ui",
    "orchestra.cli.resume",
    "orchestra.cli.runs",
    "orchestra.cli.api",
):
    try:
        _m = importlib.import_module(_mod)
    except ModuleNotFoundError as exc:
        if exc.name != _mod:
            raise
        continue
    _m.register(app)


def main() -> None:
    """Entry point of the ``orchestra`` console script.

    An Orchestra error that no command caught ends with exit 2 and one line; anything else
    with exit 1 and one line.  ``--debug`` shows the traceback.
    """
    from orchestra.cli.common import debug, print_error
    from orchestra.errors import OrchestraError, RunError, SpecError

    try:
        app()
    except Exception as exc:
        if debug() and not isinstance(exc, OrchestraError):
            raise
        from rich.console import Console

        print_error(Console(stderr=True), exc)
        bad_input = isinstance(exc, SpecError | RunError | ValueError)
        raise SystemExit(2 if bad_input else 1) from None
