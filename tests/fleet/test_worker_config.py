"""What a worker hosts: skills from graphs and catalogs, queues, roles of a fleet file."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestra.errors import ConfigError
from orchestra.fleet.worker import FleetFile, load_skills, select_skills, serve

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
