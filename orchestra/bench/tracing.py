"""``orchestra bench tracing``: what tracing costs per step.

The same run — a linear graph of ``steps`` steps served by the fleet benchmark's ``noop``
skill, so that only Orchestra's own work is timed — is repeated under three modes,
interleaved round by round so that drift hits every mode alike:

* ``bare``: every :mod:`orchestra.tracing` call the runtime makes is replaced by a stub that
  does nothing (the cost of not instrumenting at all);
* ``disabled``: tracing off as shipped (``OTEL_SDK_DISABLED=true``; the same path as no
  ``OTEL_*`` set): OpenTelemetry's no-op tracer;
* ``enabled``: the OpenTelemetry SDK recording every span, exported synchronously to an
  in-memory exporter through the secret scrubber.

The figures are the median step time (run wall time / steps) and driver CPU time per step
per mode, and each mode's overhead over ``bare``: the median of per-round ratios, and the
ratio of the fastest decile (load from other processes only ever adds time).  On a
busy machine those move by several percent from run to run, so the benchmark also times the
tracing calls one step makes in a tight loop (CPU time, best of five) and states them as a
share of the bare step time: the steady figure.
``--fleet`` runs the steps on the fleet benchmark's set-up (a private ``redis-server`` and
two ``orchestra worker`` processes, see :mod:`orchestra.bench.fleet`): the step time of a
fleet run.  The workers run with tracing disabled in every mode, so the figures are the
driver's share.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import random
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["MODES", "bench_graph", "register", "run_tracing_bench", "tracing_mode"]

MODES = ("bare", "disabled", "enabled")


def bench_graph(steps: int) -> Any:
    """A linear graph of ``steps`` steps, each served by the fleet benchmark's ``noop`` skill."""
    from orchestra.bench.fleet import noop
    from orchestra.graph import Graph

    g = Graph("trace_bench")
    for i in range(steps):
        g.step(f"s{i}", [noop], after=[f"s{i - 1}"] if i else [])
    return g


@contextlib.contextmanager
def _stub(*args: Any, **kwargs: Any) -> Iterator[Any]:
    yield _NULL_SPAN


class _NullSpan:
    def set_attribute(self, *args: Any) -> None:
        return None

    def is_recording(self) -> bool:
        return False

    def get_span_context(self) -> Any:
        from opentelemetry.trace import INVALID_SPAN_CONTEXT

        return INVALID_SPAN_CONTEXT


_NULL_SPAN = _NullSpan()


@contextlib.contextmanager
def tracing_mode(mode: str) -> Iterator[None]:
    """Run the block under one of :data:`MODES`; the previous set-up is restored after."""
    from orchestra import tracing

    if mode == "bare":
        names = (
            "run_span",
            "step_span",
            "tool_span",
            "publish_span",
            "process_span",
            "extract_context",
        )
        saved = {n: getattr(tracing, n) for n in (*names, "decision_event", "inject_context")}
        saved["mark_error"] = tracing.mark_error
        for n in names:
            setattr(tracing, n, _stub)
        tracing.decision_event = lambda *a, **k: None  # type: ignore[assignment]
        tracing.inject_context = dict  # type: ignore[assignment]
        tracing.mark_error = lambda *a, **k: None  # type: ignore[assignment]
        try:
            yield
        finally:
            for n, f in saved.items():
                setattr(tracing, n, f)
        return
    if mode == "disabled":
        tracing.setup_tracing({"OTEL_SDK_DISABLED": "true"}, reconfigure=True)
        try:
            yield
        finally:
            tracing.shutdown_tracing()
        return
    if mode == "enabled":
        tracing.setup_tracing({"OTEL_SDK_DISABLED": "true"}, reconfigure=True)
        try:
            with tracing.capture_spans() as cap:
                yield
                if not cap.spans:
                    raise RuntimeError("tracing enabled but no span was recorded")
        finally:
            tracing.shutdown_tracing()
        return
    raise ValueError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")


@contextlib.contextmanager
def _fleet() -> Iterator[Any]:
    """The fleet benchmark's set-up: a private Redis and two workers (tracing disabled) hosting
    its skills; yields fleet settings for a driver in this process."""
    from orchestra.bench import fleet as bench_fleet
    from orchestra.bench._procs import fleet_env, fleet_settings, private_redis, skill_workers

    with contextlib.ExitStack() as stack:
        env = fleet_env(stack.enter_context(private_redis()), "none")
        stack.enter_context(skill_workers(env, 2, 2, bench_fleet.__file__))
        yield fleet_settings(env)


def _step_calls() -> None:
    """The tracing calls one step makes (driver and tool side), as the runtime makes them."""
    from orchestra import tracing

    tracing.decision_event(
        "execute",
        "route s0 -> goal (cost 0.001)",
        {"orchestra.step_id": "s0", "orchestra.skill": "noop", "orchestra.route": "s0 -> goal"},
    )
    with tracing.step_span(
        "s0",
        run_id="r",
        skill="noop",
        attributes={"orchestra.cost": 0.0, "orchestra.attempt": 1, "orchestra.health": "closed"},
    ) as span:
        carrier = tracing.inject_context()
        with (
            tracing.extract_context(carrier),
            tracing.tool_span("noop", run_id="r", step_id="s0"),
        ):
            pass
        span.set_attribute("orchestra.duration_ms", 0.1)
    tracing.decision_event(
        "succeed", "noop answered in 0.1 ms", {"orchestra.step_id": "s0", "orchestra.skill": "noop"}
    )


def instrumentation_us(mode: str, *, calls: int = 2000, repeats: int = 5) -> float:
    """CPU microseconds the tracing calls of one step cost under ``mode`` (best of repeats).

    A tight loop on this process's CPU clock: steadier than timing whole runs on a busy
    machine, and the direct answer to "what does tracing add to a step".
    """
    from orchestra import tracing

    best = float("inf")
    with tracing_mode(mode), tracing.run_span("trace_bench", "r"):
        for _ in range(repeats):
            t0 = time.process_time()
            for _ in range(calls):
                _step_calls()
            best = min(best, (time.process_time() - t0) / calls * 1e6)
    return best


async def _one_run(runner: Any, graph: Any) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of one run."""
    c0, t0 = time.process_time(), time.perf_counter()
    result = await runner.run(graph)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if result.status != "completed":
        raise RuntimeError(f"bench run ended {result.status}: {result.reason}")
    return wall, cpu


def run_tracing_bench(
    *, steps: int = 20, runs: int = 30, warmup: int = 3, fleet: bool = False, seed: int = 1
) -> dict[str, Any]:
    """Step times per mode and their overhead over ``bare`` (see the module docs).

    Each round runs every mode once, in a shuffled order; the overhead of a mode is the
    median over rounds of its time divided by ``bare``'s in the same round, so load that
    other processes put on the machine cancels out.  Wall time is what a user waits; CPU
    time (this process, the driver) is what tracing itself spends, and is the steadier
    figure on a shared machine.
    """
    from orchestra.runtime import Runner

    graph = bench_graph(steps).compile()
    rnd = random.Random(seed)
    wall: dict[str, list[float]] = {m: [] for m in MODES}
    cpu: dict[str, list[float]] = {m: [] for m in MODES}

    async def measure(runner: Any) -> None:
        for _ in range(warmup):
            for mode in MODES:
                with tracing_mode(mode):
                    await _one_run(runner, graph)
        for _ in range(runs):
            order = list(MODES)
            rnd.shuffle(order)
            for mode in order:
                gc.collect()
                with tracing_mode(mode):
                    w, c = await _one_run(runner, graph)
                wall[mode].append(w / steps * 1e3)
                cpu[mode].append(c / steps * 1e3)

    async def main(settings: Any) -> None:
        if settings is None:
            await measure(Runner())
            return
        from orchestra.fleet import fleet_runner

        runner = fleet_runner(settings)
        try:
            await measure(runner)
        finally:
            await runner.executor.aclose()

    if fleet:
        with _fleet() as settings:
            asyncio.run(main(settings))
    else:
        asyncio.run(main(None))

    def ratio(xs: list[float], base: list[float]) -> float:
        return (statistics.median(x / b for x, b in zip(xs, base, strict=True)) - 1.0) * 100.0

    out: dict[str, Any] = {
        "executor": "fleet (2 Celery workers)" if fleet else "embedded",
        "steps_per_run": steps,
        "runs_per_mode": runs,
        "modes": {},
    }

    def p10(xs: list[float]) -> float:
        return sorted(xs)[int(0.1 * (len(xs) - 1))]

    for mode in MODES:
        ws = sorted(wall[mode])
        us = instrumentation_us(mode)
        out["modes"][mode] = {
            "instrumentation_us_per_step": us,
            "instrumentation_pct_of_step": us / 1e3 / statistics.median(wall["bare"]) * 100.0,
            "step_ms_p50": statistics.median(ws),
            "step_ms_p10": p10(ws),
            "step_ms_p90": ws[int(0.9 * (len(ws) - 1))],
            "cpu_ms_p50": statistics.median(cpu[mode]),
            "overhead_pct": ratio(wall[mode], wall["bare"]),
            "overhead_p10_pct": (p10(ws) / p10(wall["bare"]) - 1.0) * 100.0,
            "cpu_overhead_pct": ratio(cpu[mode], cpu["bare"]),
        }
    return out


def register(app: typer.Typer) -> None:
    """Add ``orchestra bench tracing``."""

    @app.command("tracing")
    def tracing_cmd(
        steps: Annotated[int, typer.Option(help="Steps per run")] = 20,
        runs: Annotated[int, typer.Option(help="Runs per mode (interleaved)")] = 30,
        fleet: Annotated[
            bool, typer.Option("--fleet", help="Run the steps on two Celery workers")
        ] = False,
        json_out: Annotated[
            Path | None, typer.Option("--json", help="Write the figures as JSON here")
        ] = None,
    ) -> None:
        """Step time with tracing bare / disabled / enabled (in-memory exporter)."""
        from rich.console import Console
        from rich.table import Table

        result = run_tracing_bench(steps=steps, runs=runs, fleet=fleet)
        table = Table(
            title=f"step time, {result['executor']}, {steps} steps x {runs} runs per mode",
            caption="Δ: overhead over bare (median of per-round ratios; fastest decile; driver "
            "CPU). calls µs: the tracing calls of one step, timed alone; % of step: of the bare "
            "step's p50",
        )
        for col in (
            "tracing",
            "p50 ms",
            "p10 ms",
            "Δ p50",
            "Δ p10",
            "Δ CPU",
            "calls µs",
            "% of step",
        ):
            table.add_column(col, justify="right")

        def pct(mode: str, v: float) -> str:
            return "-" if mode == "bare" else f"{v:+.1f}%"

        for mode, r in result["modes"].items():
            table.add_row(
                mode,
                f"{r['step_ms_p50']:.3f}",
                f"{r['step_ms_p10']:.3f}",
                pct(mode, r["overhead_pct"]),
                pct(mode, r["overhead_p10_pct"]),
                pct(mode, r["cpu_overhead_pct"]),
                f"{r['instrumentation_us_per_step']:.1f}",
                f"{r['instrumentation_pct_of_step']:.2f}%",
            )
        Console().print(table)
        if json_out:
            json_out.write_text(json.dumps(result, indent=2))
