"""Which model should answer this prompt: difficulty features, success prediction, the knob.

The policy has three parts, each replaceable:

* :func:`difficulty_tokens` turns a prompt and the step's metadata (source or capability,
  agent, the step's history: attempts and failures so far) into feature tokens, hashed into
  a fixed-size sparse vector (no vocabulary, so it can keep learning on new text);
* :class:`SuccessPredictor` holds one L2 logistic regression per model that predicts the
  chance the model answers correctly.  :meth:`~SuccessPredictor.fit` trains it on routing
  rows (the format of ``../shared/data/README.md``); :meth:`~SuccessPredictor.partial_fit`
  keeps learning online from outcomes, one SGD step each.  A model it has never seen starts
  from a prior success rate (by tier);
* :class:`RoutingPolicy` ranks the candidates for one call.  The one knob is ``quality`` in
  [0, 1].  With ``price = (1 - quality) / quality`` the router picks
  ``argmax_m  p_m - price * cost_m / cost_scale_usd``: a pricier model wins over a cheaper
  one only when its predicted gain in success is at least ``price`` per ``cost_scale_usd``
  of extra expected cost — the cheapest model predicted sufficient.  ``quality = 0`` always
  takes the cheapest, ``0.5`` pays one cost-scale for a whole expected success, ``0.9`` for
  +0.11, and ``1`` takes the most likely to succeed whatever it costs.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import re
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from orchestra.errors import ConfigError

__all__ = [
    "CostPredictor",
    "ModelOutcome",
    "RoutingPolicy",
    "RoutingRow",
    "SuccessPredictor",
    "difficulty_tokens",
    "load_rows",
    "quality_price",
]

_WORD = re.compile(r"[a-z]+|\d+|[^\sa-z\d]")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_METADATA_KEYS = ("source", "capability", "step", "agent", "role", "difficulty", "task")


class ModelOutcome(BaseModel):
    """How one model did on one prompt: ``score`` in [0, 1] and what it cost."""

    score: float = Field(ge=0, le=1)
    cost_usd: float = Field(ge=0)


class RoutingRow(BaseModel):
    """One line of a routing-rows file: a prompt and how each model did on it."""

    source: str = ""
    prompt: str
    models: dict[str, ModelOutcome]


def load_rows(path: str | Path) -> list[RoutingRow]:
    """Read a routing-rows JSONL file; :class:`ConfigError` names the bad line."""
    rows: list[RoutingRow] = []
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read routing rows: {exc}", source=str(p)) from exc
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(RoutingRow.model_validate(json.loads(line)))
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"not a routing row: {exc}", field=f"line {i}", source=str(p)
            ) from exc
    if not rows:
        raise ConfigError("no routing rows in file", source=str(p))
    return rows


def _bucket(x: float) -> int:
    return int(math.log2(1 + x))


def difficulty_tokens(prompt: str, metadata: Mapping[str, Any] | None = None) -> list[str]:
    """The feature tokens of one call: words and word pairs, shape of the prompt, metadata.

    Metadata keys read: ``source``, ``capability``, ``step``, ``agent``, ``role``,
    ``difficulty``, ``task`` (each as a categorical token; a ``source`` like
    ``mmlu/anatomy`` also yields its prefix ``mmlu``), and the step's history: ``attempt``
    and ``failures`` (counts) and ``previous_model`` (which model failed before).
    """
    text = prompt.lower()
    words = _WORD.findall(text)
    toks = list(words)
    toks.extend(f"{a}_{b}" for a, b in itertools.pairwise(words))
    numbers = _NUMBER.findall(text)
    toks.append(f"__len{_bucket(len(prompt) / 16)}")
    toks.append(f"__nums{_bucket(len(numbers))}")
    toks.append(f"__lines{_bucket(prompt.count(chr(10)))}")
    if "```" in prompt or "def " in prompt or "{" in prompt:
        toks.append("__code")
    md = metadata or {}
    for key in _METADATA_KEYS:
        val = md.get(key)
        if val is None or val == "":
            continue
        sval = str(val).lower()
        toks.append(f"__{key}={sval}")
        if "/" in sval:
            toks.append(f"__{key}={sval.split('/', 1)[0]}")
    for key in ("attempt", "failures"):
        if key in md:
            with contextlib.suppress(TypeError, ValueError):
                toks.append(f"__{key}{min(int(md[key]), 3)}")
    if md.get("previous_model"):
        toks.append(f"__prev={md['previous_model']}")
    return toks


def _hash(token: str, n_features: int) -> int:
    # CRC-32: stable across processes and runs (unlike hash()), and fast (C).
    return zlib.crc32(token.encode("utf-8")) % n_features


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def _sigmoid(z: NDArray[np.float64]) -> NDArray[np.float64]:
    out: NDArray[np.float64] = 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
    return out


class SuccessPredictor:
    """Per-model chance of success from hashed difficulty features (logistic regression).

    ``c`` is the inverse L2 strength of the batch fit; ``learning_rate`` the step size of
    online updates.  ``priors`` (model -> success rate) seed models without data.
    """

    def __init__(
        self,
        models: Sequence[str] = (),
        *,
        n_features: int = 2**18,
        c: float = 1.0,
        learning_rate: float = 0.05,
        priors: Mapping[str, float] | None = None,
    ):
        if n_features < 16:
            raise ConfigError("must be >= 16", field="n_features")
        if c <= 0:
            raise ConfigError("must be > 0", field="c")
        self.n_features = n_features
        self.c = c
        self.learning_rate = learning_rate
        self._priors = dict(priors or {})
        self._coef: dict[str, NDArray[np.float64]] = {}
        self._intercept: dict[str, float] = {}
        self.observations: dict[str, int] = {}
        for m in models:
            self.add_model(m)

    @property
    def models(self) -> list[str]:
        """The models this predictor knows."""
        return list(self._coef)

    def add_model(self, model: str, *, prior: float | None = None) -> None:
        """Start predicting ``model`` from a prior success rate (default 0.6)."""
        if model in self._coef:
            return
        p = prior if prior is not None else self._priors.get(model, 0.6)
        self._coef[model] = np.zeros(self.n_features)
        self._intercept[model] = _logit(p)
        self.observations[model] = 0

    # ------------------------------------------------------------------ features

    def vectorize(
        self, prompt: str, metadata: Mapping[str, Any] | None = None
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Sparse feature vector (indices, l2-normalized values) of one call."""
        crc, n = zlib.crc32, self.n_features
        hashed = np.fromiter(
            (crc(t.encode("utf-8")) % n for t in difficulty_tokens(prompt, metadata)),
            dtype=np.int64,
        )
        idx, counts = np.unique(hashed, return_counts=True)
        val = counts.astype(np.float64)
        norm = float(np.linalg.norm(val)) or 1.0
        return idx, val / norm

    def matrix(self, items: Sequence[tuple[str, Mapping[str, Any] | None]]) -> Any:
        """The sparse feature matrix (scipy CSR) of many calls, one row each."""
        return self._matrix(items)

    def _matrix(self, items: Sequence[tuple[str, Mapping[str, Any] | None]]) -> Any:
        from scipy.sparse import csr_matrix  # type: ignore[import-untyped]

        indptr = [0]
        indices: list[NDArray[np.int64]] = []
        data: list[NDArray[np.float64]] = []
        for prompt, md in items:
            i, v = self.vectorize(prompt, md)
            indices.append(i)
            data.append(v)
            indptr.append(indptr[-1] + len(i))
        return csr_matrix(
            (
                np.concatenate(data) if data else np.zeros(0),
                np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64),
                np.asarray(indptr),
            ),
            shape=(len(items), self.n_features),
        )

    # ------------------------------------------------------------------ learning

    def fit(self, rows: Iterable[RoutingRow], *, x: Any = None) -> SuccessPredictor:
        """Train every model that appears in ``rows`` (batch L2 logistic regression).

        ``x`` may pass the rows' :meth:`matrix` when it is already computed.
        """
        from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

        rows = list(rows)
        if not rows:
            raise ConfigError("no rows to fit on", field="rows")
        names = sorted({m for r in rows for m in r.models})
        if x is None:
            x = self._matrix([(r.prompt, {"source": r.source}) for r in rows])
        for m in names:
            self.add_model(m)
            mask = np.array([m in r.models for r in rows])
            y = np.array([r.models[m].score >= 0.5 for r in rows if m in r.models], dtype=np.int64)
            xm = x[mask]
            if len(set(y.tolist())) < 2:  # one class only: a constant predictor
                self._coef[m] = np.zeros(self.n_features)
                self._intercept[m] = _logit(float(y.mean()) if len(y) else 0.5)
            else:
                clf = LogisticRegression(C=self.c, max_iter=1000)
                clf.fit(xm, y)
                self._coef[m] = np.asarray(clf.coef_[0], dtype=np.float64)
                self._intercept[m] = float(clf.intercept_[0])
            self.observations[m] += len(y)
        return self

    def partial_fit(
        self,
        prompt: str,
        model: str,
        success: float,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Learn from one outcome (``success`` in [0, 1]) with one SGD step."""
        self.add_model(model)
        idx, val = self.vectorize(prompt, metadata)
        w = self._coef[model]
        p = 1.0 / (
            1.0 + math.exp(-max(-30.0, min(30.0, float(w[idx] @ val) + self._intercept[model])))
        )
        g = float(success) - p
        lr = self.learning_rate
        w[idx] += lr * g * val
        self._intercept[model] += lr * g * 0.1
        self.observations[model] += 1

    # ------------------------------------------------------------------ predicting

    def predict(
        self,
        prompt: str,
        metadata: Mapping[str, Any] | None = None,
        models: Iterable[str] | None = None,
    ) -> dict[str, float]:
        """Chance of success of each model on this call."""
        idx, val = self.vectorize(prompt, metadata)
        out: dict[str, float] = {}
        for m in models if models is not None else self.models:
            self.add_model(m)
            z = float(self._coef[m][idx] @ val) + self._intercept[m]
            out[m] = 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))
        return out

    def predict_matrix(
        self,
        items: Sequence[tuple[str, Mapping[str, Any] | None]],
        models: Sequence[str],
        *,
        x: Any = None,
    ) -> NDArray[np.float64]:
        """Chances of success, one row per call and one column per model in ``models``."""
        if x is None:
            x = self._matrix(items)
        for m in models:
            self.add_model(m)
        w = np.stack([self._coef[m] for m in models], axis=1)
        b = np.array([self._intercept[m] for m in models])
        return _sigmoid(np.asarray(x @ w) + b)


class CostPredictor:
    """Per-model expected cost of a call from the same hashed features (ridge on log cost).

    Output length, not the prompt, dominates what strong models cost (a maths question gets a
    long worked answer), so the expected cost is learned from the prompt's features rather
    than from its length alone.  Fit on routing rows; :meth:`partial_fit` learns online.
    """

    def __init__(
        self, predictor: SuccessPredictor, *, alpha: float = 1.0, learning_rate: float = 0.05
    ):
        self._features = predictor
        self.alpha = alpha
        self.learning_rate = learning_rate
        self._coef: dict[str, NDArray[np.float64]] = {}
        self._intercept: dict[str, float] = {}

    @property
    def models(self) -> list[str]:
        """The models this predictor prices."""
        return list(self._coef)

    def fit(self, rows: Iterable[RoutingRow], *, x: Any = None) -> CostPredictor:
        """Fit every model in ``rows`` (zero costs are floored at 1e-12 USD); ``x`` as in
        :meth:`SuccessPredictor.fit`."""
        from sklearn.linear_model import Ridge

        rows = list(rows)
        if not rows:
            raise ConfigError("no rows to fit on", field="rows")
        if x is None:
            x = self._features._matrix([(r.prompt, {"source": r.source}) for r in rows])
        for m in sorted({m for r in rows for m in r.models}):
            mask = np.array([m in r.models for r in rows])
            y = np.log(np.maximum([r.models[m].cost_usd for r in rows if m in r.models], 1e-12))
            reg = Ridge(alpha=self.alpha).fit(x[mask], y)
            self._coef[m] = np.asarray(reg.coef_, dtype=np.float64)
            self._intercept[m] = float(reg.intercept_)
        return self

    def partial_fit(
        self, prompt: str, model: str, cost_usd: float, metadata: Mapping[str, Any] | None = None
    ) -> None:
        """Learn from one observed cost with one SGD step on log cost."""
        idx, val = self._features.vectorize(prompt, metadata)
        w = self._coef.setdefault(model, np.zeros(self._features.n_features))
        b = self._intercept.setdefault(model, math.log(max(cost_usd, 1e-12)))
        err = math.log(max(cost_usd, 1e-12)) - (float(w[idx] @ val) + b)
        w[idx] += self.learning_rate * err * val
        self._intercept[model] = b + self.learning_rate * err * 0.1

    def predict_matrix(
        self,
        items: Sequence[tuple[str, Mapping[str, Any] | None]],
        models: Sequence[str],
        *,
        x: Any = None,
    ) -> NDArray[np.float64]:
        """Expected USD per call, one row per call and one column per model in ``models``."""
        missing = [m for m in models if m not in self._coef]
        if missing:
            raise ConfigError(
                f"no cost model for {missing}; fit on rows that include them", field="models"
            )
        if x is None:
            x = self._features._matrix(items)
        w = np.stack([self._coef[m] for m in models], axis=1)
        b = np.array([self._intercept[m] for m in models])
        out: NDArray[np.float64] = np.exp(np.asarray(x @ w) + b)
        return out


def quality_price(quality: float) -> float:
    """Success a pricier model must buy per ``cost_scale_usd``: ``(1 - q) / q`` (inf at 0)."""
    if not 0 <= quality <= 1:
        raise ConfigError(f"must be in [0, 1], got {quality!r}", field="quality")
    return math.inf if quality == 0 else (1 - quality) / quality


class RoutingPolicy:
    """Ranks models for one call from predicted success and expected cost; one knob.

    ``quality`` in [0, 1] is the trade-off: a model's utility is
    ``p_success - price(quality) * expected_cost / cost_scale_usd`` with
    ``price(quality) = (1 - quality) / quality``, and the best utility wins (so a pricier model
    must buy at least ``price`` of success per ``cost_scale_usd`` of extra cost).
    ``cost_scale_usd`` should be about the cost gap between the cheapest and the strongest
    model on a typical call; the router sets it from its backends' prices.
    """

    def __init__(
        self, predictor: SuccessPredictor, *, quality: float = 0.7, cost_scale_usd: float = 1e-3
    ):
        if not 0 <= quality <= 1:
            raise ConfigError(f"must be in [0, 1], got {quality!r}", field="quality")
        if not cost_scale_usd > 0:
            raise ConfigError(f"must be > 0, got {cost_scale_usd!r}", field="cost_scale_usd")
        self.predictor = predictor
        self.quality = quality
        self.cost_scale_usd = cost_scale_usd

    def scores(
        self,
        success: Mapping[str, float],
        expected_cost: Mapping[str, float],
        *,
        quality: float | None = None,
    ) -> dict[str, float]:
        """Each model's utility for this call (higher is better)."""
        q = self.quality if quality is None else quality
        price = quality_price(q)
        if math.isinf(price):
            return {m: -expected_cost[m] for m in success}
        return {m: success[m] - price * expected_cost[m] / self.cost_scale_usd for m in success}

    def rank(
        self,
        prompt: str,
        expected_cost: Mapping[str, float],
        metadata: Mapping[str, Any] | None = None,
        *,
        quality: float | None = None,
    ) -> list[tuple[str, float, float]]:
        """Candidates best first, as (model, predicted success, utility); ties go to the cheaper."""
        p = self.predictor.predict(prompt, metadata, models=list(expected_cost))
        u = self.scores(p, expected_cost, quality=quality)
        order = sorted(expected_cost, key=lambda m: (-u[m], expected_cost[m], m))
        return [(m, p[m], u[m]) for m in order]


def choose_columns(
    success: NDArray[np.float64], cost: NDArray[np.float64], quality: float, cost_scale_usd: float
) -> NDArray[np.int64]:
    """Vectorized :meth:`RoutingPolicy.rank` winner: the chosen column per row."""
    price = quality_price(quality)
    util = -cost if math.isinf(price) else success - price * cost / cost_scale_usd
    # ties go to the cheaper model: subtract a tiny cost-proportional epsilon
    util = util - 1e-12 * cost
    out: NDArray[np.int64] = np.argmax(util, axis=1).astype(np.int64)
    return out


def iter_chunks(seq: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Consecutive slices of ``seq`` of at most ``size`` items."""
    for i in range(0, len(seq), size):
        yield seq[i : i + size]
