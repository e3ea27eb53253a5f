"""workers/compose.yaml (no Docker engine here): its structure, and that what it names exists."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from orchestra.cli import app
from orchestra.tracing import tracing_config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "workers" / "compose.yaml"
WORKERS = ("worker-a", "worker-b")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def ports(service: dict[str, Any]) -> set[str]:
    return {str(p).split(":")[-1] for p in service.get("ports", [])}


def test_services_are_redis_jaeger_and_two_workers(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"redis", "jaeger", *WORKERS}


def test_jaeger_receives_otlp_on_both_protocols_and_serves_the_ui(compose: dict[str, Any]) -> None:
    jaeger = compose["services"]["jaeger"]
    assert jaeger["image"].startswith(("jaegertracing/jaeger:", "jaegertracing/all-in-one:"))
    assert not jaeger["image"].endswith(":latest")
    assert {"4317", "4318", "16686"} <= ports(jaeger)
    flags = " ".join(jaeger.get("command", []))
    assert "grpc.endpoint=0.0.0.0:4317" in flags and "http.endpoint=0.0.0.0:4318" in flags


def test_redis_is_published_and_health_checked(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert "6379" in ports(redis)
    assert "redis-cli" in redis["healthcheck"]["test"]


@pytest.mark.parametrize("name", WORKERS)
def test_workers_are_built_from_the_project_and_trace_to_jaeger(
    compose: dict[str, Any], name: str
) -> None:
    w = compose["services"][name]
    context = (COMPOSE.parent / w["build"]["context"]).resolve()
    assert context == ROOT
    assert (context / w["build"]["dockerfile"]).is_file()
    env = w["environment"]
    for key in ("ORCHESTRA_BROKER_URL", "ORCHESTRA_RESULT_BACKEND", "ORCHESTRA_HEALTH_URL"):
        assert env[key].startswith("redis://redis:6379/")
    cfg = tracing_config({k: str(v) for k, v in env.items()})
    assert cfg.enabled and cfg.exporters == ("otlp",)
    assert cfg.endpoint == "http://jaeger:4318/v1/traces"
    assert cfg.service_name == "orchestra-worker"
    assert set(w["depends_on"]) == {"redis", "jaeger"}
    assert w["depends_on"]["redis"]["condition"] == "service_healthy"
    assert w["command"][0] == "worker"
    graph = w["command"][w["command"].index("--graph") + 1]
    assert (ROOT / graph).is_file()


def test_worker_names_differ(compose: dict[str, Any]) -> None:
    names = {
        compose["services"][w]["command"][compose["services"][w]["command"].index("--name") + 1]
        for w in WORKERS
    }
    assert len(names) == 2


def test_worker_command_line_is_one_orchestra_accepts(compose: dict[str, Any]) -> None:
    """Every option the compose file passes to ``orchestra worker`` exists."""
    cli = typer.main.get_command(app)
    worker = cli.commands.get("worker")  # type: ignore[attr-defined]
    assert worker is not None, "orchestra worker is missing from the CLI"
    known = {opt for p in worker.params for opt in p.opts}
    for name in WORKERS:
        used = {a for a in compose["services"][name]["command"] if a.startswith("--")}
        assert used <= known, used - known


def test_dockerfile_copies_what_exists_and_runs_orchestra() -> None:
    text = (ROOT / "workers" / "Dockerfile").read_text()
    for src in re.findall(r"^COPY\s+(.+?)\s+\S+$", text, flags=re.M):
        for path in src.split():
            assert (ROOT / path).exists(), path
    assert 'ENTRYPOINT ["orchestra"]' in text
    ignore = (ROOT / "workers" / "Dockerfile.dockerignore").read_text()
    assert "**" in ignore.splitlines()  # the .venv and .git never enter the build context
