"""``orchestra bench retrieval``: how well the skill retriever finds the tools a request needs.

Datasets (loaders take any file in the format, by path):

``metatool``        MetaTool: ``plugin_des.json`` (tool → description) and a ``Query,Tool`` CSV.
``metatool-multi``  MetaTool: the same catalog and a JSON list of ``{"query", "tool": [...]}``.
``seal``            Seal-Tools: ``tool.jsonl`` (``api_name``, ``api_description``, ``field``,
                    ``parameters``, ``required``…) and query rows with ``calling[].api``.

With no arguments every dev dataset under ``../shared/data/`` runs; Seal-Tools is reported
whole and split into its single-tool and multi-tool requests.  For each dataset and each
method (hybrid, BM25 alone, dense alone): Hit@1, Recall@5, MRR@10, nDCG@10, full-coverage@5
(every needed tool in the top 5) and query latency p50/p99 (one query at a time, the query
embedding included).  ``--scale`` adds (or with ``--scale-only`` runs alone) an index of
80,000 synthetic skills: build time, memory, query latency.
"""

from __future__ import annotations

import csv
import json
import math
import resource
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

if TYPE_CHECKING:
    from orchestra.retrieval import Retriever
    from orchestra.skills import Skill

__all__ = [
    "Dataset",
    "Query",
    "default_data_dir",
    "default_datasets",
    "evaluate",
    "load_dataset",
    "load_metatool",
    "load_metatool_multi",
    "load_seal",
    "register",
    "run_scale",
    "synthetic_catalog",
]

Format = Literal["metatool", "metatool-multi", "seal"]
METHODS = ("hybrid", "bm25", "dense")
METRICS = ("hit@1", "recall@5", "mrr@10", "ndcg@10", "fullcov@5", "p50_ms", "p99_ms")


@dataclass(frozen=True)
class Query:
    """A request and the names of the tools it needs."""

    text: str
    tools: tuple[str, ...]


@dataclass
class Dataset:
    """A catalog of skills and the queries to find them with."""

    name: str
    skills: list[Skill]
    queries: list[Query]
    subsets: dict[str, Callable[[Query], bool]] = field(default_factory=dict)


def default_data_dir() -> Path:
    """``../shared/data`` relative to the project root."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


# --------------------------------------------------------------------------- loaders


def _metatool_catalog(path: Path) -> list[Skill]:
    from orchestra.skills import Skill

    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of tool name → description")
    return [Skill(name=str(k), description=str(v)) for k, v in data.items()]


def load_metatool(catalog: Path, queries: Path, name: str = "metatool") -> Dataset:
    """MetaTool single-tool: ``plugin_des.json`` and a CSV with ``Query,Tool`` columns."""
    skills = _metatool_catalog(catalog)
    with queries.open(newline="", encoding="utf-8") as f:
        rows = [Query(r["Query"], (r["Tool"],)) for r in csv.DictReader(f)]
    return Dataset(name, skills, rows)


def load_metatool_multi(catalog: Path, queries: Path, name: str = "metatool-multi") -> Dataset:
    """MetaTool multi-tool: ``plugin_des.json`` and a JSON list of ``{"query", "tool": [...]}``."""
    skills = _metatool_catalog(catalog)
    data = json.loads(queries.read_text(encoding="utf-8"))
    rows = [Query(str(r["query"]), tuple(dict.fromkeys(map(str, r["tool"])))) for r in data]
    return Dataset(name, skills, rows)


def _seal_skill(row: dict[str, Any]) -> Skill:
    from orchestra.catalog import schema_to_model
    from orchestra.skills import Skill

    name = str(row["api_name"])
    props = row.get("parameters") or {}
    schema = {
        "type": "object",
        "properties": props,
        "required": [r for r in row.get("required", []) if r in props],
    }
    return Skill(
        name=name,
        description=str(row.get("api_description", "")),
        capability=str(row.get("field", "")),
        input_model=schema_to_model(schema, f"{name}Input", source=name),
    )


def load_seal(catalog: Path, queries: Path, name: str = "seal-tools") -> Dataset:
    """Seal-Tools: ``tool.jsonl`` and query rows ``{"query", "calling": [{"api": ...}]}``.

    Reported whole and as its ``-single`` and ``-multi`` (two or more tools) subsets.
    """
    with catalog.open(encoding="utf-8") as f:
        skills = [_seal_skill(json.loads(line)) for line in f if line.strip()]
    rows = []
    with queries.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                rows.append(
                    Query(
                        str(r["query"]), tuple(dict.fromkeys(str(c["api"]) for c in r["calling"]))
                    )
                )
    subsets: dict[str, Callable[[Query], bool]] = {
        f"{name}-single": lambda q: len(q.tools) == 1,
        f"{name}-multi": lambda q: len(q.tools) > 1,
    }
    return Dataset(name, skills, rows, subsets)


LOADERS: dict[str, Callable[[Path, Path, str], Dataset]] = {
    "metatool": load_metatool,
    "metatool-multi": load_metatool_multi,
    "seal": load_seal,
}


def load_dataset(fmt: str, catalog: Path, queries: Path, name: str | None = None) -> Dataset:
    """Load ``queries`` against ``catalog`` with the loader of ``fmt``."""
    if fmt not in LOADERS:
        raise typer.BadParameter(f"unknown format {fmt!r}; choose from {', '.join(LOADERS)}")
    return LOADERS[fmt](catalog, queries, name or f"{fmt}:{queries.stem}")


def default_datasets(data_dir: Path | None = None) -> list[tuple[str, Path, Path, str]]:
    """(format, catalog, queries, name) of every dev dataset under ``../shared/data``."""
    d = data_dir or default_data_dir()
    return [
        (
            "metatool",
            d / "metatool/plugin_des.json",
            d / "metatool/single_tool_queries_dev.csv",
            "metatool",
        ),
        (
            "metatool-multi",
            d / "metatool/plugin_des.json",
            d / "metatool/multi_tool_query_golden.json",
            "metatool-multi",
        ),
        ("seal", d / "seal-tools/tool.jsonl", d / "seal-tools/dev.jsonl", "seal-tools"),
    ]


# --------------------------------------------------------------------------- metrics


def _metrics(ranked: Sequence[str], gold: Sequence[str]) -> dict[str, float]:
    g = set(gold)
    hits = [1.0 if n in g else 0.0 for n in ranked]
    first = next((i for i, h in enumerate(hits[:10]) if h), None)
    dcg = sum(h / math.log2(i + 2) for i, h in enumerate(hits[:10]))
    idcg = sum(1 / math.log2(i + 2) for i in range(min(len(g), 10)))
    return {
        "hit@1": hits[0] if hits else 0.0,
        "recall@5": sum(hits[:5]) / len(g),
        "mrr@10": 0.0 if first is None else 1.0 / (first + 1),
        "ndcg@10": dcg / idcg if idcg else 0.0,
        "fullcov@5": 1.0 if g <= set(ranked[:5]) else 0.0,
    }


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(sorted(values)[min(len(values) - 1, max(0, math.ceil(q / 100 * len(values)) - 1))])


def evaluate(
    retriever: Retriever,
    queries: Sequence[Query],
    methods: Sequence[str] = METHODS,
    *,
    subsets: dict[str, Callable[[Query], bool]] | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """Score ``retriever`` on ``queries``; ``{"all" | subset: {method: {metric: value}}}``.

    Each query is searched alone (k=10) and timed; latency includes embedding the query.
    """
    groups = {"all": lambda q: True, **(subsets or {})}
    per: dict[str, list[tuple[Query, dict[str, float], float]]] = {m: [] for m in methods}
    for m in methods:
        if m == "dense" and not retriever.has_dense:
            continue
        for q in queries:
            t0 = time.perf_counter()
            hits = retriever.search(q.text, k=10, method=m)  # type: ignore[arg-type]
            ms = (time.perf_counter() - t0) * 1000
            per[m].append((q, _metrics([h.skill.name for h in hits], q.tools), ms))
            if progress is not None:
                progress(1)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for gname, pred in groups.items():
        out[gname] = {}
        for m, rows in per.items():
            sel = [r for r in rows if pred(r[0])]
            if not sel:
                continue
            agg = {k: round(sum(r[1][k] for r in sel) / len(sel), 4) for k in METRICS[:5]}
            lat = [r[2] for r in sel]
            agg["p50_ms"] = round(_percentile(lat, 50), 2)
            agg["p99_ms"] = round(_percentile(lat, 99), 2)
            agg["queries"] = len(sel)
            out[gname][m] = agg
    return out


# --------------------------------------------------------------------------- scale run

_VERBS = (
    "get",
    "fetch",
    "list",
    "create",
    "update",
    "delete",
    "search",
    "convert",
    "send",
    "analyze",
    "calculate",
    "estimate",
    "validate",
    "schedule",
    "translate",
    "summarize",
    "track",
    "book",
    "compare",
    "monitor",
    "predict",
    "export",
    "import",
    "generate",
    "check",
    "cancel",
    "score",
)
_OBJECTS = (
    "invoice",
    "payment",
    "shipment",
    "customer",
    "order",
    "ticket",
    "flight",
    "hotel",
    "weather",
    "forecast",
    "stock",
    "portfolio",
    "patient",
    "prescription",
    "appointment",
    "crop",
    "soil",
    "vehicle",
    "route",
    "sensor",
    "reading",
    "contract",
    "employee",
    "salary",
    "course",
    "grade",
    "playlist",
    "song",
    "recipe",
    "meal",
    "loan",
    "mortgage",
    "tax",
    "receipt",
    "email",
    "message",
    "document",
    "image",
    "video",
    "podcast",
    "article",
    "review",
    "product",
    "inventory",
    "warehouse",
    "supplier",
    "campaign",
    "lead",
    "policy",
    "claim",
    "device",
    "firmware",
    "backup",
    "server",
    "certificate",
    "domain",
    "satellite",
    "telescope",
    "experiment",
    "sample",
    "gene",
    "protein",
)
_QUALIFIERS = (
    "monthly",
    "daily",
    "regional",
    "historical",
    "real-time",
    "international",
    "local",
    "annual",
    "quarterly",
    "pending",
    "archived",
    "public",
    "private",
    "urgent",
    "scheduled",
    "estimated",
    "weekly",
    "global",
    "recent",
    "detailed",
)
_DOMAINS = (
    "finance",
    "logistics",
    "healthcare",
    "agriculture",
    "travel",
    "education",
    "media",
    "retail",
    "insurance",
    "security",
    "science",
    "energy",
    "legal",
    "marketing",
    "hr",
    "telecom",
)
_PARAMS = (
    ("id", "The identifier of the {o}"),
    ("date", "The date of the {o} (YYYY-MM-DD)"),
    ("location", "Where the {o} is, a city or region"),
    ("amount", "The amount involved, a number"),
    ("currency", "ISO currency code such as USD"),
    ("limit", "How many {o} records to return"),
    ("format", "Output format of the {o}: json, csv or pdf"),
    ("language", "Language code of the {o}"),
)


def synthetic_catalog(n: int, seed: int = 7) -> list[Skill]:
    """``n`` distinct, deterministic skills recombining verbs, objects, qualifiers and domains."""
    import random

    from pydantic import Field, create_model

    from orchestra.skills import Skill

    rng = random.Random(seed)
    models: dict[tuple[str, ...], Any] = {}
    skills: list[Skill] = []
    seen: set[str] = set()
    while len(skills) < n:
        v, o, q, d = (
            rng.choice(_VERBS),
            rng.choice(_OBJECTS),
            rng.choice(_QUALIFIERS),
            rng.choice(_DOMAINS),
        )
        o2 = rng.choice(_OBJECTS)
        name = f"{v}{q.title().replace('-', '')}{o.title()}{o2.title()}_{d}"
        if name in seen:
            name = f"{name}_{len(skills)}"
        seen.add(name)
        params = tuple(sorted(rng.sample(range(len(_PARAMS)), 2)))
        key = (o, *map(str, params))
        if key not in models:
            models[key] = create_model(  # type: ignore[call-overload]
                f"SynthInput_{o}_{'_'.join(map(str, params))}",
                **{
                    _PARAMS[p][0]: (str, Field(description=_PARAMS[p][1].format(o=o)))
                    for p in params
                },
            )
        desc = f"{v.capitalize()} the {q} {o} records linked to a {o2} in the {d} system"
        skills.append(
            Skill(name=name, description=desc, capability=f"{d}.{o}", input_model=models[key])
        )
    return skills


def _synthetic_queries(n: int, seed: int = 11) -> list[str]:
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        v, o, q, o2 = (
            rng.choice(_VERBS),
            rng.choice(_OBJECTS),
            rng.choice(_QUALIFIERS),
            rng.choice(_OBJECTS),
        )
        if rng.random() < 0.25:
            v2, o3 = rng.choice(_VERBS), rng.choice(_OBJECTS)
            out.append(f"{v} the {q} {o} for my {o2}, then {v2} the {o3}")
        else:
            out.append(f"please {v} the {q} {o} of this {o2}")
    return out


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return _rss_mb()


def run_scale(
    n: int = 80_000,
    *,
    queries: int = 300,
    cache_dir: Path | None = None,
    embedder: str = "default",
    baseline: bool = True,
) -> dict[str, Any]:
    """Build a retriever over ``n`` synthetic skills; time the build and the queries.

    With ``baseline`` (and the default embedder), the same hybrid queries are also timed on
    the plain way of doing it, in the same run: the model on PyTorch and every vector
    scanned (no IVF index); ``p50_speedup`` is that p50 over the retriever's.
    """
    import gc

    from orchestra.retrieval import Retriever, RetrieverConfig, SentenceTransformerEmbedder

    skills = synthetic_catalog(n)
    gc.collect()
    before = _current_rss_mb()
    t0 = time.perf_counter()
    r = Retriever(skills, embedder=embedder, cache_dir=cache_dir)
    build_s = time.perf_counter() - t0
    index_mb = _current_rss_mb() - before
    embedded = r.embedded_count
    # A second build reads every vector back from the cache.
    t1 = time.perf_counter()
    r = Retriever(skills, embedder=embedder, cache_dir=cache_dir)
    rebuild_s = time.perf_counter() - t1
    result: dict[str, Any] = {
        "skills": n,
        "build_s": round(build_s, 2),
        "texts_embedded": embedded,
        "rebuild_from_cache_s": round(rebuild_s, 2),
        "index_memory_mb": round(index_mb, 1),
        "peak_rss_mb": round(_rss_mb(), 1),
        "dense": r.has_dense,
        "methods": {},
    }
    texts = _synthetic_queries(queries)
    for t in texts[:10]:  # warm-up: first calls load the model and fill caches
        r.search(t, k=5)
    for m in METHODS:
        if m == "dense" and not r.has_dense:
            continue
        result["methods"][m] = _query_latency(r, texts, m)
    result["p50_ms"] = result["methods"]["hybrid"]["p50_ms"]
    result["p99_ms"] = result["methods"]["hybrid"]["p99_ms"]
    result["queries"] = len(texts)
    if baseline and embedder == "default" and r.has_dense:
        del r
        gc.collect()
        plain = Retriever(
            skills,
            embedder=SentenceTransformerEmbedder(runtime="torch"),
            cache_dir=cache_dir,
            config=RetrieverConfig(ann_threshold=10**12),
        )
        for t in texts[:10]:
            plain.search(t, k=5)
        base = {
            "what": "hybrid, PyTorch encoder, exact scan of every vector",
            **_query_latency(plain, texts, "hybrid"),
        }
        result["baseline"] = base
        result["p50_speedup"] = round(base["p50_ms"] / max(result["p50_ms"], 1e-9), 2)
    return result


def _query_latency(r: Retriever, texts: Sequence[str], method: str) -> dict[str, float]:
    """p50 and p99 of ``r.search(text, k=5)`` over ``texts``, in ms."""
    lat = []
    for t in texts:
        t0 = time.perf_counter()
        r.search(t, k=5, method=method)  # type: ignore[arg-type]
        lat.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": round(_percentile(lat, 50), 2), "p99_ms": round(_percentile(lat, 99), 2)}


# --------------------------------------------------------------------------- command


def run_datasets(
    specs: Iterable[tuple[str, Path, Path, str]],
    *,
    cache_dir: Path | None = None,
    embedder: str = "default",
    limit: int | None = None,
    methods: Sequence[str] = METHODS,
    on_dataset: Callable[[str, int], Callable[[int], None] | None] | None = None,
) -> dict[str, Any]:
    """Run each dataset; ``{"NAME": {"methods": {...}, "queries": N, "skills": M}}``.

    ``limit`` keeps an evenly spaced sample of that many queries per dataset.
    """
    from orchestra.retrieval import Retriever

    out: dict[str, Any] = {}
    for fmt, catalog, queries, name in specs:
        ds = load_dataset(fmt, catalog, queries, name)
        qs = ds.queries
        if limit is not None and len(qs) > limit:
            step = len(qs) / limit
            qs = [qs[int(i * step)] for i in range(limit)]
        t0 = time.perf_counter()
        r = Retriever(ds.skills, embedder=embedder, cache_dir=cache_dir)
        build_s = time.perf_counter() - t0
        n_methods = sum(1 for m in methods if m != "dense" or r.has_dense)
        progress = on_dataset(ds.name, len(qs) * n_methods) if on_dataset else None
        res = evaluate(r, qs, methods, subsets=ds.subsets, progress=progress)
        for group, per_method in res.items():
            key = ds.name if group == "all" else group
            n_q = next(iter(per_method.values()))["queries"] if per_method else 0
            out[key] = {
                "methods": per_method,
                "queries": n_q,
                "skills": len(ds.skills),
                "index_build_s": round(build_s, 2),
            }
    return out


def register(app: typer.Typer) -> None:
    """Add ``retrieval`` to the ``bench`` group."""

    @app.command("retrieval")
    def retrieval(
        json_out: Annotated[
            Path | None, typer.Option("--json", help="write the figures as JSON here")
        ] = None,
        fmt: Annotated[
            str | None, typer.Option("--format", help="metatool | metatool-multi | seal")
        ] = None,
        catalog: Annotated[Path | None, typer.Option(help="catalog file in that format")] = None,
        queries: Annotated[Path | None, typer.Option(help="queries file in that format")] = None,
        limit: Annotated[
            int | None, typer.Option(help="evenly spaced sample of N queries per dataset")
        ] = None,
        scale: Annotated[
            bool, typer.Option("--scale", help="also run the 80,000-skill scale run")
        ] = False,
        scale_only: Annotated[
            bool, typer.Option("--scale-only", help="run only the scale run")
        ] = False,
        scale_size: Annotated[int, typer.Option(help="skills in the scale run")] = 80_000,
        embedder: Annotated[
            str, typer.Option(help="'default', 'none' or a sentence-transformers model")
        ] = "default",
        cache_dir: Annotated[Path | None, typer.Option(help="where embeddings persist")] = None,
    ) -> None:
        """Hit@1, Recall@5, MRR@10, nDCG@10, full-coverage@5 and latency of hybrid, BM25 and dense."""
        from rich.console import Console
        from rich.progress import Progress

        console = Console()
        emb: Any = None if embedder.lower() == "none" else embedder
        result: dict[str, Any] = {"datasets": {}, "scale": None}
        if not scale_only:
            if fmt or catalog or queries:
                if not (fmt and catalog and queries):
                    raise typer.BadParameter("--format, --catalog and --queries go together")
                specs = [(fmt, catalog, queries, f"{fmt}:{queries.stem}")]
            else:
                specs = default_datasets()
            with Progress(console=console, transient=True) as bar:

                def on_dataset(name: str, total: int) -> Callable[[int], None]:
                    task = bar.add_task(name, total=total)
                    return lambda n: bar.advance(task, n)

                result["datasets"] = run_datasets(
                    specs, cache_dir=cache_dir, embedder=emb, limit=limit, on_dataset=on_dataset
                )
            console.print(_table(result["datasets"]))
        if scale or scale_only:
            with console.status(f"scale run: indexing {scale_size:,} synthetic skills…"):
                result["scale"] = run_scale(scale_size, cache_dir=cache_dir, embedder=emb)
            console.print(_scale_table(result["scale"]))
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
            console.print(f"wrote {json_out}")


def _table(datasets: dict[str, Any]) -> Any:
    from rich.table import Table

    t = Table(title="Skill retrieval")
    for col in ("dataset", "queries", "method", *METRICS):
        t.add_column(col, justify="left" if col in ("dataset", "method") else "right")
    for name, d in datasets.items():
        for i, (m, vals) in enumerate(d["methods"].items()):
            t.add_row(
                name if i == 0 else "",
                str(d["queries"]) if i == 0 else "",
                m,
                *(f"{vals[k]:.3f}" if not k.endswith("_ms") else f"{vals[k]:.1f}" for k in METRICS),
                end_section=i == len(d["methods"]) - 1,
            )
    return t


def _scale_table(s: dict[str, Any]) -> Any:
    from rich.table import Table

    t = Table(title=f"Scale: {s['skills']:,} synthetic skills")
    t.add_column("measure")
    t.add_column("value", justify="right")
    for k in (
        "build_s",
        "texts_embedded",
        "rebuild_from_cache_s",
        "index_memory_mb",
        "peak_rss_mb",
    ):
        t.add_row(k, str(s[k]))
    for m, v in s["methods"].items():
        t.add_row(f"{m} p50 / p99 ms", f"{v['p50_ms']:.1f} / {v['p99_ms']:.1f}")
    if "baseline" in s:
        b = s["baseline"]
        t.add_row("baseline p50 / p99 ms", f"{b['p50_ms']:.1f} / {b['p99_ms']:.1f}")
        t.add_row("  (" + b["what"] + ")", "")
        t.add_row("hybrid p50 speed-up", f"{s['p50_speedup']:.2f}x")
    return t
