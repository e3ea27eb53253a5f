"""Trust boundaries: which code a data file may make Orchestra import.

A YAML/JSON graph or a fleet file is **data**: whoever can hand one to Orchestra must not be
able to run code with it.  So the catalogs and skill files such a file names must resolve
(symlinks followed) inside a trusted root:

* the file's own directory tree (a fleet file, whose paths are relative to the working
  directory, also the working directory's tree);
* a folder listed in ``ORCHESTRA_TRUSTED_PATHS`` (``os.pathsep``-separated, like ``PATH``).

Anything else raises :class:`~orchestra.errors.UntrustedPathError` before a file is read.
A Python graph file, or a catalog named on the command line (``--skills``), is **code**: the
person who names it trusts it, as they would ``python graph.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from orchestra.errors import UntrustedPathError

__all__ = ["TRUSTED_PATHS_ENV", "check_trusted", "is_trusted", "trusted_roots"]

TRUSTED_PATHS_ENV = "ORCHESTRA_TRUSTED_PATHS"


def trusted_roots(*bases: Path | str) -> list[Path]:
    """``bases`` (resolved) and every folder of ``ORCHESTRA_TRUSTED_PATHS``."""
    roots = [Path(b).resolve() for b in bases]
    for part in os.environ.get(TRUSTED_PATHS_ENV, "").split(os.pathsep):
        if part.strip():
            roots.append(Path(part.strip()).expanduser().resolve())
    return roots


def is_trusted(path: Path | str, roots: Iterable[Path]) -> bool:
    """Whether ``path`` (resolved, symlinks followed) lies inside one of ``roots``."""
    resolved = Path(path).resolve()
    return any(resolved == r or r in resolved.parents for r in roots)


def check_trusted(
    path: Path | str,
    roots: Sequence[Path],
    *,
    field: str | None = None,
    source: str | None = None,
) -> Path:
    """``path`` resolved, or :class:`UntrustedPathError` when it lies outside ``roots``."""
    resolved = Path(path).resolve()
    if is_trusted(resolved, roots):
        return resolved
    shown = ", ".join(str(r) for r in roots)
    raise UntrustedPathError(
        f"{str(path)!r} resolves to {resolved}, outside the trusted folders ({shown}); a data "
        f"file may only name code inside its own folder: move it there, or add its folder to "
        f"{TRUSTED_PATHS_ENV}",
        field=field,
        source=source,
    )
