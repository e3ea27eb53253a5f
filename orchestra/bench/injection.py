"""``orchestra bench injection``: recall and false-positive rate of the prompt-injection check.

Three checks are measured: the rules (:func:`orchestra.monitors.injection.detect_injection`),
the learned detector that ships with the package alone, and the default
:class:`~orchestra.monitors.risk.RiskMonitor` (rules, then that detector), exactly as it runs
on every string a tool returns.  The texts, all public and offline:

===================  =====================================================  ==========  ======
source               what                                                   licence     role
===================  =====================================================  ==========  ======
bastioncorpus 0.6.0  118 attacks (direct, indirect, obfuscated, persona,   MIT         halves
                     exfiltration; en/de/fr/es/it) and 63 benign false-
                     positive traps ("ignore case when sorting", "system
                     requirements"…), labelled by its authors
agent-injection-     21 attacks embedded in tool outputs, web pages and    MIT         dev
bench 0.1.0          documents, and 3 benign controls
jailbreak-corpus-    15 attacks (injection, leaks, role hijack, smuggling) MIT         dev
mini-py 0.1.0
MetaTool             199 tool descriptions (benign tool text)              MIT         halves
Seal-Tools           4,076 tool descriptions and response descriptions     Apache-2.0  halves
Agent Skills         paragraphs of 11 SKILL.md files: text written *to*    Apache-2.0  halves
                     an agent, full of instructions, none an attack
===================  =====================================================  ==========  ======

The first three ship inside their PyPI wheels (``pip install 'orchestra[bench]'``); the last
three are read from ``../shared/data``; bastioncorpus and the tool text are split in two
halves by hash (``dev``/``test``).  ``dev`` samples are what the rules were written against
(with the variants in ``tests/security/test_injection.py`` and the attacks of four public
red-team kits that ``scripts/injection_kits.py`` rebuilds) and all the shipped model was
trained on; ``test`` samples were not looked at while writing the rules nor used in training
(bastioncorpus's benign rows excepted: its README shows some).  The figures of both are printed apart: the ``test`` ones count.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestra.monitors.injection import detect_injection

__all__ = ["Sample", "load_samples", "register", "run_injection_bench"]


@dataclass(frozen=True)
class Sample:
    text: str
    attack: bool
    source: str
    role: str  # "dev" or "test"
    category: str = ""


def default_data_dir() -> Path:
    """``../shared/data`` relative to the project root."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _package_file(package: str, *parts: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise typer.BadParameter(
            f"the {package!r} package is missing: pip install 'orchestra[bench]'",
            param_hint="orchestra bench injection",
        )
    return Path(spec.origin).parent.joinpath(*parts)


def _half(row_id: str) -> str:
    """A fixed split of bastioncorpus by the hash of each row's id: ``dev`` or ``test``."""
    import hashlib

    return "dev" if hashlib.sha256(row_id.encode()).digest()[0] % 2 == 0 else "test"


def _bastioncorpus() -> list[Sample]:
    path = _package_file("bastioncorpus", "corpus", "injections.jsonl")
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            r = json.loads(line)
            role = _half(r["id"])
            out.append(
                Sample(
                    r["text"],
                    r["label"] == "malicious",
                    f"bastioncorpus-{role}",
                    role,
                    r["category"],
                )
            )
    return out


def _agent_injection_bench() -> list[Sample]:
    path = _package_file("aib", "data", "attacks.jsonl")
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            r = json.loads(line)
            family = r.get("family", "")
            out.append(
                Sample(r["injected"], family != "control", "agent-injection-bench", "dev", family)
            )
    return out


def _jailbreak_corpus_mini() -> list[Sample]:
    path = _package_file("jailbreak_corpus_mini", "corpus.json")
    return [
        Sample(r["prompt"], True, "jailbreak-corpus-mini", "dev", r["category"])
        for r in json.loads(path.read_text(encoding="utf-8"))
    ]


def _agentprobe() -> list[Sample]:
    """agentprobe-injection's generated attacks (MIT), when that package is installed.

    Not in the ``bench`` extra (it pulls anthropic and matplotlib); install it with
    ``pip install --no-deps agentprobe-injection`` to add its 45 attacks (5 intents x 9
    linguistic disguises) as held-out test samples no rule was written against.
    """
    import importlib.util

    if importlib.util.find_spec("agentprobe") is None:
        return []
    from agentprobe.attacks.registry import all_attacks  # type: ignore[import-not-found,import-untyped,unused-ignore]

    return [Sample(a.payload, True, "agentprobe", "test", str(a.category)) for a in all_attacks()]


def _benign_tool_text(data: Path) -> list[Sample]:
    """Public tool text (descriptions, SKILL.md paragraphs), halved into dev and test."""
    return [Sample(s.text, False, s.source, _half(s.text), s.category) for s in _tool_text(data)]


def _tool_text(data: Path) -> list[Sample]:
    out: list[Sample] = []
    meta = data / "metatool" / "plugin_des.json"
    if meta.exists():
        for desc in json.loads(meta.read_text()).values():
            out.append(Sample(str(desc), False, "metatool", "test", "tool description"))
    seal = data / "seal-tools" / "tool.jsonl"
    if seal.exists():
        for line in seal.read_text().splitlines():
            if not line.strip():
                continue
            r = json.loads(line)
            out.append(Sample(r["api_description"], False, "seal-tools", "test", "description"))
            responses = r.get("responses") or {}
            if isinstance(responses, dict):
                for spec in responses.values():
                    if isinstance(spec, dict) and spec.get("description"):
                        out.append(
                            Sample(spec["description"], False, "seal-tools", "test", "response")
                        )
    skills = data / "agent-skills"
    if skills.exists():
        for md in sorted(skills.glob("*/SKILL.md")):
            for para in md.read_text(encoding="utf-8").split("\n\n"):
                if len(para.strip()) >= 40:
                    out.append(Sample(para.strip(), False, "agent-skills", "test", md.parent.name))
    return out


def load_samples(data_dir: Path | None = None) -> list[Sample]:
    """Every labelled text of the bench (see the module docstring)."""
    return [
        *_bastioncorpus(),
        *_agent_injection_bench(),
        *_jailbreak_corpus_mini(),
        *_agentprobe(),
        *_benign_tool_text(data_dir or default_data_dir()),
    ]


def _figures(rows: list[tuple[Sample, bool]]) -> dict[str, Any]:
    attacks = [hit for s, hit in rows if s.attack]
    benign = [hit for s, hit in rows if not s.attack]
    return {
        "attacks": len(attacks),
        "benign": len(benign),
        "detected": sum(attacks),
        "false_positives": sum(benign),
        "recall": round(sum(attacks) / len(attacks), 4) if attacks else None,
        "false_positive_rate": round(sum(benign) / len(benign), 4) if benign else None,
    }


def _report(samples: list[Sample], hits: list[bool]) -> dict[str, Any]:
    rows = list(zip(samples, hits, strict=True))
    return {
        "test": _figures([r for r in rows if r[0].role == "test"]),
        "dev": _figures([r for r in rows if r[0].role == "dev"]),
        "by_source": {
            src: _figures([r for r in rows if r[0].source == src])
            for src in dict.fromkeys(s.source for s in samples)
        },
        "missed": [
            {"source": s.source, "category": s.category, "text": s.text[:200]}
            for s, hit in rows
            if s.attack and not hit
        ],
        "false_positive_texts": [
            {"source": s.source, "category": s.category, "text": s.text[:200]}
            for s, hit in rows
            if not s.attack and hit
        ],
    }


def train_dev_model(samples: list[Sample]) -> Any:
    """The learned detector trained on the ``dev`` samples only (never on ``test`` ones).

    Threshold: no false positive on the dev benign texts that talk like instructions (the
    traps, the controls, tool descriptions, SKILL.md prose); the thousands of short Seal-Tools
    descriptions would set it far too low.  This is how the shipped model was made.
    """
    from orchestra.monitors.injection_model import LearnedInjectionDetector

    dev = [s for s in samples if s.role == "dev"]
    traps = [s.text for s in dev if not s.attack and s.source != "seal-tools"]
    model = LearnedInjectionDetector.train(
        [s.text for s in dev], [s.attack for s in dev], calibration=traps, max_fpr=0.0
    )
    model.trained_on = (
        f"{sum(s.attack for s in dev)} attacks and {sum(not s.attack for s in dev)} benign "
        "texts (the dev samples of orchestra bench injection)"
    )
    return model


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_injection_bench(
    data_dir: Path | None = None, *, learned: bool = True, save_model: Path | None = None
) -> dict[str, Any]:
    """Run the checks on every sample; figures per role (dev/test) and per source.

    ``rules`` is :func:`detect_injection` alone.  ``rules+learned`` is the risk monitor
    exactly as a user gets it with ``ORCHESTRA_INJECTION_MODEL=on``: the rules, then the
    learned detector that ships with the package for what they let through; ``learned`` is that detector alone.
    With ``save_model``, a detector is first trained on the dev samples (as the shipped one
    was), saved there, loaded back and measured instead.  The top-level ``recall`` and
    ``false_positive_rate`` are those of the best detector run, on the test samples.
    """
    from orchestra.monitors.risk import RiskMonitor

    samples = load_samples(data_dir)
    t0 = time.perf_counter()
    rule_hits = [detect_injection(s.text) is not None for s in samples]
    rules_us = (time.perf_counter() - t0) / max(len(samples), 1) * 1e6
    out: dict[str, Any] = {"samples": len(samples), "rules": _report(samples, rule_hits)}
    out["rules"]["mean_us_per_text"] = round(rules_us, 1)
    best, name = out["rules"], "rules"
    if learned:
        from orchestra.monitors.injection_model import SHIPPED_MODEL, LearnedInjectionDetector

        train_s = None
        if save_model is not None:
            t1 = time.perf_counter()
            train_dev_model(samples).save(save_model)
            train_s = round(time.perf_counter() - t1, 2)
            path = save_model if save_model.suffix == ".npz" else Path(f"{save_model}.npz")
            monitor = RiskMonitor(learned=LearnedInjectionDetector.load(path))
        else:
            path = SHIPPED_MODEL
            # as a user gets it with ORCHESTRA_INJECTION_MODEL=on
            monitor = RiskMonitor(learned=LearnedInjectionDetector.load(path))
        model = monitor.learned
        assert model is not None
        t2 = time.perf_counter()
        scores = model.scores([s.text for s in samples])
        learned_us = (time.perf_counter() - t2) / max(len(samples), 1) * 1e6
        model_hits = [bool(v >= model.threshold) for v in scores]
        out["learned"] = _report(samples, model_hits)
        out["learned"] |= {
            "threshold": round(model.threshold, 4),
            "mean_us_per_text": round(learned_us, 1),
            "trained_on": model.trained_on,
            "model": str(path),
            "model_sha256": _sha256(path) if path.is_file() else None,
            "model_bytes": path.stat().st_size if path.is_file() else None,
        }
        if train_s is not None:
            out["learned"]["train_s"] = train_s
        monitor_hits = [
            any(
                sig.kind == "block" and "prompt injection" in sig.reason
                for sig in monitor.inspect_output("tool", {"text": s.text})
            )
            for s in samples
        ]
        out["rules+learned"] = _report(samples, monitor_hits)
        best, name = out["rules+learned"], "rules+learned"
    out["detector"] = name
    out["recall"] = best["test"]["recall"]
    out["false_positive_rate"] = best["test"]["false_positive_rate"]
    return out


def register(app: typer.Typer) -> None:
    """Add ``orchestra bench injection``."""

    @app.command("injection")
    def injection_cmd(
        json_out: Annotated[
            Path | None, typer.Option("--json", help="Write the figures as JSON here")
        ] = None,
        data: Annotated[
            Path | None, typer.Option(help="The shared data folder (default ../shared/data)")
        ] = None,
        show_misses: Annotated[
            bool, typer.Option("--show-misses", help="Print missed attacks and false positives")
        ] = False,
        learned: Annotated[
            bool,
            typer.Option(help="Also measure the shipped learned detector (RiskMonitor's default)"),
        ] = True,
        save_model: Annotated[
            Path | None,
            typer.Option(
                help="Train the learned detector on the dev samples, save it here and measure "
                "it (orchestra/monitors/injection_model.npz regenerates the shipped one)"
            ),
        ] = None,
    ) -> None:
        """Recall and false-positive rate of the prompt-injection check on public labelled sets."""
        from rich.console import Console
        from rich.table import Table

        if data is not None and not data.is_dir():
            raise typer.BadParameter(f"no such folder {str(data)!r}", param_hint="--data")
        result = run_injection_bench(data, learned=learned, save_model=save_model)
        detectors = [d for d in ("rules", "learned", "rules+learned") if d in result]
        table = Table(
            title="prompt-injection detection: recall on attacks / false-positive rate on benign",
            caption="dev: what the rules were written against and the model trained on; "
            "test: held out (bastioncorpus split by id hash, tool text by text hash); "
            "RiskMonitor(+model): ORCHESTRA_INJECTION_MODEL=on, rules then the shipped model",
        )
        table.add_column("source", no_wrap=True)
        table.add_column("attacks", justify="right")
        table.add_column("benign", justify="right")
        label = {
            "rules": "rules",
            "learned": "learned",
            "rules+learned": "RiskMonitor(+model)",
        }
        for d in detectors:
            table.add_column(f"{label[d]}\nrecall", justify="right")
            table.add_column(f"{label[d]}\nFPR", justify="right")

        def pct(v: float | None) -> str:
            return "-" if v is None else f"{v:.3f}"

        first = result["rules"]
        for src, f in first["by_source"].items():
            cells = [src, str(f["attacks"]), str(f["benign"])]
            for d in detectors:
                g = result[d]["by_source"][src]
                cells += [pct(g["recall"]), pct(g["false_positive_rate"])]
            table.add_row(*cells)
        for role in ("dev", "test"):
            f = first[role]
            cells = [f"[bold]{role}[/]", str(f["attacks"]), str(f["benign"])]
            for d in detectors:
                g = result[d][role]
                cells += [
                    f"[bold]{pct(g['recall'])}[/]",
                    f"[bold]{pct(g['false_positive_rate'])}[/]",
                ]
            table.add_row(*cells)
        console = Console()
        console.print(table)
        console.print(
            f"rules: {first['mean_us_per_text']} µs per text"
            + (
                f"; learned: {result['learned']['mean_us_per_text']} µs per text, threshold "
                f"{result['learned']['threshold']}, model {result['learned']['model']} "
                f"({result['learned']['model_bytes']} bytes), trained on "
                f"{result['learned']['trained_on']}"
                if "learned" in result
                else ""
            ),
            highlight=False,
        )
        if show_misses:
            best = result[result["detector"]]
            for m in best["missed"]:
                console.print(f"[yellow]missed[/] {m['source']}/{m['category']}: {m['text']!r}")
            for m in best["false_positive_texts"]:
                console.print(f"[red]false positive[/] {m['source']}: {m['text']!r}")
        if json_out:
            json_out.write_text(json.dumps(result, indent=2))
