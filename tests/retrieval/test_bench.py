"""``orchestra bench retrieval``: loaders, metrics, the JSON shape, and a small run on the real data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from orchestra.bench import retrieval as bench
from orchestra.retrieval import Retriever, SentenceTransformerEmbedder

from .helpers import DATA, needs_embed

METRIC_KEYS = {"hit@1", "recall@5", "mrr@10", "ndcg@10", "fullcov@5", "p50_ms", "p99_ms"}


def tiny_files(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    """One small file pair in each supported format."""
    des = tmp_path / "plugins.json"
    des.write_text(
        json.dumps(
            {
                "WeatherTool": "Weather forecasts for any city.",
                "NewsTool": "Latest news headlines.",
                "calc": "A calculator.",
            }
        )
    )
    single = tmp_path / "single.csv"
    single.write_text(
        "Query,Tool\nWill it rain in Paris tomorrow?,WeatherTool\nWhat is 17 times 23?,calc\n"
    )
    multi = tmp_path / "multi.json"
    multi.write_text(
        json.dumps(
            [
                {
                    "query": "Weather in Rome and the latest news there",
                    "tool": ["WeatherTool", "NewsTool"],
                }
            ]
        )
    )
    tools = tmp_path / "tool.jsonl"
    rows = [
        {
            "api_name": "getWeather",
            "api_description": "Get the weather",
            "field": "Meteorology",
            "parameters": {"city": {"type": "str", "description": "City name"}},
            "required": ["city"],
            "responses": {},
        },
        {
            "api_name": "sendMail",
            "api_description": "Send an email",
            "field": "Office",
            "parameters": {"to": {"type": "str", "description": "Address"}},
            "required": ["to"],
            "responses": {},
        },
    ]
    tools.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    queries = tmp_path / "dev.jsonl"
    queries.write_text(
        json.dumps(
            {
                "id": "a",
                "query": "Weather in Oslo?",
                "calling": [{"api": "getWeather", "parameters": {}}],
            }
        )
        + "\n"
        + json.dumps(
            {
                "id": "b",
                "query": "Get the weather in Oslo, then email it to me",
                "calling": [{"api": "getWeather"}, {"api": "sendMail"}],
            }
        )
        + "\n"
    )
    return {"metatool": (des, single), "metatool-multi": (des, multi), "seal": (tools, queries)}


class TestLoadersAndMetrics:
    def test_each_format_loads_any_file_by_path(self, tmp_path: Path) -> None:
        files = tiny_files(tmp_path)
        mt = bench.load_dataset("metatool", *files["metatool"])
        assert [q.tools for q in mt.queries] == [("WeatherTool",), ("calc",)] and len(
            mt.skills
        ) == 3
        mm = bench.load_dataset("metatool-multi", *files["metatool-multi"])
        assert mm.queries[0].tools == ("WeatherTool", "NewsTool")
        seal = bench.load_dataset("seal", *files["seal"])
        assert [q.tools for q in seal.queries] == [("getWeather",), ("getWeather", "sendMail")]
        weather = next(s for s in seal.skills if s.name == "getWeather")
        assert (
            weather.capability == "Meteorology"
            and weather.input_model.model_fields["city"].is_required()
        )

    def test_metrics(self) -> None:
        m = bench._metrics(["a", "x", "b", "y", "z", "w"], ["a", "b"])
        assert (
            m["hit@1"] == 1.0
            and m["recall@5"] == 1.0
            and m["fullcov@5"] == 1.0
            and m["mrr@10"] == 1.0
        )
        assert m["ndcg@10"] == pytest.approx((1 + 1 / 2) / (1 + 1 / 1.5849625), rel=1e-6)
        m = bench._metrics(["x", "a", "y", "z", "w", "b"], ["a", "b"])
        assert (
            m["hit@1"] == 0.0
            and m["recall@5"] == 0.5
            and m["fullcov@5"] == 0.0
            and m["mrr@10"] == 0.5
        )

    def test_cli_writes_json_with_the_documented_keys(self, tmp_path: Path) -> None:
        app = typer.Typer()
        bench.register(app)
        app.command("noop")(
            lambda: None
        )  # a group with two commands keeps 'retrieval' as a subcommand
        files = tiny_files(tmp_path)
        out = tmp_path / "out.json"
        args = [
            "retrieval",
            "--format",
            "seal",
            "--catalog",
            str(files["seal"][0]),
            "--queries",
            str(files["seal"][1]),
        ]
        res = CliRunner().invoke(
            app,
            [*args, "--embedder", "none", "--json", str(out), "--cache-dir", str(tmp_path / "c")],
        )
        assert res.exit_code == 0, res.output
        data = json.loads(out.read_text())
        assert set(data) >= {"datasets", "scale"}
        for ds in data["datasets"].values():
            assert set(ds["methods"]) == {"hybrid", "bm25"}  # no embedder: no dense row
            for vals in ds["methods"].values():
                assert set(vals) >= METRIC_KEYS
        assert {"seal:dev", "seal:dev-single", "seal:dev-multi"} <= set(data["datasets"])

    def test_synthetic_catalog_is_deterministic_and_distinct(self) -> None:
        a, b = bench.synthetic_catalog(500), bench.synthetic_catalog(500)
        assert [s.name for s in a] == [s.name for s in b]
        assert len({s.name for s in a}) == 500
        assert a[0].describe() == b[0].describe()


@needs_embed
class TestOnRealData:
    """A small sample of the real dev sets; the full benchmark is run by the CLI."""

    def test_metatool_single_sample(
        self, minilm: SentenceTransformerEmbedder, embed_cache: Path
    ) -> None:
        ds = bench.load_metatool(
            DATA / "metatool/plugin_des.json", DATA / "metatool/single_tool_queries_dev.csv"
        )
        sample = ds.queries[:: len(ds.queries) // 60][:60]
        r = Retriever(ds.skills, embedder=minilm, cache_dir=embed_cache)
        res = bench.evaluate(r, sample)["all"]
        assert set(res) == {"hybrid", "bm25", "dense"}
        assert res["hybrid"]["hit@1"] >= max(res["bm25"]["hit@1"], res["dense"]["hit@1"]) - 0.02
        assert res["hybrid"]["hit@1"] >= 0.5
        assert res["hybrid"]["recall@5"] >= 0.7

    def test_seal_multi_tool_sample_covers_every_needed_tool(
        self, minilm: SentenceTransformerEmbedder, embed_cache: Path
    ) -> None:
        """Requests that need several tools get all of them into the top 5 (sampled sub-catalog)."""
        ds = bench.load_seal(DATA / "seal-tools/tool.jsonl", DATA / "seal-tools/dev.jsonl")
        multi = [q for q in ds.queries if len(q.tools) > 1][::20][:25]
        needed = {t for q in multi for t in q.tools}
        catalog = [s for s in ds.skills if s.name in needed] + [
            s for s in ds.skills if s.name not in needed
        ][::40]
        r = Retriever(catalog, embedder=minilm, cache_dir=embed_cache)
        res = bench.evaluate(r, multi, ("hybrid", "bm25"))["all"]
        assert res["hybrid"]["fullcov@5"] >= 0.6
        assert res["hybrid"]["recall@5"] >= 0.8


@needs_embed
def test_scale_run_reports_build_memory_latency_and_baseline(tmp_path: Path) -> None:
    """The scale run's JSON, on a small catalog (the 80,000-skill run is the CLI's job): a
    first build embeds every skill, a build on the same cache embeds none."""
    res = bench.run_scale(1_000, queries=12, cache_dir=tmp_path)
    assert res["skills"] == 1_000 and res["queries"] == 12 and res["dense"] is True
    assert res["texts_embedded"] == 1_000  # a fresh cache
    assert res["build_s"] > 0 and res["rebuild_from_cache_s"] > 0
    assert res["index_memory_mb"] > 0 and res["peak_rss_mb"] >= res["index_memory_mb"]
    assert set(res["methods"]) == {"hybrid", "bm25", "dense"}
    for vals in res["methods"].values():
        assert 0 < vals["p50_ms"] <= vals["p99_ms"]
    assert res["p50_ms"] == res["methods"]["hybrid"]["p50_ms"]
    base = res["baseline"]
    assert base["what"] == "hybrid, PyTorch encoder, exact scan of every vector"
    assert 0 < base["p50_ms"] <= base["p99_ms"]
    assert res["p50_speedup"] > 0
    again = bench.run_scale(1_000, queries=4, cache_dir=tmp_path, baseline=False)
    assert again["texts_embedded"] == 0  # every vector read back from the cache
    assert "baseline" not in again and "p50_speedup" not in again
