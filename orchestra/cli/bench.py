"""``orchestra bench ...``: every benchmark registers its own command here."""

from __future__ import annotations

import importlib

import typer

bench_app = typer.Typer(
    help="Benchmarks: each prints a table and can write JSON (--json OUT).", no_args_is_help=True
)

# One module per benchmark, each with ``register(app)``; the command name is the module's own.
_BENCHMARKS = (
    "selfheal",
    "routing_scale",
    "retrieval",
    "router",
    "fleet",
    "tracing",
    "chaos",
    "injection",
    "runs",
)

for _name in _BENCHMARKS:
    try:
        _mod = importlib.import_module(f"orchestra.bench.{_name}")
    except ModuleNotFoundError as exc:  # a benchmark not written yet
        if exc.name != f"orchestra.bench.{_name}":
            raise
        continue
    _mod.register(bench_app)
