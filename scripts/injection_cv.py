"""Choose the learned injection detector's settings by cross-validation on the DEV half.

    .venv/bin/python scripts/injection_cv.py 0.25 1 4 16 64
    .venv/bin/python scripts/injection_cv.py 4 --kits /tmp/kits/kits.jsonl --dev-weight 10
    .venv/bin/python scripts/injection_cv.py 4 --requests 1 --max-fpr 0.02

Five stratified folds (seed 0) over the dev samples of ``orchestra bench injection``; each
fold trains as the shipped model is trained (threshold: no false positive on the dev benign
traps of the training folds, or ``--max-fpr`` of them) and is scored on the held-out fold.
The held-out *test* half is never read.  Rule used: the highest recall whose mean FPR stays
<= 0.002.  On 2026-12-01: C=0.25 0.354/0.0007, 1 0.562/0.0007, 4 0.771/0.0020, 16
0.802/0.0025, 64 0.802/0.0016 (recall/FPR), so the shipped model keeps C=4.

Extra training texts, always in every training fold and never scored: ``--kits`` (the
red-team kits' texts that ``scripts/injection_kits.py`` writes, weight ``--kits-weight``) and
``--requests W`` (benign requests from ``../shared/data``: every fifth RouteLLM prompt, the
MetaTool and Seal-Tools queries, weight W).  ``--dev-weight`` weighs the dev samples; classes
are then balanced by weight.  Each line also gives the share of 8,192 paragraphs of ordinary
English (Python's docstrings and this package's strings, never trained on) over the
threshold.  On 2026-12-01 (recall / FPR / ordinary English), C=4: 0.760/0.0020/0.019 as
shipped; --kits: 0.582/0.0038/0.027; --requests 1: 0.635/0.0013/0.006; --requests 1
--max-fpr 0.02: 0.772/0.0020/0.013; --kits --dev-weight 10: 0.854/0.0058/0.060; --kits
--requests 0.3 --dev-weight 10: 0.802/0.0036/0.028 (the 0.771 above, with C=4 as
shipped, came from an earlier version of the bench's texts).  None was adopted.  ``--requests 1
--max-fpr 0.02`` does meet the rule, by one attack in 96, with a third less ordinary English
flagged; it was overlooked until after the test half had been measured, and adopting it then
would have been a choice made with the test figures in view: a candidate for the next model.
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold  # type: ignore[import-untyped]

from orchestra.bench.injection import default_data_dir, load_samples
from orchestra.monitors.injection import normalize
from orchestra.monitors.injection_model import SEED, LearnedInjectionDetector, _vectorizers

ROOT = Path(__file__).resolve().parents[1]


def ordinary_english() -> list[str]:
    """Paragraphs of Python's docstrings and this package's string literals (4+ words)."""
    out: list[str] = []
    files = [p for p in sorted((ROOT / "orchestra").rglob("*.py")) if "injection" not in p.name]
    files += sorted(Path(ast.__file__).parent.glob("*.py"))
    for path in files:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        own = path.is_relative_to(ROOT)
        for node in ast.walk(tree):
            if own and isinstance(node, ast.Constant) and isinstance(node.value, str):
                out.append(node.value)
            elif not own and isinstance(
                node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
            ):
                doc = ast.get_docstring(node) or ""
                out += [" ".join(p.split()) for p in doc.split("\n\n") if ">>>" not in p]
    return sorted({t for t in out if len(t.split()) >= 4})


def benign_requests(data: Path) -> list[str]:
    prompts = [
        json.loads(line)["prompt"]
        for line in (data / "routellm" / "routing_rows.jsonl").read_text().splitlines()
    ][::5]
    with (data / "metatool" / "single_tool_queries_dev.csv").open() as f:
        prompts += [r["Query"] for r in csv.DictReader(f)]
    for line in (data / "seal-tools" / "dev.jsonl").read_text().splitlines():
        prompts.append(json.loads(line)["query"])
    return [p for p in prompts if isinstance(p, str) and p.strip()]


def main() -> None:
    from scipy.sparse import hstack, vstack  # type: ignore[import-untyped]
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    ap = argparse.ArgumentParser()
    ap.add_argument("c", nargs="*", type=float, default=[0.25, 1.0, 4.0, 16.0, 64.0])
    ap.add_argument("--kits", type=Path)
    ap.add_argument("--kits-weight", type=float, default=1.0)
    ap.add_argument("--requests", type=float, default=0.0, help="weight of benign requests")
    ap.add_argument("--dev-weight", type=float, default=1.0)
    ap.add_argument("--max-fpr", type=float, default=0.0)
    args = ap.parse_args()

    dev = [s for s in load_samples() if s.role == "dev"]
    y = np.array([s.attack for s in dev])
    texts = [s.text for s in dev]
    trap = np.array([not s.attack and s.source != "seal-tools" for s in dev])
    chars, words = _vectorizers()

    def features(ts: list[str]) -> object:
        norm = [normalize(t) for t in ts]
        return hstack([chars.transform(norm), words.transform(norm)]).tocsr()

    extra_x, extra_y, extra_w = [], [], []
    if args.kits:
        rows = [json.loads(line) for line in args.kits.read_text().splitlines() if line]
        extra_x.append(features([r["text"] for r in rows]))
        extra_y.append(np.array([r["attack"] for r in rows]))
        extra_w.append(np.full(len(rows), args.kits_weight))
    if args.requests:
        reqs = benign_requests(default_data_dir())
        extra_x.append(features(reqs))
        extra_y.append(np.zeros(len(reqs), dtype=bool))
        extra_w.append(np.full(len(reqs), args.requests))
    english = ordinary_english()
    x_dev, x_eng = features(texts), features(english)
    words_dev = np.array([len(normalize(t).split()) for t in texts])
    words_eng = np.array([len(normalize(t).split()) for t in english])
    folds = list(StratifiedKFold(5, shuffle=True, random_state=SEED).split(texts, y))
    for c in args.c:
        recall, fpr, eng = [], [], []
        for train, held in folds:
            if not extra_x and args.dev_weight == 1.0:  # exactly as the shipped model trains
                model = LearnedInjectionDetector.train(
                    [texts[i] for i in train],
                    y[train].tolist(),
                    calibration=[texts[i] for i in train if trap[i]],
                    max_fpr=args.max_fpr,
                    c=c,
                )
                coef, b = model.coef, model.intercept
            else:
                xt = vstack([x_dev[train], *extra_x]).tocsr()
                yt = np.concatenate([y[train], *extra_y])
                wt = np.concatenate([np.full(len(train), args.dev_weight), *extra_w])
                pos, neg = wt[yt].sum(), wt[~yt].sum()
                wt = np.where(yt, wt * (pos + neg) / (2 * pos), wt * (pos + neg) / (2 * neg))
                lr = LogisticRegression(C=c, max_iter=3000, random_state=SEED)
                lr.fit(xt, yt, sample_weight=wt)
                coef, b = lr.coef_[0], float(lr.intercept_[0])
            cal = np.sort(x_dev[[i for i in train if trap[i]]] @ coef + b)[::-1]
            threshold = max(cal[int(args.max_fpr * len(cal))] + 1e-9, 0.0)
            shortest = min(words_dev[i] for i in train if y[i])
            hit = (x_dev[held] @ coef + b >= threshold) & (words_dev[held] >= shortest)
            recall.append(hit[y[held]].mean())
            fpr.append(hit[~y[held]].mean())
            eng.append(((x_eng @ coef + b >= threshold) & (words_eng >= shortest)).mean())
        print(
            f"C={c:g}: recall {np.mean(recall):.3f}, FPR {np.mean(fpr):.4f}, "
            f"ordinary English over the threshold {np.mean(eng):.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
