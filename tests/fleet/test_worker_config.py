"""What a worker hosts: skills from graphs and catalogs, queues, roles of a fleet file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestra.errors import ConfigError
from orchestra.fleet.worker import FleetFile, load_skills, select_skills, serve

from .conftest import Fleet

ROOT = Path(__file__).resolve().parents[2]


def test_the_bundled_fleet_file_names_roles_that_load() -> None:
    fleet = FleetFile.load(ROOT / "workers" / "fleet.yaml")
    payments = fleet.role("payments")
    hosted = select_skills(
        load_skills(payments.skills, [ROOT / g for g in payments.graph]), payments.queues
    )
    assert sorted(hosted) == ["razorpay_refund", "stripe_refund"]


def test_a_bad_fleet_file_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "fleet.yaml"
    bad.write_text("roles:\n  a:\n    concurrency: 0\n")
    with pytest.raises(ConfigError, match=r"roles\.a\.concurrency"):
        FleetFile.load(bad)
    bad.write_text("roles:\n  a: {graph: [x.py]}\n")
    with pytest.raises(ConfigError, match="no role 'b'"):
        FleetFile.load(bad).role("b")


def test_a_queue_that_names_no_loaded_skill_is_refused() -> None:
    skills = load_skills(graphs=[ROOT / "graphs" / "refund.py"])
    with pytest.raises(ConfigError, match="names no skill"):
        select_skills(skills, ["orchestra.skill.nope"])
    assert sorted(select_skills(skills, ["orchestra.skill.send_sms"])) == ["send_sms"]


def test_a_worker_refuses_skills_slower_than_the_visibility_timeout() -> None:
    from orchestra.fleet import FleetSettings

    skills = load_skills(graphs=[ROOT / "graphs" / "refund.py"])
    with pytest.raises(ConfigError, match="visibility timeout"):
        serve(skills, settings=FleetSettings(visibility_timeout_s=1.0))


@pytest.mark.fleet
async def test_workers_started_by_role_host_exactly_their_roles_skills(fleet: Fleet) -> None:
    """``orchestra worker --fleet-file workers/fleet.yaml --role payments`` (and ``notify``):
    real workers serve only their role's queues, ``fleet status`` says so, and a run whose
    first step no role hosts is routed around it before anything is sent."""
    fleet.env["ORCHESTRA_VISIBILITY_TIMEOUT_S"] = "300"  # longer than the skills' timeouts
    fleet_file = ("--fleet-file", "workers/fleet.yaml")
    (pay,) = fleet.start(skills=None, args=(*fleet_file, "--role", "payments"))
    (notify,) = fleet.start(skills=None, args=(*fleet_file, "--role", "notify"))
    out = fleet.tmp / "status.json"
    proc = subprocess.run(
        [sys.executable, "-m", "orchestra", "fleet", "status", "--json", str(out)],
        env=fleet.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    workers = {w["name"]: w for w in json.loads(out.read_text())["workers"]}
    assert sorted(workers[pay.name]["skills"]) == ["razorpay_refund", "stripe_refund"]
    assert sorted(workers[notify.name]["skills"]) == ["send_email", "send_sms"]

    from orchestra.fleet import fleet_runner
    from orchestra.loaders import load_graph

    runner = fleet_runner(fleet.settings)
    try:
        result = await runner.run(
            load_graph(ROOT / "graphs" / "refund.py"), {"customer_id": "c-1", "amount": 5}
        )
    finally:
        await runner.executor.aclose()
    assert result.status == "escalated"
    assert "no live worker serves crm_lookup" in result.reason
    assert not [d for d in result.decisions if d.kind == "execute"]
