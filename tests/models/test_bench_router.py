"""``orchestra bench router``: any routing-rows file works; the acceptance figures hold."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from orchestra.bench.router import evaluate, register, split_rows
from orchestra.models.policy import load_rows

KEYS = {"score", "cost_usd", "apgr", "cpt50", "cpt80", "budget_violations"}


def _three_model_file(path: Path, n: int = 400) -> Path:
    """Synthetic rows with three models: tiny fails maths, mid fails proofs, big passes all."""
    rng = random.Random(7)
    lines = []
    for i in range(n):
        kind = rng.choice(["chat", "maths", "proof"])
        prompt = {
            "chat": f"say hello to {i}",
            "maths": f"compute {i} * {i + 3} step by step",
            "proof": f"prove lemma {i} on graphs",
        }[kind]
        lines.append(
            json.dumps(
                {
                    "source": kind,
                    "prompt": prompt,
                    "models": {
                        "tiny": {"score": float(kind == "chat"), "cost_usd": 1e-6},
                        "mid": {"score": float(kind != "proof"), "cost_usd": 2e-5},
                        "big": {"score": 1.0, "cost_usd": 4e-4 * (2 if kind == "proof" else 1)},
                    },
                }
            )
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def test_split_is_deterministic_by_prompt(tmp_path: Path) -> None:
    """The same file always splits the same way, and a prompt never lands on both sides."""
    rows = load_rows(_three_model_file(tmp_path / "rows.jsonl"))
    fit1, test1 = split_rows(rows)
    _, test2 = split_rows(list(reversed(rows)))
    assert {r.prompt for r in test1} == {r.prompt for r in test2}
    assert not {r.prompt for r in fit1} & {r.prompt for r in test1}


def test_cli_on_a_three_model_file(tmp_path: Path) -> None:
    """Any number of models: the JSON has the documented keys for every policy and budget."""
    rows = _three_model_file(tmp_path / "rows.jsonl")
    out = tmp_path / "out.json"
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:
        """bench"""

    result = CliRunner().invoke(
        app,
        [
            "router",
            "--rows",
            str(rows),
            "--budget",
            "0.001",
            "--budget",
            "0.02",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert set(report["policies"]) == {
        "orchestra",
        "random",
        "always:tiny",
        "always:mid",
        "always:big",
    }
    for pol in report["policies"].values():
        assert set(pol) >= KEYS
        assert pol["budget_violations"] == 0
    assert [b["budget_usd"] for b in report["budgets"]] == [0.001, 0.02]
    tight = report["budgets"][0]["policies"]["orchestra"]
    assert tight["spend_usd"] <= 0.001
    # under the tight budget the router falls back to cheaper tiers instead of demoting: no
    # row is refused, and it spends the budget; always-big is refused on all but a few rows
    assert tight["demoted"] == 0 and tight["spend_usd"] >= 0.9 * 0.001
    big_tight = report["budgets"][0]["policies"]["always:big"]
    assert big_tight["demoted"] >= report["test_rows"] // 2 and big_tight["spend_usd"] <= 0.001
    # the zero router (any fixed mix of models) and the oracle, for reference
    assert report["zero_router"]["hull"][0] == {"cost_usd": 0.0, "score": 0.0}
    assert report["oracle"]["score"] == 1.0
    for b in report["budgets"]:
        assert b["gain_over_zero_router"] > 0, b
        assert b["zero_router"]["spend_usd"] == b["policies"]["orchestra"]["spend_usd"]
        assert b["oracle"]["spend_usd"] <= b["budget_usd"] + 1e-12
    # the router learns the structure: close to the strongest model's score for far less
    o, big = report["policies"]["orchestra"], report["policies"]["always:big"]
    assert o["apgr"] > report["policies"]["random"]["apgr"] + 0.2
    assert o["score"] >= 0.95 * big["score"] and o["cost_usd"] < big["cost_usd"]


def test_zero_router_is_the_frontier_of_single_models() -> None:
    """The zero router: dominated models are dropped, the frontier is concave, and its score
    at a cost is read linearly between frontier points (capped at the best model)."""
    from orchestra.bench.router import _hull_score, _upper_hull

    hull = _upper_hull([(0, 0), (1, 0.5), (2, 0.55), (3, 0.9), (4, 0.8), (5, 0.95)])
    assert hull == [
        (0, 0),
        (1, 0.5),
        (3, 0.9),
        (5, 0.95),
    ]  # (2, .55) under the chord; (4, .8) dominated
    assert _hull_score(hull, 2) == pytest.approx(0.7)
    assert _hull_score(hull, 0.5) == pytest.approx(0.25)
    assert _hull_score(hull, 10) == 0.95


def test_too_few_models_is_a_usage_error(tmp_path: Path) -> None:
    """A file with a single model cannot be routed; the error says so."""
    f = tmp_path / "one.jsonl"
    f.write_text(json.dumps({"prompt": "p", "models": {"a": {"score": 1, "cost_usd": 0.1}}}) + "\n")
    with pytest.raises(typer.BadParameter, match="at least two models"):
        evaluate(load_rows(f))


@pytest.mark.slow
def test_acceptance_on_routellm_rows(shared_data: Path) -> None:
    """RouteLLM rows: orchestra's APGR beats random's by >= 0.10; no budget is ever crossed."""
    report = evaluate(load_rows(shared_data / "routellm" / "routing_rows.jsonl"))
    pol = report["policies"]
    assert pol["orchestra"]["apgr"] >= pol["random"]["apgr"] + 0.10
    assert len(report["budgets"]) >= 4
    for b in report["budgets"]:
        for name, v in b["policies"].items():
            assert v["budget_violations"] == 0, (b["budget_usd"], name)
            assert v["spend_usd"] <= b["budget_usd"] + 1e-12
            assert v["ledger_spent_usd"] == pytest.approx(v["spend_usd"], abs=1e-8)
        # per prompt routing beats every fixed mix of the two models at the same cost
        assert b["gain_over_zero_router"] > 0, b["budget_usd"]
    assert pol["orchestra"]["gain_over_zero_router"] > 0
