"""``orchestra bench ...``: every benchmark registers its own command here.

A benchmark module is imported only when its command runs (or ``orchestra bench --help``
lists them), so ``orchestra --help`` does not pay for what the benchmarks import.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import typer
from typer.core import TyperGroup

# One module per benchmark, each with ``register(app)`` adding the command named here.
_BENCHMARKS = {
    "selfheal": "selfheal",
    "routing-scale": "routing_scale",
    "retrieval": "retrieval",
    "router": "router",
    "fleet": "fleet",
    "tracing": "tracing",
    "chaos": "chaos",
    "injection": "injection",
    "runs": "runs",
    "overhead": "overhead",
}


class _Benchmarks(TyperGroup):
    """The ``bench`` group: commands come from their modules on first use."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [
            name
            for name, module in _BENCHMARKS.items()
            if importlib.util.find_spec(f"orchestra.bench.{module}") is not None
        ]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        module = _BENCHMARKS.get(cmd_name)
        if module is None:
            return None
        sub = typer.Typer()
        importlib.import_module(f"orchestra.bench.{module}").register(sub)
        return typer.main.get_group(sub).commands.get(cmd_name)


bench_app = typer.Typer(
    cls=_Benchmarks,
    help="Benchmarks: each prints a table and can write JSON (--json OUT).",
    no_args_is_help=True,
)
