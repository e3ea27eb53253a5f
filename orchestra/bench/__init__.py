"""Benchmarks behind ``orchestra bench ...``.

Each module here exposes ``register(app: typer.Typer) -> None`` that adds its command to the
``bench`` group; keep their top-level imports light (heavy imports inside the command).
"""
