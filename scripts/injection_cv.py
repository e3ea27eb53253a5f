"""Choose the learned injection detector's regularisation by cross-validation on the DEV half.

    .venv/bin/python scripts/injection_cv.py 0.25 1 4 16 64

Five stratified folds (seed 0) over the dev samples of ``orchestra bench injection``; each
fold trains as the shipped model is trained (threshold: no false positive on the dev benign
traps of the training folds) and is scored on the held-out fold.  The held-out *test* half is
never read.  Rule used: the highest recall whose mean FPR stays <= 0.002.  On 2026-12-01:
C=0.25 0.354/0.0007, 1 0.562/0.0007, 4 0.771/0.0020, 16 0.802/0.0025, 64 0.802/0.0016
(recall/FPR), so the shipped model keeps C=4.
"""

from __future__ import annotations

import sys

import numpy as np
from sklearn.model_selection import StratifiedKFold  # type: ignore[import-untyped]

from orchestra.bench.injection import load_samples
from orchestra.monitors.injection_model import SEED, LearnedInjectionDetector


def main(cs: list[float]) -> None:
    dev = [s for s in load_samples() if s.role == "dev"]
    y = np.array([s.attack for s in dev])
    texts = [s.text for s in dev]
    trap = np.array([not s.attack and s.source != "seal-tools" for s in dev])
    folds = list(StratifiedKFold(5, shuffle=True, random_state=SEED).split(texts, y))
    for c in cs:
        recall, fpr = [], []
        for train, held in folds:
            model = LearnedInjectionDetector.train(
                [texts[i] for i in train],
                y[train].tolist(),
                calibration=[texts[i] for i in train if trap[i]],
                max_fpr=0.0,
                c=c,
            )
            hit = model.scores([texts[i] for i in held]) >= model.threshold
            recall.append(hit[y[held]].mean())
            fpr.append(hit[~y[held]].mean())
        print(f"C={c:g}: recall {np.mean(recall):.3f}, FPR {np.mean(fpr):.4f}", flush=True)


if __name__ == "__main__":
    main([float(a) for a in sys.argv[1:]] or [0.25, 1.0, 4.0, 16.0, 64.0])
