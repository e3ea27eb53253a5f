"""orchestra.models exports a curated, sorted public surface."""

from __future__ import annotations

import orchestra.models as models


def test_all_is_sorted_and_resolves() -> None:
    """__all__ is sorted and every name in it exists."""
    assert models.__all__ == sorted(models.__all__)
    for name in models.__all__:
        assert getattr(models, name) is not None


def test_router_pieces_are_exported() -> None:
    """The names a user needs to route models are importable from orchestra.models."""
    assert {
        "ModelRouter",
        "Backend",
        "InMemoryLedger",
        "RedisLedger",
        "VLLMServer",
        "ModelSettings",
    } <= set(models.__all__)
