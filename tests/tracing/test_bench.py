"""``orchestra bench tracing`` runs, and leaves this process's tracing as it found it."""

from __future__ import annotations

from orchestra import tracing
from orchestra.bench.tracing import MODES, bench_graph, run_tracing_bench, tracing_mode
from orchestra.runtime import Runner


def test_bench_reports_every_mode_against_bare() -> None:
    result = run_tracing_bench(steps=3, runs=2, warmup=1)
    assert set(result["modes"]) == set(MODES)
    for figures in result["modes"].values():
        assert figures["step_ms_p50"] > 0 and figures["instrumentation_us_per_step"] > 0
    # recording spans costs more than not recording them
    assert (
        result["modes"]["enabled"]["instrumentation_us_per_step"]
        > result["modes"]["disabled"]["instrumentation_us_per_step"]
    )


async def test_the_bare_baseline_runs_with_no_tracing_at_all() -> None:
    """What the overheads are measured against really is uninstrumented: under ``bare`` a run
    records no span and no event even while an SDK records everything, and the very same run
    under ``enabled`` records a run span, a step span and a tool span per step. (A runtime
    that called tracing by another path than the module's functions would leak spans here.)"""
    graph = bench_graph(3).compile()
    runner = Runner()
    with tracing.capture_spans() as cap:
        with tracing_mode("bare"):
            result = await runner.run(graph)
        assert result.status == "completed"
        assert cap.spans == []
    with tracing_mode("enabled"), tracing.capture_spans() as cap:
        result = await runner.run(graph)
        assert result.status == "completed"
        names = sorted(s.name for s in cap.spans)
    assert names.count("invoke_agent trace_bench") == 1
    assert sum(n.startswith("step ") for n in names) == 3
    assert sum(n.startswith("execute_tool ") for n in names) == 3


def test_modes_restore_the_tracing_functions_and_set_up() -> None:
    before = (tracing.run_span, tracing.step_span, tracing.decision_event)
    for mode in MODES:
        with tracing_mode(mode), tracing.run_span("g", "r") as span:
            assert span.is_recording() == (mode == "enabled")
    assert (tracing.run_span, tracing.step_span, tracing.decision_event) == before
    tracing.setup_tracing({}, reconfigure=True)
    with tracing.run_span("g", "r") as span:
        assert not span.is_recording()
    tracing.shutdown_tracing()
