"""The embedder's runtimes (ONNX Runtime and PyTorch) and the fast top-k selection."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skip_policy import in_ci
from structlog.testing import capture_logs

from orchestra.errors import ConfigError
from orchestra.retrieval import onnx_encoder
from orchestra.retrieval.embedders import SentenceTransformerEmbedder
from orchestra.retrieval.hybrid import _top
from orchestra.retrieval.onnx_encoder import _PAD_SLACK, _batches, _pipeline

from .helpers import needs_embed

HAS_ORT = all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))
needs_ort = pytest.mark.skipif(not HAS_ORT and not in_ci(), reason="needs onnxruntime and onnx")

TEXTS = [
    "convert 20 euros to dollars",
    "fetch the weather forecast for Paris, then email the receipt to the customer",
    "?",
    " ".join(["a long skill body that runs past the model's window"] * 60),
]


@needs_embed
@needs_ort
class TestOnnxRuntime:
    def test_same_vectors_as_pytorch(self, tmp_path: Path) -> None:
        onnx = SentenceTransformerEmbedder(cache_dir=tmp_path)
        torch = SentenceTransformerEmbedder(runtime="torch")
        onnx.load()
        torch.load()
        assert onnx.active_runtime == "onnx"
        assert torch.active_runtime == "torch"
        assert onnx.id == torch.id  # one embedding cache serves both
        for kind in ("query", "document"):
            a = onnx.encode(TEXTS, kind=kind)
            b = torch.encode(TEXTS, kind=kind)
            assert a.shape == b.shape == (len(TEXTS), 384)
            assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
            assert float(np.min(np.sum(a * b, axis=1))) > 0.9999

    def test_export_is_kept_and_reused(self, tmp_path: Path) -> None:
        SentenceTransformerEmbedder(cache_dir=tmp_path).load()
        exports = list((tmp_path / "onnx").glob("*/model.onnx"))
        assert len(exports) == 1
        stamp = exports[0].stat().st_mtime_ns
        again = SentenceTransformerEmbedder(cache_dir=tmp_path)
        again.load()
        assert again.active_runtime == "onnx"
        assert exports[0].stat().st_mtime_ns == stamp  # loaded, not exported again

    def test_a_damaged_export_is_replaced(self, tmp_path: Path) -> None:
        SentenceTransformerEmbedder(cache_dir=tmp_path).load()
        (export,) = (tmp_path / "onnx").glob("*/model.onnx")
        export.write_bytes(b"not an onnx graph")
        emb = SentenceTransformerEmbedder(cache_dir=tmp_path)
        with capture_logs() as logs:
            emb.load()
        assert any("unusable" in e["event"] for e in logs), logs
        assert emb.active_runtime == "onnx"
        assert export.stat().st_size > 1_000_000  # exported again
        torch = SentenceTransformerEmbedder(runtime="torch")
        a = emb.encode(TEXTS[:2], kind="query")
        assert float(np.min(np.sum(a * torch.encode(TEXTS[:2], kind="query"), axis=1))) > 0.9999

    def test_pytorch_serves_when_export_fails(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("exporter exploded")

        monkeypatch.setattr(onnx_encoder, "_export", broken)
        emb = SentenceTransformerEmbedder(cache_dir=tmp_path)
        with capture_logs() as logs:
            emb.load()
        assert emb.active_runtime == "torch"
        assert any("export failed" in e["event"] for e in logs), logs
        assert not list((tmp_path / "onnx").glob("*"))  # no half-written export left
        assert emb.encode(["convert money"], kind="query").shape == (1, 384)

    def test_onnx_demanded_but_impossible_is_a_config_error(self, tmp_path: Path) -> None:
        emb = SentenceTransformerEmbedder(runtime="onnx", device="meta", cache_dir=tmp_path)
        with pytest.raises(ConfigError, match="runtime"):
            emb.load()

    def test_a_later_process_runs_without_pytorch(self, tmp_path: Path) -> None:
        SentenceTransformerEmbedder(cache_dir=tmp_path).load()  # exports
        code = (
            "import sys, numpy as np\n"
            "from orchestra.retrieval.embedders import SentenceTransformerEmbedder\n"
            f"e = SentenceTransformerEmbedder(cache_dir={str(tmp_path)!r})\n"
            "v = e.encode(['convert money'], kind='query')\n"
            "assert e.active_runtime == 'onnx', e.active_runtime\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "assert v.shape == (1, 384) and abs(float(np.linalg.norm(v)) - 1) < 1e-5\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]


def _mod(name: str, **attrs: object) -> object:
    return type(name, (), attrs)()


class TestExportableLayouts:
    def test_transformer_pooling_normalize(self) -> None:
        model = [_mod("Transformer"), _mod("Pooling", pooling_mode="mean"), _mod("Normalize")]
        assert _pipeline(model) == ("mean", True)
        assert _pipeline(model[:2]) == ("mean", False)
        assert _pipeline([model[0], _mod("Pooling", pooling_mode="cls")]) == ("cls", False)

    def test_other_layouts_stay_on_pytorch(self) -> None:
        assert _pipeline([_mod("Transformer"), _mod("Pooling", pooling_mode="max")]) is None
        assert _pipeline([_mod("Transformer"), _mod("Dense"), _mod("Normalize")]) is None
        assert _pipeline([_mod("CLIPModel")]) is None


class TestBatches:
    @settings(max_examples=100, deadline=None)
    @given(st.lists(st.integers(1, 256), min_size=1, max_size=80), st.integers(1, 32))
    def test_every_text_once_in_small_little_padded_batches(
        self, lengths: list[int], size: int
    ) -> None:
        order = sorted(range(len(lengths)), key=lengths.__getitem__)
        batches = _batches(order, lengths, size)
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        for b in batches:
            assert 1 <= len(b) <= size
            padded = len(b) * max(lengths[i] for i in b)
            assert len(b) == 1 or padded <= _PAD_SLACK * sum(lengths[i] for i in b)

    def test_a_long_request_is_not_padded_onto_its_short_parts(self) -> None:
        lengths = [70, 14, 12, 15, 9]
        order = sorted(range(5), key=lengths.__getitem__)
        assert [0] in _batches(order, lengths, 32)


class TestTop:
    @settings(max_examples=80, deadline=None)
    @given(
        st.integers(1, 40_000),
        st.integers(1, 60),
        st.sampled_from([0, 1, 3, 50]),
        st.integers(0, 2**32 - 1),
    )
    def test_equals_a_full_sort(self, n: int, k: int, levels: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        scores = rng.standard_normal(n).astype(np.float32)
        if levels:  # few distinct values: ties everywhere, also at the threshold
            scores = np.round(scores * levels) / levels
        expected = np.lexsort((np.arange(n), -scores))[:k]
        assert _top(scores, k).tolist() == expected.tolist()

    def test_large_array_with_ties_and_few_distinct_values(self) -> None:
        rng = np.random.default_rng(3)
        for scores in (
            np.zeros(80_000, dtype=np.float32),
            rng.integers(0, 3, size=80_000).astype(np.float32),
            rng.standard_normal(80_000).astype(np.float32),
        ):
            expected = np.lexsort((np.arange(len(scores)), -scores))[:30]
            assert _top(scores, 30).tolist() == expected.tolist()
