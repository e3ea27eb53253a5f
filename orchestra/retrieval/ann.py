"""An inverted-file (IVF) index for large catalogs, in plain numpy.

Scanning 80,000 vectors of 384 floats costs 10-15 ms per query on two cores; an IVF index
cuts that to well under a millisecond.  Vectors are clustered by spherical k-means into
cells; a query is compared with the cell centroids, and exactly only with the vectors of
its ``n_probe`` nearest cells.  Every other vector gets its cell centroid's score as an
estimate, so the score distribution the fusion step standardizes against stays whole.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["IVFIndex"]

FloatArray = npt.NDArray[np.float32]


class IVFIndex:
    """Cells of unit vectors around k-means centroids; exact scores inside probed cells."""

    def __init__(
        self,
        vectors: FloatArray,
        *,
        n_lists: int | None = None,
        n_probe: int | None = None,
        iterations: int = 8,
        train_size: int = 32_768,
        seed: int = 0,
    ) -> None:
        n = vectors.shape[0]
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.n_lists = max(1, min(n, n_lists or int(2 * math.sqrt(n))))
        self.n_probe = max(1, min(self.n_lists, n_probe or max(8, self.n_lists // 16)))
        rng = np.random.default_rng(seed)
        train = self.vectors[rng.choice(n, size=min(n, train_size), replace=False)]
        centroids = train[rng.choice(train.shape[0], size=self.n_lists, replace=False)].copy()
        for _ in range(iterations):
            assign = np.argmax(train @ centroids.T, axis=1)
            sums = np.zeros_like(centroids)
            np.add.at(sums, assign, train)
            counts = np.bincount(assign, minlength=self.n_lists)
            empty = counts == 0
            sums[empty] = train[rng.choice(train.shape[0], size=int(empty.sum()), replace=False)]
            norms = np.linalg.norm(sums, axis=1, keepdims=True)
            norms[norms == 0] = 1.0
            centroids = (sums / norms).astype(np.float32)
        self.centroids = centroids
        assign = np.empty(n, dtype=np.int64)
        for start in range(0, n, 16_384):
            block = self.vectors[start : start + 16_384]
            assign[start : start + block.shape[0]] = np.argmax(block @ centroids.T, axis=1)
        self.assign = assign
        order = np.argsort(assign, kind="stable")
        self._order = order
        bounds = np.searchsorted(assign[order], np.arange(self.n_lists + 1))
        self._bounds = bounds
        # Vectors stored cell by cell so a probe reads contiguous memory.
        self._sorted = self.vectors[order]

    def scores(self, queries: FloatArray) -> FloatArray:
        """Estimated cosine of every vector to each query, shape ``(len(queries), n)``."""
        cent = queries @ self.centroids.T  # (m, n_lists)
        # Centroid estimate everywhere (row-major: fancy indexing alone would hand back a
        # column-major array, which makes every later row reduction several times slower).
        out: FloatArray = np.ascontiguousarray(np.take(cent, self.assign, axis=1), np.float32)
        probe = np.argpartition(-cent, self.n_probe - 1, axis=1)[:, : self.n_probe]
        for row in range(queries.shape[0]):
            for c in probe[row]:
                lo, hi = self._bounds[c], self._bounds[c + 1]
                if hi > lo:
                    out[row, self._order[lo:hi]] = self._sorted[lo:hi] @ queries[row]
        return out
