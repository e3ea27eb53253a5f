"""``orchestra bench router``: the budget-aware model router on routing rows.

Rows (the routing-rows format of ``../shared/data/README.md``, any number of models) are
split deterministically by a hash of the prompt: ``--test-fraction`` of them are the test
split, the rest fit the success predictor and a per-model cost model (cost against prompt
length).  On the test split the router sees each prompt, never that row's scores or costs.

Reported per policy — ``orchestra`` (the router's policy swept over its ``quality`` knob),
``random`` (each call to the strongest model with probability p, else the cheapest, swept
over p) and ``always:MODEL``:

* ``score`` and ``cost_usd`` at the operating point (``--quality`` for orchestra, p = 0.5
  for random) on the whole test split;
* ``apgr``: average performance gap recovered (RouteLLM): PGR = (score - cheapest's score) /
  (strongest's score - cheapest's score), averaged over normalized cost x in [0, 1], where
  x = (cost - cheapest's cost) / (strongest's cost - cheapest's cost) and PGR(x) is the best
  the policy reaches at cost <= x (mixing two settings is allowed, so points are joined
  linearly).  "Cheapest" and "strongest" are chosen on the fit split.  For a fixed model it
  is that model's own PGR;
* ``cpt50`` / ``cpt80``: the smallest normalized cost, in percent, at which PGR reaches 50% /
  80% (``null`` if never);
* extra keys ``apgr_by_calls``, ``cpt50_calls``, ``cpt80_calls``: the same on RouteLLM's own
  axis, the share of calls sent to the strongest model;
* under each budget (``--budget USD``, repeatable; by default a ladder from half the
  cheapest model's cost to the strongest model's cost) every policy runs through a real
  :class:`~orchestra.models.budget.InMemoryLedger`: each call reserves its worst case (input
  cost + the largest output cost seen on the fit split, the ``max_tokens`` cap), falls back to
  cheaper models when that could cross the limit, and is demoted (score 0, no spend) when
  nothing fits.  A response longer than the cap is truncated (charged the cap, score 0).
  ``budget_violations`` counts calls after which spend exceeded the budget;
* ``zero_router`` (RouterBench's baseline): the cost-quality convex hull of the always-one-model
  policies (and of answering nothing, at no cost): any mix of single models, at its best.
  ``gain_over_zero_router`` is the router's score minus the zero router's score at the same
  cost (what the router spent), overall and under each budget; > 0 means routing per prompt
  beats any fixed mix of models;
* ``oracle``, for reference: per prompt, the cheapest model that scores best on it (it sees
  the scores; no router can).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["evaluate", "register", "split_rows"]

_DEFAULT_ROWS = (
    Path(__file__).resolve().parents[2].parent
    / "shared"
    / "data"
    / "routellm"
    / "routing_rows.jsonl"
)


def split_rows(rows: Sequence[Any], test_fraction: float = 0.3) -> tuple[list[Any], list[Any]]:
    """Deterministic (fit, test) split by SHA-256 of the prompt (same prompt, same side)."""
    fit: list[Any] = []
    test: list[Any] = []
    cut = int(test_fraction * 10_000)
    for r in rows:
        h = int(hashlib.sha256(r.prompt.encode("utf-8")).hexdigest()[:8], 16) % 10_000
        (test if h < cut else fit).append(r)
    return fit, test


def _envelope(points: list[tuple[float, float]]) -> Callable[[Any], Any]:
    """PGR as a function of normalized cost: best reached at cost <= x, linearly joined."""
    import numpy as np

    pts = sorted(points)
    xs = np.array([p[0] for p in pts])
    ys = np.maximum.accumulate(np.array([p[1] for p in pts]))

    def f(x: Any) -> Any:
        y = np.interp(x, xs, ys, left=-np.inf, right=ys[-1])
        return np.where(np.asarray(x) < xs[0], -np.inf, y)

    return f


def _curve_metrics(points: list[tuple[float, float]]) -> dict[str, float | None]:
    import numpy as np

    f = _envelope(points)
    grid = np.linspace(0, 1, 1001)
    pgr = f(grid)
    finite = np.where(np.isfinite(pgr), pgr, 0.0)
    out: dict[str, float | None] = {"apgr": float(np.trapezoid(finite, grid))}
    for thr, key in ((0.5, "cpt50"), (0.8, "cpt80")):
        hit = np.nonzero(pgr >= thr - 1e-12)[0]
        out[key] = float(grid[hit[0]] * 100) if len(hit) else None
    return out


def _by_calls(points: list[tuple[float, float]]) -> dict[str, float | None]:
    """The same metrics with x = share of calls to the strongest model (RouteLLM's axis)."""
    m = _curve_metrics(points)
    return {"apgr_by_calls": m["apgr"], "cpt50_calls": m["cpt50"], "cpt80_calls": m["cpt80"]}


def evaluate(
    rows: Sequence[Any],
    *,
    budgets: Sequence[float] | None = None,
    quality: float = 0.7,
    test_fraction: float = 0.3,
    seed: int = 0,
    c: float = 1.0,
) -> dict[str, Any]:
    """Run the benchmark on ``rows`` (:class:`~orchestra.models.policy.RoutingRow`); return the report."""
    import numpy as np

    from orchestra.models.policy import (
        CostPredictor,
        SuccessPredictor,
        choose_columns,
        quality_price,
    )

    models = sorted({m for r in rows for m in r.models})
    if len(models) < 2:
        raise typer.BadParameter("routing rows need at least two models", param_hint="--rows")
    complete = [r for r in rows if all(m in r.models for m in models)]
    fit, test = split_rows(complete, test_fraction)
    if len(fit) < 10 or len(test) < 10:
        raise typer.BadParameter(
            f"too few rows with every model ({len(complete)}) to split", param_hint="--rows"
        )

    def mat(rs: Sequence[Any], attr: str) -> Any:
        return np.array([[getattr(r.models[m], attr) for m in models] for r in rs], dtype=float)

    s_fit, c_fit = mat(fit, "score"), mat(fit, "cost_usd")
    s_test, c_test = mat(test, "score"), mat(test, "cost_usd")
    n, k = s_test.shape

    # Cost model per model, from the fit split only: cost ~ a + b * prompt length.
    def lengths(rs: Sequence[Any]) -> Any:
        return np.array([len(r.prompt) for r in rs], dtype=float)

    design_fit = np.stack([np.ones(len(fit)), lengths(fit)], axis=1)
    coef, *_ = np.linalg.lstsq(design_fit, c_fit, rcond=None)
    floor = c_fit.min(axis=0)
    pred_fit = np.maximum(design_fit @ coef, floor)
    cap = np.maximum((c_fit - pred_fit).max(axis=0), 0.0)  # the max_tokens analogue
    design_test = np.stack([np.ones(n), lengths(test)], axis=1)
    bound_test = np.maximum(design_test @ coef, floor) + cap

    cheapest = int(np.argmin(c_fit.mean(axis=0)))
    strongest = int(max(range(k), key=lambda j: (s_fit[:, j].mean(), -c_fit[:, j].mean())))

    predictor = SuccessPredictor(c=c)
    x_fit = predictor.matrix([(r.prompt, {"source": r.source}) for r in fit])
    x_test = predictor.matrix([(r.prompt, {"source": r.source}) for r in test])
    predictor.fit(fit, x=x_fit)
    cost_model = CostPredictor(predictor).fit(fit, x=x_fit)
    p_test = predictor.predict_matrix([], models, x=x_test)
    p_fit = predictor.predict_matrix([], models, x=x_fit)
    exp_test = cost_model.predict_matrix([], models, x=x_test)
    exp_fit = cost_model.predict_matrix([], models, x=x_fit)
    scale = float(np.mean(exp_fit[:, strongest] - exp_fit[:, cheapest]))
    scale = (
        scale if scale > 0 else float(np.mean(exp_fit.max(axis=1) - exp_fit.min(axis=1)) or 1e-6)
    )

    score_lo, score_hi = s_test[:, cheapest].mean(), s_test[:, strongest].mean()
    cost_lo, cost_hi = c_test[:, cheapest].sum(), c_test[:, strongest].sum()

    def norm(score: float, cost: float) -> tuple[float, float]:
        x = (cost - cost_lo) / (cost_hi - cost_lo) if cost_hi != cost_lo else 0.0
        y = (score - score_lo) / (score_hi - score_lo) if score_hi != score_lo else 0.0
        return float(x), float(y)

    idx = np.arange(n)

    def run_cols(cols: Any) -> tuple[float, float]:
        return float(s_test[idx, cols].mean()), float(c_test[idx, cols].sum())

    # orchestra: sweep the quality knob
    qs = np.linspace(0, 1, 201)
    orch_pts = []
    orch_calls = []  # x = share of calls sent to the strongest model (RouteLLM's axis)
    for q in qs:
        cols = choose_columns(p_test, exp_test, float(q), scale)
        sc, co = run_cols(cols)
        orch_pts.append(norm(sc, co))
        orch_calls.append((float((cols == strongest).mean()), norm(sc, co)[1]))
    o_cols = choose_columns(p_test, exp_test, quality, scale)
    o_score, o_cost = run_cols(o_cols)
    policies: dict[str, dict[str, Any]] = {
        "orchestra": {
            "score": o_score,
            "cost_usd": o_cost,
            **_curve_metrics(orch_pts),
            **_by_calls(orch_calls),
            "quality": quality,
            "operating_points": {
                f"{oq:g}": dict(
                    zip(
                        ("score", "cost_usd"),
                        run_cols(choose_columns(p_test, exp_test, oq, scale)),
                        strict=True,
                    )
                )
                for oq in (0.5, 0.7, 0.8, 0.9, 0.95, 1.0)
            },
            "calls_by_model": {m: int((o_cols == j).sum()) for j, m in enumerate(models)},
        }
    }
    # random: strongest with probability p, else cheapest
    rng = np.random.default_rng(seed)
    u = rng.random(n)
    rand_pts = []
    rand_calls = []
    for p in np.linspace(0, 1, 101):
        cols = np.where(u < p, strongest, cheapest)
        rand_pts.append(norm(*run_cols(cols)))
        rand_calls.append((float((cols == strongest).mean()), rand_pts[-1][1]))
    r_score, r_cost = run_cols(np.where(u < 0.5, strongest, cheapest))
    policies["random"] = {
        "score": r_score,
        "cost_usd": r_cost,
        **_curve_metrics(rand_pts),
        **_by_calls(rand_calls),
        "p_strongest": 0.5,
    }
    for j, m in enumerate(models):
        sc, co = run_cols(np.full(n, j))
        x, y = norm(sc, co)
        policies[f"always:{m}"] = {
            "score": sc,
            "cost_usd": co,
            "apgr": y,
            "cpt50": x * 100 if y >= 0.5 else None,
            "cpt80": x * 100 if y >= 0.8 else None,
        }

    # Budgets: every policy through a real ledger.
    if budgets is None:
        gap = cost_hi - cost_lo
        budgets = [
            0.5 * cost_lo,
            cost_lo + 0.1 * gap,
            cost_lo + 0.25 * gap,
            cost_lo + 0.5 * gap,
            cost_hi,
        ]
    spend_fit_by_q = np.array(
        [
            exp_fit[np.arange(len(fit)), choose_columns(p_fit, exp_fit, float(q), scale)].mean()
            for q in qs
        ]
    )

    def orch_order(i: int, q: float) -> list[int]:
        price = quality_price(q)
        util = -exp_test[i] if math.isinf(price) else p_test[i] - price * exp_test[i] / scale
        return sorted(range(k), key=lambda j: (-util[j], exp_test[i, j]))

    def paced_quality(left: float, rows_left: int) -> float:
        target = left / max(rows_left, 1)
        ok = np.nonzero(spend_fit_by_q <= target)[0]
        return float(qs[ok[-1]]) if len(ok) else 0.0

    coin = np.random.default_rng(seed + 1).random(n)

    def random_order(i: int) -> list[int]:
        return _fallback_order(strongest if coin[i] < 0.5 else cheapest, exp_test[i])

    def always(j: int) -> Callable[[int], list[int]]:
        return lambda _i: [j]

    # The zero router and the oracle.
    hull = _upper_hull(
        [(0.0, 0.0)] + [(float(c_test[:, j].sum()), float(s_test[:, j].mean())) for j in range(k)]
    )
    best = s_test.max(axis=1, keepdims=True)
    oracle_cols = np.where(s_test >= best - 1e-12, c_test, np.inf).argmin(axis=1)
    policies["orchestra"]["gain_over_zero_router"] = o_score - _hull_score(hull, o_cost)
    zero_router = {
        "score": _hull_score(hull, o_cost),
        "cost_usd": o_cost,
        "hull": [{"cost_usd": c, "score": sc} for c, sc in hull],
    }
    o_sc, o_co = run_cols(oracle_cols)
    oracle = {"score": o_sc, "cost_usd": o_co}

    budget_reports: list[dict[str, Any]] = []
    for budget in budgets:
        per: dict[str, dict[str, Any]] = {}
        per["orchestra"] = asyncio.run(
            _simulate(
                budget, n, s_test, c_test, bound_test, order=None, orch=(orch_order, paced_quality)
            )
        )
        per["random"] = asyncio.run(
            _simulate(budget, n, s_test, c_test, bound_test, order=random_order)
        )
        for j, m in enumerate(models):
            per[f"always:{m}"] = asyncio.run(
                _simulate(budget, n, s_test, c_test, bound_test, order=always(j))
            )
        spent = per["orchestra"]["spend_usd"]
        zero = _hull_score(hull, spent)
        gain = per["orchestra"]["score"] - zero
        per["orchestra"]["gain_over_zero_router"] = gain
        budget_reports.append(
            {
                "budget_usd": float(budget),
                "policies": per,
                "zero_router": {"spend_usd": spent, "score": zero},
                "gain_over_zero_router": gain,
                "oracle": asyncio.run(
                    _simulate(
                        budget, n, s_test, c_test, bound_test, order=lambda i: [int(oracle_cols[i])]
                    )
                ),
            }
        )
    for name, pol in policies.items():
        pol["budget_violations"] = int(
            sum(b["policies"][name]["budget_violations"] for b in budget_reports)
        )
    return {
        "rows": len(rows),
        "rows_with_every_model": len(complete),
        "fit_rows": len(fit),
        "test_rows": n,
        "models": models,
        "cheapest": models[cheapest],
        "strongest": models[strongest],
        "policies": policies,
        "zero_router": zero_router,
        "oracle": oracle,
        "budgets": budget_reports,
    }


def _upper_hull(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The cost-quality frontier of ``points`` (cost, score): non-dominated and concave."""
    pts = sorted(set(points), key=lambda p: (p[0], -p[1]))
    frontier: list[tuple[float, float]] = []
    for p in pts:
        if frontier and p[1] <= frontier[-1][1]:
            continue  # costs more, scores no better
        while len(frontier) >= 2:
            (x1, y1), (x2, y2) = frontier[-2], frontier[-1]
            # drop the middle point when it lies on or below the chord to p
            if (y2 - y1) * (p[0] - x1) <= (p[1] - y1) * (x2 - x1):
                frontier.pop()
            else:
                break
        frontier.append(p)
    return frontier


def _hull_score(hull: Sequence[tuple[float, float]], cost: float) -> float:
    """The zero router's score at ``cost``: the frontier, linearly between its points."""
    if cost <= hull[0][0]:
        return hull[0][1]
    for (x1, y1), (x2, y2) in itertools.pairwise(hull):
        if cost <= x2:
            return y1 + (y2 - y1) * (cost - x1) / (x2 - x1)
    return hull[-1][1]


def _fallback_order(first: int, expected: Any) -> list[int]:
    """``first``, then the other models from the dearest to the cheapest (falling back down)."""
    rest = sorted((j for j in range(len(expected)) if j != first), key=lambda j: -expected[j])
    return [first, *rest]


async def _simulate(
    budget: float,
    n: int,
    scores: Any,
    costs: Any,
    bounds: Any,
    *,
    order: Callable[[int], list[int]] | None,
    orch: tuple[Callable[[int, float], list[int]], Callable[[float, int], float]] | None = None,
) -> dict[str, Any]:
    """Run the test rows in order under ``budget`` through an :class:`InMemoryLedger`."""
    from orchestra.models.budget import BudgetRefusal, InMemoryLedger

    ledger = InMemoryLedger(limit_usd=budget, run_id="bench")
    total_score = 0.0
    spent = 0.0
    violations = demoted = truncated = 0
    q = 1.0
    for i in range(n):
        if orch is not None:
            if i % 25 == 0:
                snap = await ledger.snapshot()
                q = orch[1](snap.remaining_usd, n - i)
            candidates = orch[0](i, q)
        else:
            assert order is not None
            candidates = order(i)
        for j in candidates:
            bound = float(bounds[i, j])
            try:
                res = await ledger.reserve(bound, 0, label=str(j))
            except BudgetRefusal:
                continue
            actual = float(costs[i, j])
            if actual > bound:  # longer than the cap: truncated, charged the cap, no credit
                truncated += 1
                actual, got = bound, 0.0
            else:
                got = float(scores[i, j])
            await ledger.settle(res, usd=actual, tokens=0)
            spent += actual
            total_score += got
            break
        else:
            demoted += 1
        if spent > budget * (1 + 1e-9) + 1e-12:
            violations += 1
    snap = await ledger.snapshot()
    return {
        "budget_usd": budget,
        "spend_usd": spent,
        "ledger_spent_usd": snap.spent_usd,
        "score": total_score / n,
        "budget_violations": violations,
        "demoted": demoted,
        "truncated": truncated,
    }


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isinf(v):
            return "inf"
        return f"{v:.{digits}f}"
    return str(v)


def register(app: typer.Typer) -> None:
    """Add ``router`` to the ``bench`` command group."""

    @app.command("router")
    def router(
        rows: Annotated[
            Path, typer.Option("--rows", help="Routing rows (JSONL); any number of models.")
        ] = _DEFAULT_ROWS,
        budget: Annotated[
            list[float] | None,
            typer.Option(
                "--budget",
                help="A hard budget in USD for the test split (repeatable; default: a ladder).",
            ),
        ] = None,
        json_out: Annotated[
            Path | None, typer.Option("--json", help="Write the full report here as JSON.")
        ] = None,
        quality: Annotated[
            float,
            typer.Option(min=0.0, max=1.0, help="The router's quality knob at the reported point."),
        ] = 0.7,
        test_fraction: Annotated[
            float, typer.Option(min=0.05, max=0.95, help="Share of rows in the test split.")
        ] = 0.3,
        seed: Annotated[int, typer.Option(help="Seed of the random router.")] = 0,
    ) -> None:
        """Budget-aware model router vs a random router and always-one-model, on routing rows."""
        from rich.console import Console
        from rich.table import Table

        from orchestra.models.policy import load_rows

        console = Console()
        with console.status("fitting and evaluating..."):
            report = evaluate(
                load_rows(rows),
                budgets=budget or None,
                quality=quality,
                test_fraction=test_fraction,
                seed=seed,
            )
        t = Table(
            title=f"router on {rows.name}: {report['test_rows']} test rows "
            f"(fit {report['fit_rows']}); cheapest {report['cheapest']}, strongest {report['strongest']}"
        )
        for col in (
            "policy",
            "score",
            "cost USD",
            "APGR",
            "CPT(50%)",
            "CPT(80%)",
            "APGR by calls",
            "budget violations",
        ):
            t.add_column(col, justify="left" if col == "policy" else "right")
        for name, p in report["policies"].items():
            t.add_row(
                name,
                _fmt(p["score"]),
                _fmt(p["cost_usd"]),
                _fmt(p.get("apgr"), 3),
                _fmt(p.get("cpt50"), 1),
                _fmt(p.get("cpt80"), 1),
                _fmt(p.get("apgr_by_calls"), 3),
                str(p["budget_violations"]),
            )
        for name in ("zero_router", "oracle"):
            p = report[name]
            t.add_row(name, _fmt(p["score"]), _fmt(p["cost_usd"]), "", "", "", "", "")
        console.print(t)
        console.print(
            "gain_over_zero_router (orchestra's score minus the zero router's at the same cost): "
            f"{report['policies']['orchestra']['gain_over_zero_router']:+.4f}"
        )
        bt = Table(title="under a hard budget, every call through the ledger")
        for col in (
            "budget USD",
            "policy",
            "spend USD",
            "score",
            "demoted",
            "truncated",
            "violations",
            "gain over zero router",
        ):
            bt.add_column(col, justify="left" if col == "policy" else "right")
        for b in report["budgets"]:
            lines = {
                **b["policies"],
                "zero_router": b["zero_router"],
                "oracle": b["oracle"],
            }
            for i, (name, v) in enumerate(lines.items()):
                bt.add_row(
                    f"{b['budget_usd']:.4f}" if i == 0 else "",
                    name,
                    f"{v['spend_usd']:.4f}",
                    f"{v['score']:.4f}",
                    str(v.get("demoted", "-")),
                    str(v.get("truncated", "-")),
                    str(v.get("budget_violations", "-")),
                    _fmt(v.get("gain_over_zero_router")),
                    end_section=i == len(lines) - 1,
                )
        console.print(bt)
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(report, indent=2))
            console.print(f"wrote {json_out}")
