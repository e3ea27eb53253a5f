"""Pictures of the flagship graph and of a rerouted flagship run (SVG, PNG, Mermaid, DOT)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from orchestra import viz
from orchestra.loaders import load_any_graph

from .conftest import ROOT, load_state, need, orchestra

SVG = "{http://www.w3.org/2000/svg}"


def _svg_nodes(svg: bytes) -> dict[str, ET.Element]:
    """Graphviz's SVG groups by the ``id`` we gave each node and edge."""
    tree = ET.fromstring(svg)
    return {g.get("id", ""): g for g in tree.iter(f"{SVG}g") if g.get("id")}


def _text(el: ET.Element) -> str:
    return " ".join(t.text or "" for t in el.iter(f"{SVG}text"))


@pytest.fixture(scope="module")
def flagship() -> viz.GraphPicture:
    graph, _ = load_any_graph(ROOT / "graphs" / "support_triage.py")
    return viz.graph_picture(graph)


def test_flagship_graph_svg_shows_every_step_candidate_weight_and_fallback(
    flagship: viz.GraphPicture,
) -> None:
    """The declared graph: steps in dependency order, candidates with static weights."""
    need("dot", "graphviz")
    svg = viz.render(flagship, "svg")
    nodes = _svg_nodes(svg)
    for step, skill in [
        ("classify", "classify_ticket"),
        ("refund", "stripe_refund"),
        ("refund", "paypal_refund"),
        ("refund", "adyen_refund"),
        ("notify", "send_email"),
        ("notify", "send_sms"),
        ("summarize", "summarize_text"),
    ]:
        assert f"skill:{step}/{skill}" in nodes, f"{step}/{skill} not drawn"
    refund = _text(nodes["skill:refund/stripe_refund"])
    assert "$0.003" in refund and "80 ms" in refund  # its declared cost and latency
    text = "".join(ET.fromstring(svg).itertext())
    assert "fallback 1: notify" in text and "fallback 2: refund" in text
    # dependency order: refund is laid out right of classify (rankdir LR)
    assert [s.id for s in flagship.steps].index("refund") > [s.id for s in flagship.steps].index(
        "classify"
    )
    assert flagship.goal_steps == ["summarize"]


def test_rerouted_run_svg_marks_the_failed_tool_and_the_path_taken(
    rerouted_run: str, store: str, tmp_path: Path
) -> None:
    """`orchestra trace RUN -o run.svg`: stripe_refund failed, paypal_refund served."""
    need("dot", "graphviz")
    out = tmp_path / "run.svg"
    done = orchestra("trace", rerouted_run, "-o", str(out), store=store)
    assert done.returncode == 0, done.stdout + done.stderr
    nodes = _svg_nodes(out.read_bytes())
    failed = nodes["skill:refund/stripe_refund"]
    assert "failed" in failed.get("class", "")
    assert "✗ exception" in _text(failed)
    served = nodes["skill:refund/paypal_refund"]
    assert "chosen" in served.get("class", "") and "✓" in _text(served)
    assert "idle" in nodes["skill:refund/adyen_refund"].get("class", "")  # never tried
    assert "reroute:refund:stripe_refund->paypal_refund" in nodes
    # the path taken runs through the served refund provider to the notification
    assert "path:refund->draft" in nodes and "path:draft->notify" in nodes
    text = "".join(ET.fromstring(out.read_bytes()).itertext())
    assert f"run {rerouted_run} of support-triage: COMPLETED" in text


def test_run_picture_without_its_graph_is_drawn_from_the_log(rerouted_run: str, store: str) -> None:
    """A run whose graph file is gone still shows every step that ran and the failure."""
    pic = viz.run_picture(load_state(store, rerouted_run), None)
    assert ("refund", "paypal_refund") in pic.path
    refund = pic.step("refund")
    assert refund.skill("stripe_refund").state == "failed"
    assert "step refund" not in viz.to_mermaid(pic)  # mermaid ids are sanitised
    assert "refund_stripe_refund" in viz.to_mermaid(pic)


def test_graph_command_formats_and_errors(tmp_path: Path, store: str) -> None:
    """`orchestra graph`: Mermaid to stdout, formats from -o's suffix, exit 2 on bad input."""
    need("dot", "graphviz")
    mm = orchestra("graph", "graphs/refund.py", store=store)
    assert mm.returncode == 0, mm.stderr
    assert mm.stdout.startswith("---\ntitle: graph refund") and "flowchart LR" in mm.stdout
    png = tmp_path / "refund.png"
    done = orchestra("graph", "graphs/refund.py", "-o", str(png), store=store)
    assert done.returncode == 0, done.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dot = orchestra("graph", "graphs/refund.py", "--format", "dot", store=store)
    assert dot.stdout.startswith("digraph refund {")
    bad = orchestra("graph", "graphs/refund.py", "--format", "gif", store=store)
    assert bad.returncode == 2 and "unknown format 'gif'" in bad.stderr
    missing = orchestra("graph", "graphs/nope.py", store=store)
    assert missing.returncode == 2 and "nope.py" in missing.stderr
    assert "Traceback" not in missing.stderr + bad.stderr


def test_render_without_graphviz_names_what_to_install(
    flagship: viz.GraphPicture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No `dot` on PATH: SVG is a typed error naming the packages; Mermaid still works."""
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(viz.RenderError, match="apt-get install graphviz"):
        viz.render(flagship, "svg")
    assert b"flowchart LR" in viz.render(flagship, "mermaid")


def test_escalated_run_marks_where_it_stopped(store: str, tmp_path: Path) -> None:
    """Every refund provider down: the picture shows the refund step stuck or abandoned."""
    out = tmp_path / "r.json"
    done = orchestra(
        "run",
        "graphs/refund.py",
        "-i",
        '{"customer_id": "c-1", "amount": 12}',
        "--down",
        "stripe_refund",
        "--down",
        "razorpay_refund",
        "-q",
        "--json",
        str(out),
        store=store,
    )
    assert done.returncode in (3, 4), done.stdout + done.stderr
    import json

    from orchestra.cli.trace import state_from_json

    graph, _ = load_any_graph(ROOT / "graphs" / "refund.py")
    result = json.loads(out.read_text())
    assert result["status"] == "escalated", result["reason"]
    from_store = viz.run_picture(load_state(store, result["run_id"]), graph)
    from_file = viz.run_picture(state_from_json(result)[0], graph)
    for pic in (from_store, from_file):  # the checkpoint, and the --json result file
        refund = pic.step("refund")
        assert refund.stuck and "stripe_refund is down" in refund.stuck
        assert pic.step("lookup").stuck is None  # it was never the problem
        assert {k.name: k.state for k in refund.skills} == {
            "stripe_refund": "blocked",
            "razorpay_refund": "blocked",
        }
        assert "ESCALATED" in viz.to_dot(pic)
