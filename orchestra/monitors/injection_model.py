"""A learned prompt-injection detector to add to the rules: character n-grams and a linear model.

The rules of :mod:`orchestra.monitors.injection` know the phrasings they were written for;
this model scores how much a text *looks like* the attacks it was trained on (a hashing
vectorizer over character 2-5-grams of the normalised text, plus word 1-2-grams, into a
class-balanced logistic regression; scikit-learn, already a dependency).  It is trained on
public labelled sets, and its threshold is set on benign text so that the false-positive
rate stays under a target.

A trained model ships with the package (``injection_model.npz`` next to this file: the
weights of the hashed n-grams, the intercept and the threshold, read with
``numpy.load(allow_pickle=False)``, so loading runs no code).  It was trained on the dev half
of ``orchestra bench injection`` only; regenerate it, reproducibly, with::

    orchestra bench injection --save-model orchestra/monitors/injection_model.npz

It is **opt-in**: ``ORCHESTRA_INJECTION_MODEL=on`` (or ``=PATH`` of another model, or
``RiskMonitor(learned=LearnedInjectionDetector.load(PATH))``) makes the
:class:`~orchestra.monitors.risk.RiskMonitor` load it on first use and ask it about what the
rules let through.  It is off by default because it flags about 2% of ordinary English
sentences that are not tool descriptions ("You must restart the system."): a step whose tool
writes prose would be vetoed now and then.  Unset, ``off`` or ``RiskMonitor(learned=None)``:
the rules alone.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from orchestra.monitors.injection import normalize

__all__ = ["SHIPPED_MODEL", "LearnedInjectionDetector", "default_detector"]

_FEATURES = 2**18
#: the model trained on the dev half of ``orchestra bench injection`` (package data)
SHIPPED_MODEL = Path(__file__).with_name("injection_model.npz")
#: the seed of the training run (the solver is deterministic; fixed for reproducibility)
SEED = 0


def _vectorizers() -> tuple[Any, Any]:
    from sklearn.feature_extraction.text import HashingVectorizer  # type: ignore[import-untyped]

    chars = HashingVectorizer(
        analyzer="char_wb",
        ngram_range=(2, 5),
        n_features=_FEATURES,
        alternate_sign=False,
        lowercase=False,
        norm="l2",
    )
    words = HashingVectorizer(
        analyzer="word",
        ngram_range=(1, 2),
        n_features=_FEATURES,
        alternate_sign=False,
        lowercase=False,
        norm="l2",
    )
    return chars, words


class LearnedInjectionDetector:
    """Scores texts in [0, 1]; ``flags(text)`` when the score reaches ``threshold``."""

    def __init__(
        self,
        coef: np.ndarray,
        intercept: float,
        threshold: float = 0.5,
        trained_on: str = "",
        min_words: int = 0,
    ):
        self.coef = coef.astype(np.float32)
        self.intercept = float(intercept)
        self.threshold = float(threshold)
        #: what the model was trained on, in words (saved with it)
        self.trained_on = trained_on
        #: texts with fewer words score 0: the model never saw an attack that short (the
        #: fewest words of its training attacks), and on a lone word or two it only guesses
        #: (``"customer"`` scored 0.81); short attacks are the rules' job
        self.min_words = int(min_words)
        self._chars, self._words = _vectorizers()

    # ------------------------------------------------------------------ training

    @classmethod
    def train(
        cls,
        texts: Sequence[str],
        labels: Sequence[bool],
        *,
        calibration: Sequence[str] = (),
        max_fpr: float = 0.01,
        c: float = 4.0,
    ) -> LearnedInjectionDetector:
        """Fit on labelled ``texts``; the threshold keeps the false-positive rate on the benign
        texts (of ``calibration``, else of the training set) at or under ``max_fpr``."""
        from scipy.sparse import hstack  # type: ignore[import-untyped]
        from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

        chars, words = _vectorizers()
        norm = [normalize(t) for t in texts]
        x = hstack([chars.transform(norm), words.transform(norm)]).tocsr()
        model = LogisticRegression(C=c, class_weight="balanced", max_iter=2000, random_state=SEED)
        model.fit(x, np.asarray(labels, dtype=bool))
        shortest = min((len(t.split()) for t, y in zip(norm, labels, strict=True) if y), default=0)
        det = cls(model.coef_[0], float(model.intercept_[0]), min_words=shortest)
        benign = list(calibration) or [t for t, y in zip(texts, labels, strict=True) if not y]
        scores = np.sort(det.scores(benign))[::-1]
        allowed = int(max_fpr * len(scores))  # benign texts that may score over the threshold
        det.threshold = float(scores[allowed]) + 1e-6 if len(scores) > allowed else 0.5
        det.threshold = max(det.threshold, 0.5)
        return det

    # ------------------------------------------------------------------ scoring

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """The model's probability that each text is an injection."""
        from scipy.sparse import hstack  # type: ignore[import-untyped]

        if not texts:
            return np.zeros(0)
        norm = [normalize(t) for t in texts]
        x = hstack([self._chars.transform(norm), self._words.transform(norm)]).tocsr()
        z = x @ self.coef + self.intercept
        short = np.array([len(t.split()) < self.min_words for t in norm], dtype=bool)
        return np.where(short, 0.0, np.asarray(1.0 / (1.0 + np.exp(-z))))

    def score(self, text: str) -> float:
        return float(self.scores([text])[0])

    def flags(self, text: str) -> bool:
        """Whether ``text`` scores at or over the threshold."""
        return self.score(text) >= self.threshold

    # ------------------------------------------------------------------ files

    def save(self, path: Path | str) -> None:
        """Write the weights and threshold (a compressed ``.npz``)."""
        nz = np.flatnonzero(self.coef)
        np.savez_compressed(
            Path(path),
            index=nz.astype(np.int32),
            value=self.coef[nz],
            size=np.int64(self.coef.shape[0]),
            intercept=np.float64(self.intercept),
            threshold=np.float64(self.threshold),
            trained_on=np.str_(self.trained_on),
            min_words=np.int64(self.min_words),
        )

    @classmethod
    def load(cls, path: Path | str) -> LearnedInjectionDetector:
        """Read a model written by :meth:`save`."""
        with np.load(Path(path), allow_pickle=False) as f:
            coef = np.zeros(int(f["size"]), dtype=np.float32)
            coef[f["index"]] = f["value"]
            trained_on = str(f["trained_on"]) if "trained_on" in f.files else ""
            min_words = int(f["min_words"]) if "min_words" in f.files else 0
            return cls(coef, float(f["intercept"]), float(f["threshold"]), trained_on, min_words)


_default_lock = threading.Lock()
_default: dict[str, LearnedInjectionDetector | None] = {}


def default_detector() -> LearnedInjectionDetector | None:
    """The detector a :class:`~orchestra.monitors.risk.RiskMonitor` uses unless told otherwise.

    ``None`` (the rules alone) unless ``ORCHESTRA_INJECTION_MODEL`` is ``on`` (the shipped
    model) or names a model file.  Loaded once per process, on first use.
    """
    setting = os.environ.get("ORCHESTRA_INJECTION_MODEL", "").strip()
    if setting.lower() in {"", "off", "0", "false", "no", "none"}:
        return None
    on = setting.lower() in {"on", "1", "true", "yes", "shipped"}
    path = SHIPPED_MODEL if on else Path(setting)
    key = str(path)
    with _default_lock:
        if key not in _default:
            if not path.is_file():
                from orchestra.errors import ConfigError

                raise ConfigError(
                    f"ORCHESTRA_INJECTION_MODEL names {key!r}, which is not a file: give the "
                    "path of a model saved by 'orchestra bench injection --save-model', "
                    "'on' (the shipped model) or 'off'"
                )
            _default[key] = LearnedInjectionDetector.load(path)
        return _default[key]
