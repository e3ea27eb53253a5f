"""Trust boundaries: which code a data file may make Orchestra import.

A YAML/JSON graph or a fleet file is **data**: whoever can hand one to Orchestra must not be
able to run code with it.  So the catalogs and skill files such a file names must resolve
(symlinks followed) inside a trusted root:

* the file's own directory tree (a fleet file, whose paths are relative to the working
  directory, also the working directory's tree);
* a folder listed in ``ORCHESTRA_TRUSTED_PATHS`` (``os.pathsep``-separated, like ``PATH``);
* a folder the project around the file declares: the nearest ``pyproject.toml`` above it may
  list ``[tool.orchestra] trusted-paths = ["skills"]`` (relative to itself). Whoever can write
  the project's ``pyproject.toml`` can write its code already; a data file dropped into the
  project cannot widen what it may name.

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


def trusted_roots(*bases: Path | str, project_of: Path | str | None = None) -> list[Path]:
    """``bases`` (resolved), every folder of ``ORCHESTRA_TRUSTED_PATHS``, and the folders the
    project around ``project_of`` declares (:func:`project_trusted_paths`)."""
    roots = [Path(b).resolve() for b in bases]
    for part in os.environ.get(TRUSTED_PATHS_ENV, "").split(os.pathsep):
        if part.strip():
            roots.append(Path(part.strip()).expanduser().resolve())
    if project_of is not None:
        roots.extend(project_trusted_paths(project_of))
    return roots


def project_trusted_paths(start: Path | str) -> list[Path]:
    """The ``[tool.orchestra] trusted-paths`` of the nearest ``pyproject.toml`` at or above
    ``start`` (resolved relative to it); ``[]`` when there is none."""
    import tomllib

    here = Path(start).resolve()
    for folder in (here, *here.parents):
        pyproject = folder / "pyproject.toml"
        if not pyproject.is_file():
            continue
        try:
            conf = tomllib.loads(pyproject.read_text())
        except (OSError, ValueError) as exc:
            raise UntrustedPathError(
                f"{pyproject}: cannot read [tool.orchestra] trusted-paths: {exc}"
            ) from exc
        paths = conf.get("tool", {}).get("orchestra", {}).get("trusted-paths", [])
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise UntrustedPathError(
                f"{pyproject}: [tool.orchestra] trusted-paths must be a list of folder names"
            )
        return [(folder / p).resolve() for p in paths]
    return []


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
        f"file may only name code inside its own folder: move it there, add its folder to "
        f"{TRUSTED_PATHS_ENV}, or list it in the project's pyproject.toml under "
        f"[tool.orchestra] trusted-paths",
        field=field,
        source=source,
    )
