"""Difficulty features, the success predictor, the cost predictor and the quality knob."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestra.errors import ConfigError
from orchestra.models.policy import (
    CostPredictor,
    ModelOutcome,
    RoutingPolicy,
    RoutingRow,
    SuccessPredictor,
    difficulty_tokens,
    load_rows,
    quality_price,
)


def _rows(n: int = 200) -> list[RoutingRow]:
    """Synthetic rows: the weak model fails algebra, both pass trivia; strong costs 20x."""
    rows = []
    for i in range(n):
        hard = i % 2 == 0
        prompt = (
            f"solve the equation x^2 + {i} x = {i + 1} for x"
            if hard
            else f"what is the capital of country {i}"
        )
        rows.append(
            RoutingRow(
                source="algebra" if hard else "trivia",
                prompt=prompt,
                models={
                    "weak": ModelOutcome(
                        score=0.0 if hard else 1.0, cost_usd=1e-5 * (3 if hard else 1)
                    ),
                    "strong": ModelOutcome(score=1.0, cost_usd=2e-4 * (3 if hard else 1)),
                },
            )
        )
    return rows


class TestFeatures:
    def test_tokens_carry_metadata_and_history(self) -> None:
        """Metadata (source with its prefix, agent) and step history become tokens."""
        toks = difficulty_tokens(
            "Compute 12 * 7",
            {"source": "mmlu/anatomy", "agent": "triage", "attempt": 5, "previous_model": "m"},
        )
        assert "__source=mmlu/anatomy" in toks and "__source=mmlu" in toks
        assert "__agent=triage" in toks and "__attempt3" in toks and "__prev=m" in toks
        assert "compute" in toks and "compute_12" in toks

    def test_hashing_is_stable(self) -> None:
        """The same call gives the same vector in every process (no salted hash())."""
        a = SuccessPredictor(n_features=1024).vectorize("hello world")
        b = SuccessPredictor(n_features=1024).vectorize("hello world")
        assert a[0].tolist() == b[0].tolist() and a[1].tolist() == b[1].tolist()


class TestSuccessPredictor:
    def test_fit_learns_which_model_fails(self) -> None:
        """After fitting, the weak model is predicted to fail algebra and pass trivia."""
        pred = SuccessPredictor(n_features=4096).fit(_rows())
        hard = pred.predict("solve the equation x^2 + 999 x = 3 for x", {"source": "algebra"})
        easy = pred.predict("what is the capital of country 999", {"source": "trivia"})
        assert hard["weak"] < 0.3 < 0.7 < easy["weak"]
        assert hard["strong"] > 0.7

    def test_partial_fit_moves_predictions(self) -> None:
        """Online outcomes move a model's predicted success in their direction."""
        pred = SuccessPredictor(["m"], n_features=1024, learning_rate=0.5)
        before = pred.predict("parse this contract")["m"]
        for _ in range(20):
            pred.partial_fit("parse this contract", "m", 0.0)
        assert pred.predict("parse this contract")["m"] < before - 0.2
        assert pred.observations["m"] == 20

    def test_unknown_model_starts_from_prior(self) -> None:
        """A model without data is predicted at its prior."""
        pred = SuccessPredictor(priors={"new": 0.8})
        assert pred.predict("anything", models=["new"])["new"] == pytest.approx(0.8, abs=1e-3)

    def test_single_class_model(self) -> None:
        """A model that always succeeded in the rows is predicted to succeed (no crash)."""
        rows = [r for r in _rows(20)]
        pred = SuccessPredictor(n_features=512).fit(rows)
        assert pred.predict("solve the equation", models=["strong"])["strong"] > 0.9


class TestCostPredictor:
    def test_learns_costs_from_features(self) -> None:
        """Expected cost follows the kind of prompt, per model."""
        rows = _rows()
        pred = SuccessPredictor(n_features=4096)
        cost = CostPredictor(pred, alpha=0.1).fit(rows)
        m = cost.predict_matrix(
            [
                ("solve the equation x^2 + 5 x = 6 for x", {"source": "algebra"}),
                ("what is the capital of country 5", {"source": "trivia"}),
            ],
            ["weak", "strong"],
        )
        assert m[0, 1] > m[1, 1] and m[0, 1] > 5 * m[0, 0]

    def test_unknown_model_is_config_error(self) -> None:
        """Asking for a model it never saw names the fix."""
        cost = CostPredictor(SuccessPredictor(n_features=512)).fit(_rows(10))
        with pytest.raises(ConfigError, match="no cost model"):
            cost.predict_matrix([("x", None)], ["other"])


class TestRoutingPolicy:
    def test_knob_extremes(self) -> None:
        """quality 0 takes the cheapest; quality 1 the most likely to succeed."""
        pred = SuccessPredictor(n_features=4096).fit(_rows())
        policy = RoutingPolicy(pred, cost_scale_usd=2e-4)
        costs = {"weak": 1e-5, "strong": 2e-4}
        hard = "solve the equation x^2 + 7 x = 8 for x"
        assert policy.rank(hard, costs, {"source": "algebra"}, quality=0.0)[0][0] == "weak"
        assert policy.rank(hard, costs, {"source": "algebra"}, quality=1.0)[0][0] == "strong"
        # a sensible middle: strong for algebra, weak for trivia
        assert policy.rank(hard, costs, {"source": "algebra"}, quality=0.7)[0][0] == "strong"
        assert (
            policy.rank(
                "what is the capital of country 7", costs, {"source": "trivia"}, quality=0.7
            )[0][0]
            == "weak"
        )

    def test_price_of_quality(self) -> None:
        """The knob's price is (1 - q) / q."""
        assert quality_price(0.5) == 1.0 and quality_price(1.0) == 0.0
        assert quality_price(0.0) == float("inf")
        with pytest.raises(ConfigError, match="quality"):
            quality_price(1.5)


class TestLoadRows:
    def test_bad_line_is_named(self, tmp_path: Path) -> None:
        """A malformed routing row names its line."""
        f = tmp_path / "rows.jsonl"
        good = {"source": "s", "prompt": "p", "models": {"a": {"score": 1, "cost_usd": 0.1}}}
        f.write_text(json.dumps(good) + "\n" + json.dumps({"prompt": "p"}) + "\n")
        with pytest.raises(ConfigError, match="line 2"):
            load_rows(f)

    def test_reads_shared_rows(self, shared_data: Path) -> None:
        """The shared RouteLLM rows load, with both models on every row."""
        rows = load_rows(shared_data / "routellm" / "routing_rows.jsonl")
        assert len(rows) == 15361
        assert all(len(r.models) == 2 for r in rows[:100])
