"""The ``orchestra`` command line."""

from __future__ import annotations

import importlib

import typer

from orchestra.cli.bench import bench_app
from orchestra.cli.run import register as _register_run

app = typer.Typer(
    name="orchestra",
    help="Run agent workflows that route around failing tools; run worker fleets; inspect traces.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
_register_run(app)
app.add_typer(bench_app, name="bench")

# Command groups that live in their own modules; each is optional until it exists.
for _mod, _attr, _name in (
    ("orchestra.cli.skills", "skills_app", "skills"),
    ("orchestra.cli.fleet", "fleet_app", "fleet"),
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
):
    try:
        _m = importlib.import_module(_mod)
    except ModuleNotFoundError as exc:
        if exc.name != _mod:
            raise
        continue
    _m.register(app)


def main() -> None:
    """Entry point of the ``orchestra`` console script."""
    app()
