"""``orchestra bench routing-scale`` and ``orchestra bench fleet`` at small sizes: the JSON keys
are the public interface; the figures are measured against a baseline of the same run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import orchestra

ROUTING_KEYS = {
    "tools",
    "edges",
    "trials",
    "build_s",
    "prepare_ms",
    "orchestra_ms_p50",
    "orchestra_ms_p99",
    "networkx_ms_p50",
    "networkx_ms_p99",
    "speedup_p50",
    "route_cost_mismatches",
}

FLEET_KEYS = {
    "raw_celery_ms_p50",
    "raw_celery_ms_p99",
    "step_ms_p50",
    "step_ms_p99",
    "overhead_ratio",
    "overhead_ratio_p99",
    "step_sync_ms_p50",
    "step_sync_ms_p99",
    "overhead_ratio_sync",
    "run_ms_p50",
    "run_ms_p99",
    "steps_per_s",
    "raw_celery_tasks_per_s",
    "fanout_ms",
    "sequential_ms",
    "fanout_speedup",
    "samples",
    "throughput_steps",
    "workers",
    "concurrency_per_worker",
    "pool",
    "redis",
    "cpus",
    "load_avg_1m",
}


def test_routing_scale_agrees_with_networkx_on_every_failure(tmp_path: Path) -> None:
    out = tmp_path / "rs.json"
    p = orchestra(
        "bench", "routing-scale", "--sizes", "100,1000", "--trials", "25", "--json", str(out)
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "next hop after a failure" in p.stdout
    sizes = json.loads(out.read_text())["sizes"]
    assert set(sizes) == {"100", "1000"}
    for label, r in sizes.items():
        assert set(r) == ROUTING_KEYS
        assert r["tools"] == int(label) and r["trials"] == 25
        assert r["route_cost_mismatches"] == 0  # the same exact route cost as networkx
        assert 0 < r["orchestra_ms_p50"] <= r["orchestra_ms_p99"]
        assert 0 < r["networkx_ms_p50"] <= r["networkx_ms_p99"]
    assert sizes["100"]["edges"] < sizes["1000"]["edges"]


def test_an_unknown_size_is_bad_input() -> None:
    p = orchestra("bench", "routing-scale", "--sizes", "100,7")
    assert p.returncode == 2, p.stdout + p.stderr
    assert "unknown size '7'; use 100, 1000, 10000" in p.stderr


@pytest.mark.fleet
@pytest.mark.slow
def test_bench_fleet_small(tmp_path: Path) -> None:
    """Private Redis, two real workers, a few samples: every figure is there; the fan-out and
    the sequence can be no faster than the 200 ms naps they are made of."""
    out = tmp_path / "fleet.json"
    p = orchestra(
        "bench", "fleet", "--samples", "30", "--steps", "40", "--json", str(out), timeout=600
    )
    assert p.returncode == 0, p.stdout + p.stderr
    r = json.loads(out.read_text())
    assert set(r) == FLEET_KEYS
    assert r["workers"] == 2 and r["concurrency_per_worker"] == 2
    assert r["redis"] == "private redis-server" and r["throughput_steps"] == 40
    assert r["samples"] >= 30
    for key in ("raw_celery_ms_p50", "step_ms_p50", "step_sync_ms_p50", "run_ms_p50"):
        assert r[key] > 0
    assert r["fanout_ms"] >= 200 and r["sequential_ms"] >= 4 * 200
    assert r["steps_per_s"] > 0 and r["raw_celery_tasks_per_s"] > 0
