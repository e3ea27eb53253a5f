"""Persistence of the dense index: vectors keyed by the hash of the text they embed.

Embedding a catalog is the slow part of indexing (all-MiniLM-L6-v2 encodes about 30 tool
descriptions a second on two CPU cores), so every vector is saved under
``<cache_dir>/<embedder id>/`` and found again by the SHA-256 of its text: a rebuilt
index re-embeds only the skills whose text changed, and a skill that comes back (an
undone edit, a catalog shared by two projects) costs nothing.

The store is one ``store.npz`` file, written atomically (temporary file, then
``os.replace``): ``vectors`` (``float32``, one row per text) and ``keys`` (one hash per row).
The lexical index is cheap to rebuild and is not persisted.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import structlog

__all__ = ["EmbeddingStore", "default_cache_dir", "text_key"]

log = structlog.get_logger(__name__)


def default_cache_dir() -> Path:
    """``$ORCHESTRA_CACHE_DIR/retrieval``, else ``$XDG_CACHE_HOME/orchestra/retrieval``, else ``~/.cache/…``."""
    env = os.environ.get("ORCHESTRA_CACHE_DIR")
    if env:
        return Path(env) / "retrieval"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "orchestra" / "retrieval"


def text_key(text: str) -> str:
    """The key of one embedded text: its SHA-256, hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingStore:
    """Vectors of one embedder, keyed by text hash, persisted under a folder.

    ``embed(texts, encode)`` returns the vectors of ``texts`` in order, calling ``encode``
    only for the texts it has not seen, and saves what is new.
    """

    def __init__(self, cache_dir: Path | None, embedder_id: str) -> None:
        self.dir = None if cache_dir is None else Path(cache_dir) / _safe(embedder_id)
        self._rows: dict[str, int] = {}
        self._vectors: npt.NDArray[np.float32] | None = None
        #: How many texts the last :meth:`embed` call had to encode.
        self.last_encoded = 0
        self._load()

    def _load(self) -> None:
        if self.dir is None:
            return
        path = self.dir / "store.npz"
        if not path.is_file():
            return
        try:
            with np.load(path, allow_pickle=False) as data:
                keys = [str(k) for k in data["keys"]]
                vectors = data["vectors"]
        except (OSError, ValueError, KeyError) as exc:
            log.warning(
                "embedding cache unreadable; rebuilding it", path=str(self.dir), error=str(exc)
            )
            return
        if vectors.ndim != 2 or len(keys) != vectors.shape[0]:
            log.warning("embedding cache inconsistent; rebuilding it", path=str(self.dir))
            return
        self._vectors = vectors.astype(np.float32, copy=False)
        self._rows = {k: i for i, k in enumerate(keys)}

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, text: str) -> bool:
        return text_key(text) in self._rows

    def embed(
        self,
        texts: Sequence[str],
        encode: Callable[[list[str]], npt.NDArray[np.float32]],
        *,
        save: bool = True,
    ) -> npt.NDArray[np.float32]:
        """Vectors of ``texts`` (row ``i`` for ``texts[i]``), encoding only unseen texts."""
        keys = [text_key(t) for t in texts]
        missing: dict[str, str] = {}
        for k, t in zip(keys, texts, strict=True):
            if k not in self._rows and k not in missing:
                missing[k] = t
        self.last_encoded = len(missing)
        if missing:
            new = _encode_with_progress(list(missing.values()), encode, str(self.dir))
            if new.ndim != 2 or new.shape[0] != len(missing):
                raise ValueError(f"embedder returned shape {new.shape} for {len(missing)} texts")
            start = 0 if self._vectors is None else self._vectors.shape[0]
            self._vectors = new if self._vectors is None else np.vstack([self._vectors, new])
            for i, k in enumerate(missing):
                self._rows[k] = start + i
            if save:
                self.save()
        if self._vectors is None:
            return np.zeros((0, 0), dtype=np.float32)
        return self._vectors[[self._rows[k] for k in keys]]

    def prune(self, live_texts: Sequence[str]) -> int:
        """Forget every vector whose text is not in ``live_texts``; return how many went.

        Never automatic: one store serves every catalog embedded with the same model.
        """
        live = {text_key(t) for t in live_texts}
        order = [k for k in self._rows if k in live]
        dropped = len(self._rows) - len(order)
        if dropped and self._vectors is not None:
            self._vectors = self._vectors[[self._rows[k] for k in order]]
            self._rows = {k: i for i, k in enumerate(order)}
        return dropped

    def save(self) -> None:
        """Write the store atomically (a reader never sees half a file)."""
        if self.dir is None or self._vectors is None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        keys = sorted(self._rows, key=self._rows.__getitem__)
        key_array = np.array(keys, dtype="U64")
        vectors = self._vectors
        _atomic_write(
            self.dir / "store.npz", lambda f: np.savez(f, keys=key_array, vectors=vectors)
        )


_PROGRESS_FROM = 200  # texts: below this, encoding takes seconds and says nothing
_PROGRESS_EVERY_S = 10.0


def _encode_with_progress(
    texts: list[str], encode: Callable[[list[str]], npt.NDArray[np.float32]], where: str
) -> npt.NDArray[np.float32]:
    """``encode(texts)``; a large first build says what it does and logs its progress."""
    n = len(texts)
    if n < _PROGRESS_FROM:
        return np.asarray(encode(texts), dtype=np.float32)
    log.warning(
        f"dense retrieval: embedding {n} skill texts (once; the vectors are kept in {where}, "
        "so a rebuilt index embeds only the skills that changed)",
        total=n,
    )
    chunk = max(_PROGRESS_FROM // 2, -(-n // 20))
    parts = []
    t0 = shown = time.monotonic()
    for start in range(0, n, chunk):
        parts.append(np.asarray(encode(texts[start : start + chunk]), dtype=np.float32))
        done = min(n, start + chunk)
        now = time.monotonic()
        # visible (a warning) every _PROGRESS_EVERY_S of a long build, else at info level
        emit = log.warning if now - shown >= _PROGRESS_EVERY_S else log.info
        if emit is log.warning:
            shown = now
        emit(
            "dense retrieval: embedding",
            done=done,
            total=n,
            percent=round(100 * done / n),
            elapsed_s=round(time.monotonic() - t0, 1),
        )
    return np.vstack(parts)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", name)[:120] or "embedder"


def _atomic_write(path: Path, write: Callable[..., object]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
