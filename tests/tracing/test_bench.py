"""``orchestra bench tracing`` runs, and leaves this process's tracing as it found it."""

from __future__ import annotations

from orchestra import tracing
from orchestra.bench.tracing import MODES, run_tracing_bench, tracing_mode


def test_bench_reports_every_mode_against_bare() -> None:
    result = run_tracing_bench(steps=3, runs=2, warmup=1)
    assert set(result["modes"]) == set(MODES)
    assert result["modes"]["bare"]["overhead_pct"] == 0.0
    for figures in result["modes"].values():
        assert figures["step_ms_p50"] > 0 and figures["instrumentation_us_per_step"] > 0
    # recording spans costs more than not recording them
    assert (
        result["modes"]["enabled"]["instrumentation_us_per_step"]
        > result["modes"]["disabled"]["instrumentation_us_per_step"]
    )


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
