"""``orchestra bench injection``: recall and false-positive rate of the prompt-injection check.

The check is :func:`orchestra.monitors.injection.detect_injection`, exactly as the risk
monitor runs it on every string a tool returns.  The texts, all public and offline:

===================  =====================================================  ==========  ======
source               what                                                   licence     role
===================  =====================================================  ==========  ======
bastioncorpus 0.6.0  118 attacks (direct, indirect, obfuscated, persona,   MIT         test
                     exfiltration; en/de/fr/es/it) and 63 benign false-
                     positive traps ("ignore case when sorting", "system
                     requirements"…), labelled by its authors
agent-injection-     21 attacks embedded in tool outputs, web pages and    MIT         dev
bench 0.1.0          documents, and 3 benign controls
jailbreak-corpus-    15 attacks (injection, leaks, role hijack, smuggling) MIT         dev
mini-py 0.1.0
MetaTool             199 tool descriptions (benign tool text)              MIT         test
Seal-Tools           4,076 tool descriptions and response descriptions     Apache-2.0  test
Agent Skills         paragraphs of 11 SKILL.md files: text written *to*    Apache-2.0  test
                     an agent, full of instructions, none an attack
===================  =====================================================  ==========  ======

The first three ship inside their PyPI wheels (``pip install 'orchestra[bench]'``); the last
three are read from ``../shared/data``.  ``dev`` sources (and the variants in
``tests/security/test_injection.py``) are what the rules were written against; ``test``
sources were not looked at while writing them (bastioncorpus's benign rows excepted: its
README shows some).  The figures of both are printed apart: the ``test`` ones count.
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


def _benign_tool_text(data: Path) -> list[Sample]:
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


def run_injection_bench(data_dir: Path | None = None) -> dict[str, Any]:
    """Run the check on every sample; figures overall, per role and per source."""
    samples = load_samples(data_dir)
    t0 = time.perf_counter()
    rows = [(s, detect_injection(s.text) is not None) for s in samples]
    elapsed = time.perf_counter() - t0
    by_source = {
        src: _figures([r for r in rows if r[0].source == src])
        for src in dict.fromkeys(s.source for s in samples)
    }
    return {
        "detector": "orchestra.monitors.injection.detect_injection (rules, normalised text)",
        "recall": _figures([r for r in rows if r[0].role == "test"])["recall"],
        "false_positive_rate": _figures([r for r in rows if r[0].role == "test"])[
            "false_positive_rate"
        ],
        "test": _figures([r for r in rows if r[0].role == "test"]),
        "dev": _figures([r for r in rows if r[0].role == "dev"]),
        "all": _figures(rows),
        "by_source": by_source,
        "mean_us_per_text": round(elapsed / max(len(rows), 1) * 1e6, 1),
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
    ) -> None:
        """Recall and false-positive rate of the prompt-injection check on public labelled sets."""
        from rich.console import Console
        from rich.table import Table

        result = run_injection_bench(data)
        table = Table(
            title="prompt-injection check (orchestra.monitors.injection)",
            caption="test: sources not used to write the rules; dev: sources they were written "
            "against",
        )
        for col in ("source", "role", "attacks", "recall", "benign", "false-positive rate"):
            table.add_column(col, justify="right" if col not in ("source", "role") else "left")
        roles = {"bastioncorpus-test": "test", "bastioncorpus-dev": "dev"}
        roles |= {"metatool": "test", "seal-tools": "test"}
        roles |= {"agent-skills": "test", "agent-injection-bench": "dev"}
        roles |= {"jailbreak-corpus-mini": "dev"}

        def pct(v: float | None) -> str:
            return "-" if v is None else f"{v:.3f}"

        for src, f in result["by_source"].items():
            table.add_row(
                src,
                roles.get(src, "?"),
                str(f["attacks"]),
                pct(f["recall"]),
                str(f["benign"]),
                pct(f["false_positive_rate"]),
            )
        for role in ("test", "dev", "all"):
            f = result[role]
            table.add_row(
                f"[bold]{role}[/]",
                "",
                str(f["attacks"]),
                f"[bold]{pct(f['recall'])}[/]",
                str(f["benign"]),
                f"[bold]{pct(f['false_positive_rate'])}[/]",
            )
        console = Console()
        console.print(table)
        console.print(f"{result['mean_us_per_text']} µs per text", highlight=False)
        if show_misses:
            for m in result["missed"]:
                console.print(f"[yellow]missed[/] {m['source']}/{m['category']}: {m['text']!r}")
            for m in result["false_positive_texts"]:
                console.print(f"[red]false positive[/] {m['source']}: {m['text']!r}")
        if json_out:
            json_out.write_text(json.dumps(result, indent=2))
