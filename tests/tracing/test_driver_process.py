"""A driver process (``orchestra run``) started with OTEL_* set traces without any code and
exports its spans before it exits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .otlp import HttpReceiver

ROOT = Path(__file__).resolve().parents[2]


def test_orchestra_run_exports_the_run_when_otel_env_is_set(otlp: HttpReceiver) -> None:
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.base_url,
        "OTEL_SERVICE_NAME": "orchestra-driver",
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestra",
            "run",
            str(ROOT / "graphs" / "refund.py"),
            "-i",
            '{"customer_id": "c-42", "amount": 30}',
            "--fail",
            "stripe_refund",
            "-q",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    spans = otlp.wait_for(lambda ss: any(s.name == "invoke_agent refund" for s in ss), timeout=10)
    assert {s.service for s in spans} == {"orchestra-driver"}
    assert len({s.trace_id for s in spans}) == 1
    (root,) = [s for s in spans if s.name == "invoke_agent refund"]
    assert [e.attributes["orchestra.reason"] for e in root.event("orchestra.reroute")] == [
        "stripe_refund failed (exception); rerouted to razorpay_refund"
    ]
