"""The public surface is curated: `__all__` is sorted and lists exactly the public names."""

from __future__ import annotations

import orchestra


def test_all_is_sorted_and_complete() -> None:
    assert orchestra.__all__ == sorted(orchestra.__all__)
    public = {n for n in vars(orchestra) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(orchestra, n)).__name__ == "module"}
    assert set(orchestra.__all__) == public - modules
