"""A ``SecretStr`` login across the fleet: the skill gets the real password, and the password
(and the plain card number and token around it) is at rest or on show nowhere: not in the
checkpoint store's bytes (SQLite, Postgres), not in Redis (outcomes, dead letters, queues),
not in ``--json``, not on stdout, not in the workers' logs, not in exported spans."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
from tracing.otlp import HttpReceiver

from .conftest import POSTGRES, ROOT, Fleet, require_postgres

pytestmark = [pytest.mark.fleet]

PASSWORD = "Pl4nted-S3cret-pw-7c1e"
CARD = "4111111111111111"  # Luhn-valid test number
CARD_SPACED = "4111 1111 1111 1111"
TOKEN = "tok-08e06f887e2ea4df3051"  # what `login` returns as api_token (sha256 prefix)
KEY = "3q2-7wM0h5VYkZ0m4rP3iJ8s1l8Qh1yq7w0mYx6mH2k="  # a Fernet key made for this test


def redis_bytes(url_base: str) -> bytes:
    """Every key and value of databases 0-2 (queue messages' bodies base64-decoded too)."""
    out: list[bytes] = []
    for db in (0, 1, 2):
        client = redis.Redis.from_url(f"{url_base}/{db}")
        try:
            for key in client.scan_iter():
                out.append(key)
                kind = client.type(key).decode()
                if kind == "string":
                    values = [client.get(key) or b""]
                elif kind == "hash":
                    values = [b for kv in client.hgetall(key).items() for b in kv]
                elif kind == "list":
                    values = client.lrange(key, 0, -1)
                elif kind == "set":
                    values = list(client.smembers(key))
                elif kind == "zset":
                    values = client.zrange(key, 0, -1)
                else:
                    values = []
                for v in values:
                    out.append(v)
                    try:
                        body = json.loads(v).get("body")
                        out.append(base64.b64decode(body))
                    except Exception:
                        pass
        finally:
            client.close()
    return b"\n".join(out)


def checkpoint_bytes(url: str, tmp: Path, run_id: str) -> bytes:
    if url.startswith("sqlite:///"):
        return b"".join(p.read_bytes() for p in sorted(tmp.glob("runs.sqlite*")))
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.checkpoint::text, c.metadata::text FROM checkpoints c WHERE thread_id = %s",
            (run_id,),
        ).fetchall()
        blobs = conn.execute(
            "SELECT blob FROM checkpoint_blobs WHERE thread_id = %s", (run_id,)
        ).fetchall()
        writes = conn.execute(
            "SELECT blob FROM checkpoint_writes WHERE thread_id = %s", (run_id,)
        ).fetchall()
    assert rows, f"no checkpoint of run {run_id} in Postgres"
    parts = [str(r).encode() for r in rows] + [bytes(b[0] or b"") for b in blobs + writes]
    return b"\n".join(parts)


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_secret_login_across_the_fleet_leaves_no_plaintext(
    fleet: Fleet, tmp_path: Path, store: str
) -> None:
    if store == "postgres":
        require_postgres()
    otlp = HttpReceiver().start()
    try:
        env = {k: v for k, v in fleet.env.items() if k != "OTEL_SDK_DISABLED"}
        env["ORCHESTRA_SECRET_KEY"] = KEY
        env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = otlp.url
        env["OTEL_BSP_SCHEDULE_DELAY"] = "200"
        if store == "postgres":
            env["ORCHESTRA_CHECKPOINT_URL"] = POSTGRES
        fleet.env = env
        fleet.start(1)
        run_id = f"login-{uuid.uuid4().hex[:8]}"
        data = tmp_path / "input.json"
        data.write_text(json.dumps({"user": "ann", "password": PASSWORD, "card": CARD_SPACED}))
        out_json = tmp_path / "result.json"
        proc = subprocess.run(
            [
                *(sys.executable, "-m", "orchestra", "run", "tests/fleet/login_graph.py"),
                *("--fleet", "-i", f"@{data}", "--json", str(out_json), "--run-id", run_id),
            ],
            env={**env, "OTEL_SERVICE_NAME": "orchestra-driver", "COLUMNS": "200"},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        printed = proc.stdout + proc.stderr
        assert proc.returncode == 0, printed[-3000:]

        # the login really happened, with the real password, after the dead letter
        result = json.loads(out_json.read_text())
        assert result["status"] == "completed"
        assert result["path"] == ["login"]
        assert result["outputs"]["login"]["session"] == "s-ok"
        assert fleet.count("done", "login", "ann") == 1
        dead = redis.Redis.from_url(env["ORCHESTRA_RESULT_BACKEND"]).lrange("orchestra:dead", 0, -1)
        assert len(dead) == 1  # login_crash's lost call

        spans = otlp.wait_for(
            lambda ss: (
                any(s.name.startswith("execute_tool login") for s in ss)
                and any(s.name.startswith("invoke_agent") for s in ss)
            ),
            timeout=30,
        )
        assert {s.service for s in spans} >= {"orchestra-driver"}

        places = {
            "checkpoint store": checkpoint_bytes(env["ORCHESTRA_CHECKPOINT_URL"], tmp_path, run_id),
            "Redis": redis_bytes(fleet.redis.url),
            "--json": out_json.read_bytes(),
            "stdout/stderr": printed.encode(),
            "spans": b"".join(otlp.bodies),
            "worker logs": "".join(w.output() for w in fleet.workers).encode(),
        }
        assert b"login" in places["checkpoint store"]  # the store holds this run
        for where, blob in places.items():
            assert PASSWORD.encode() not in blob, f"the password is in the {where}"
            for plain in (CARD, CARD_SPACED, TOKEN):
                if where != "worker logs":
                    assert plain.encode() not in blob, f"{plain} is in the {where}"
        assert "[REDACTED]" in json.dumps(result["outputs"]["login"])
    finally:
        otlp.stop()
        os.environ.pop("ORCHESTRA_SECRET_KEY", None)


def test_a_worker_without_the_key_says_so_and_leaks_nothing(fleet: Fleet, tmp_path: Path) -> None:
    """The driver seals the password with its key; the worker was started without
    ``ORCHESTRA_SECRET_KEY``.  The run stops with a typed error that names the setting to
    fix (not a broken tool: the skill's circuit stays closed for the fleet), the worker lives
    on, and the password is in plaintext nowhere: Redis, dead letters, the result."""
    fleet.start(1)  # the fleet's environment has no key
    worker = fleet.workers[0]
    env = {**fleet.env, "ORCHESTRA_SECRET_KEY": KEY}
    run_id = f"nokey-{uuid.uuid4().hex[:8]}"
    data = tmp_path / "input.json"
    data.write_text(json.dumps({"user": "ann", "password": PASSWORD, "card": CARD_SPACED}))
    out_json = tmp_path / "result.json"
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "orchestra", "run", "tests/fleet/secret_login_graph.py"),
            *("--fleet", "-i", f"@{data}", "--json", str(out_json), "--run-id", run_id),
        ],
        env={**env, "COLUMNS": "200"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    printed = proc.stdout + proc.stderr
    result = json.loads(out_json.read_text())
    assert result["status"] == "escalated", printed[-3000:]
    assert "SecretKeyError" in result["reason"], result["reason"]
    assert "ORCHESTRA_SECRET_KEY" in result["reason"] and "every worker" in result["reason"]
    assert "ORCHESTRA_SECRET_KEY" in printed
    fails = [d for d in result["decisions"] if d["kind"] == "fail"]
    assert len(fails) == 1 and fails[0]["error_kind"] == "config", fails
    assert fleet.count("done", "login", "ann") == 0  # the tool never ran

    # the worker lives on, and the skill was not blamed for the fleet
    assert worker.proc.poll() is None and worker.name in fleet.live()
    from orchestra.fleet.health import RedisHealthBoard

    assert RedisHealthBoard(env["ORCHESTRA_HEALTH_URL"]).status("login") == "closed"

    places = {
        "Redis": redis_bytes(fleet.redis.url),
        "--json": out_json.read_bytes(),
        "stdout/stderr": printed.encode(),
        "worker log": worker.output().encode(),
    }
    for where, blob in places.items():
        assert PASSWORD.encode() not in blob, f"the password is in the {where}"
    assert b"SecretKeyError" in places["Redis"]  # the outcome the worker stored says why

    # what the reason says to do works: a worker with the key, then --answer retry
    fleet.env = env
    fleet.stop(worker)
    fleet.start(1)
    again = subprocess.run(
        [
            *(sys.executable, "-m", "orchestra", "resume", run_id, "--answer", "retry"),
            *("--fleet", "--json", str(out_json)),
        ],
        env={**env, "COLUMNS": "200"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert json.loads(out_json.read_text())["status"] == "completed"
    assert fleet.count("done", "login", "ann") == 1
