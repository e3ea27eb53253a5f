"""A sentence-transformers model run on ONNX Runtime: the same vectors, three times faster.

Encoding the query is most of a retrieval's time: all-MiniLM-L6-v2 in PyTorch eager mode
takes 11-18 ms for one short request on one CPU core, mostly operator dispatch; the same
graph on ONNX Runtime takes about 4 ms.  :func:`load_onnx_encoder` exports the model's
transformer, pooling and normalization to one ONNX graph the first time it meets a model
(about two seconds, PyTorch's TorchScript exporter), checks that the graph, fed by the
``tokenizers`` library, gives the same vectors as the PyTorch model on a set of probe
texts, and keeps it under the cache folder.  Later processes find it there with
:func:`find_onnx_encoder` and never import PyTorch: loading takes a fraction of a second
and a few hundred MB less memory.  Nothing is downloaded.

Only models made of a Hugging Face transformer, mean or CLS pooling and an optional
normalization (the layout of all-MiniLM-L6-v2, e5, bge, gte…) are exported; anything else,
or a graph whose vectors differ, stays on PyTorch (``None`` comes back, with a log line).
The vectors agree with PyTorch's to about 1e-6, so the embedding cache is shared by both.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from orchestra.logs import get_logger

__all__ = [
    "OnnxEncoder",
    "embedding_dimension",
    "export_onnx_encoder",
    "find_onnx_encoder",
    "onnx_runtime_available",
]

log = get_logger(__name__)

#: Bumped whenever the exported graph changes, so stale exports are not reused.
EXPORT_VERSION = 2
#: Texts the exported graph must reproduce before it is trusted.
_PROBES = (
    "convert the amount",
    "Fetch the weather forecast for Paris, then email the receipt to the customer.",
    "x",
    "Déjà vu: ÜBER-fast naïve café résumé 東京 🚀",
    " ".join(["a long skill body with many words"] * 80),  # past max_seq_length: truncation
)
_MIN_COSINE = 0.9999


def onnx_runtime_available() -> bool:
    """Whether ``onnxruntime``, ``onnx`` (needed to export) and ``tokenizers`` import."""
    import importlib.util

    return all(
        importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx", "tokenizers")
    )


class OnnxEncoder:
    """A ``tokenizers`` tokenizer and ONNX Runtime sessions (one per thread budget)."""

    def __init__(self, folder: Path) -> None:
        """Load the export in ``folder`` (``model.onnx``, ``tokenizer.json``, ``meta.json``)."""
        from tokenizers import Tokenizer

        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        self.path = folder / "model.onnx"
        self.input_names: list[str] = list(meta["input_names"])
        self.max_length = int(meta["max_length"])
        self.dim = int(meta["dim"])
        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tok.enable_truncation(max_length=self.max_length)
        tok.no_padding()  # batches are padded here, each to its own longest text
        self.pad_id = tok.token_to_id(str(meta.get("pad_token") or "[PAD]")) or 0
        self.tokenizer = tok
        self._sessions: dict[int, Any] = {}
        self._session(1)  # fail here, not at the first query, when the file is unusable

    def _session(self, threads: int) -> Any:
        sess = self._sessions.get(threads)
        if sess is None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            # Do not busy-wait between calls: the process has other work (and neighbours).
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            sess = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
            self._sessions[threads] = sess
        return sess

    def encode(
        self, texts: Sequence[str], *, threads: int = 1, batch_size: int = 32
    ) -> npt.NDArray[np.float32]:
        """Unit vectors of ``texts``.

        Texts are tokenized first, sorted by length and cut into batches whose padding
        wastes little (a long request and its short sub-requests are not padded to one
        length: attention costs grow with the square of it).
        """
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        sess = self._session(max(1, threads))
        encs = self.tokenizer.encode_batch(list(texts))
        lengths = [len(e.ids) for e in encs]  # unpadded: the tokenizer does not pad
        order = sorted(range(len(texts)), key=lengths.__getitem__)
        for idx in _batches(order, lengths, batch_size):
            width = max(lengths[i] for i in idx)
            arrays = {
                name: np.zeros((len(idx), width), dtype=np.int64)
                for name in ("input_ids", "attention_mask", "token_type_ids")
            }
            arrays["input_ids"][:] = self.pad_id
            for row, i in enumerate(idx):
                e, n = encs[i], lengths[i]
                arrays["input_ids"][row, :n] = e.ids
                arrays["attention_mask"][row, :n] = 1
                arrays["token_type_ids"][row, :n] = e.type_ids
            feed = {name: arrays[name] for name in self.input_names}
            out[idx] = np.asarray(sess.run(None, feed)[0], dtype=np.float32)
        return out


#: A batch grows while its padded size stays within this factor of its real tokens.
_PAD_SLACK = 1.25


def _batches(order: list[int], lengths: list[int], size: int) -> list[list[int]]:
    """Cut ``order`` (ascending length) into batches of at most ``size`` with little padding."""
    out: list[list[int]] = []
    cur: list[int] = []
    total = 0
    for i in order:
        n = lengths[i]
        if cur and (len(cur) >= size or (len(cur) + 1) * n > _PAD_SLACK * (total + n)):
            out.append(cur)
            cur, total = [], 0
        cur.append(i)
        total += n
    if cur:
        out.append(cur)
    return out


def _pipeline(model: Any) -> tuple[str, bool] | None:
    """(pooling mode, normalize) when ``model`` is transformer → pooling [→ normalize]."""
    mods = list(model)
    names = [type(m).__name__ for m in mods]
    if len(mods) not in (2, 3) or names[0] != "Transformer" or names[1] != "Pooling":
        return None
    if len(mods) == 3 and names[2] != "Normalize":
        return None
    mode = getattr(mods[1], "pooling_mode", None)
    if mode not in ("mean", "cls"):
        return None
    if getattr(mods[1], "include_prompt", True) is not True:
        return None
    return str(mode), len(mods) == 3


def _export_folder(model_dir: Path, cache_dir: Path) -> Path:
    """``cache_dir/onnx/<model folder>-<fingerprint>``; the fingerprint names the model's
    files (name, size, mtime), the torch and onnx versions and the export version."""
    h = hashlib.sha256(f"v{EXPORT_VERSION}".encode())
    for dist in ("torch", "onnx"):
        try:
            h.update(f"|{dist} {importlib.metadata.version(dist)}".encode())
        except importlib.metadata.PackageNotFoundError:
            h.update(f"|{dist} -".encode())
    for p in sorted(model_dir.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"|{p.relative_to(model_dir)}|{st.st_size}|{st.st_mtime_ns}".encode())
    return cache_dir / "onnx" / f"{model_dir.name}-{h.hexdigest()[:16]}"


def find_onnx_encoder(model_dir: Path, cache_dir: Path) -> OnnxEncoder | None:
    """The export of the model in ``model_dir`` made earlier, if any and loadable."""
    if not onnx_runtime_available():
        return None
    folder = _export_folder(model_dir, cache_dir)
    if not (folder / "meta.json").is_file():
        return None
    try:
        return OnnxEncoder(folder)
    except Exception as exc:  # a damaged export: drop it, the caller exports afresh
        log.warning("ONNX export unusable; removing it", path=str(folder), error=str(exc)[:300])
        _remove(folder)
        return None


def _export(model: Any, pooling: str, dest: Path, input_names: list[str]) -> None:
    import torch

    auto = model[0].auto_model.eval()

    class _Graph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.auto = auto

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            kw = dict(zip(input_names, inputs, strict=True))
            hidden = self.auto(**kw).last_hidden_state
            if pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = kw["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=1)

    sample = model.tokenizer(["a sample request"], return_tensors="pt")
    args = tuple(sample[n] for n in input_names)
    axes: dict[str, dict[int, str]] = {n: {0: "batch", 1: "tokens"} for n in input_names}
    axes["embedding"] = {0: "batch"}
    with warnings.catch_warnings(), torch.inference_mode():
        # The TorchScript exporter warns that it is deprecated and about traced branches
        # on tensor values (shape checks that hold for every input here).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Graph(),
            args,
            str(dest),
            dynamo=False,
            input_names=input_names,
            output_names=["embedding"],
            dynamic_axes=axes,
            opset_version=17,
        )


def export_onnx_encoder(model: Any, model_dir: Path, cache_dir: Path) -> OnnxEncoder | None:
    """Export the sentence-transformers ``model`` (loaded from ``model_dir``), check it, keep it.

    ``None`` (and a log line) when the model's layout is not exportable, the exporter fails,
    or the graph's vectors differ from PyTorch's.
    """
    if not onnx_runtime_available():
        return None
    shape = _pipeline(model)
    tokenizer_file = model_dir / "tokenizer.json"
    if shape is None or not tokenizer_file.is_file():
        log.info("model not exportable to ONNX; encoding with PyTorch", model=str(model_dir))
        return None
    pooling, _normalize = shape  # the exported graph always normalizes (unit vectors)
    input_names = [
        n
        for n in model.tokenizer.model_input_names
        if n in ("input_ids", "attention_mask", "token_type_ids")
    ]
    folder = _export_folder(model_dir, cache_dir)
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Built in a temporary folder and renamed into place: a reader never sees half of it.
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".export-"))
    try:
        _export(model, pooling, tmp / "model.onnx", input_names)
        shutil.copyfile(tokenizer_file, tmp / "tokenizer.json")
        pad = getattr(model.tokenizer, "pad_token", None) or "[PAD]"
        meta = {
            "input_names": input_names,
            "max_length": int(model.max_seq_length or 512),
            "dim": embedding_dimension(model),
            "pad_token": str(pad),
            "pooling": pooling,
            "source": str(model_dir),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        enc = OnnxEncoder(tmp)
        ref = np.asarray(
            model.encode(list(_PROBES), convert_to_numpy=True, normalize_embeddings=True),
            dtype=np.float32,
        )
        cos = float(np.min(np.sum(ref * enc.encode(_PROBES), axis=1)))
        if cos < _MIN_COSINE:
            log.warning("ONNX graph disagrees with PyTorch; encoding with PyTorch", min_cosine=cos)
            _remove(tmp)
            return None
        try:
            os.replace(tmp, folder)
            enc.path = folder / "model.onnx"  # its open session already holds the graph
        except OSError:  # another process put its export there first: use that one
            _remove(tmp)
            enc = OnnxEncoder(folder)
    except Exception as exc:  # an exporter or runtime failure must not break retrieval
        log.warning("ONNX export failed; encoding with PyTorch", error=str(exc)[:300])
        _remove(tmp)
        return None
    log.info("exported the embedder to ONNX", path=str(folder), min_cosine=round(cos, 6))
    return enc


def embedding_dimension(model: Any) -> int:
    """The vector size of a sentence-transformers model (either name of its getter)."""
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(get() or 0)


def _remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
