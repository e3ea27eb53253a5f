"""The graphs a service may run, by name: an explicit registry, never an import path.

A request (``orchestra submit NAME``, ``POST /runs``) names a graph; only graphs registered
here can run.  A registry comes from graph files given to the driver
(``orchestra worker --runs --graph graphs/support_triage.py``: the graph's own name) and/or
a registry file (``ORCHESTRA_GRAPHS`` or ``--registry``), paths relative to the file::

    graphs:
      support-triage: graphs/support_triage.py
      refund:
        file: graphs/refund.py
        max_runs: 10          # at most 10 runs of this graph at once, fleet-wide

Graph files are code: only the operator who starts drivers names them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from orchestra.config import read_yaml_model
from orchestra.errors import ConfigError, GraphSpecError

if TYPE_CHECKING:
    from orchestra.graph import Graph

__all__ = ["GraphEntry", "GraphRegistry", "UnknownGraphError"]


class UnknownGraphError(GraphSpecError):
    """A request names a graph that no registry holds."""

    def __init__(self, name: str, known: list[str]):
        self.name = name
        self.known = sorted(known)
        super().__init__(
            f"no registered graph {name!r} (registered: {', '.join(self.known) or 'none'}); "
            f"register it with `orchestra worker --runs --graph FILE` or in the registry file "
            f"(ORCHESTRA_GRAPHS)"
        )


class GraphEntry(BaseModel):
    """One registered graph: its file and its fleet-wide limit of runs at once."""

    model_config = ConfigDict(extra="forbid")

    file: Path
    max_runs: int | None = Field(default=None, ge=1)


class _RegistryFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    graphs: dict[str, GraphEntry | Path] = Field(min_length=1)


class GraphRegistry:
    """Graph names → files (loaded once, on first use) and per-graph run limits."""

    def __init__(self) -> None:
        self._entries: dict[str, GraphEntry] = {}
        self._loaded: dict[str, Graph] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return sorted(self._entries)

    def limit(self, name: str) -> int | None:
        entry = self._entries.get(name)
        return entry.max_runs if entry is not None else None

    def register(self, name: str, file: Path | str, *, max_runs: int | None = None) -> None:
        """Register ``file`` under ``name`` (a second, different file for a name is an error)."""
        path = Path(file).resolve()
        old = self._entries.get(name)
        if old is not None and old.file != path:
            raise ConfigError(
                f"graph name {name!r} is registered twice: {old.file} and {path}", field="graphs"
            )
        self._entries[name] = GraphEntry(file=path, max_runs=max_runs)

    def add_file(self, file: Path | str, *, max_runs: int | None = None) -> str:
        """Load a graph file now and register it under the graph's own name; returns the name."""
        from orchestra.loaders import load_graph

        path = Path(file).resolve()
        graph = load_graph(path)
        self.register(graph.name, path, max_runs=max_runs)
        self._loaded[graph.name] = graph
        return graph.name

    def load_file(self, file: Path | str) -> None:
        """Register every graph a registry file names (see the module doc)."""
        p = Path(file)
        spec = read_yaml_model(p, _RegistryFile, what="graph registry file")
        for name, entry in spec.graphs.items():
            ge = entry if isinstance(entry, GraphEntry) else GraphEntry(file=entry)
            f = ge.file if ge.file.is_absolute() else p.parent / ge.file
            if not f.exists():
                raise ConfigError(f"no such graph file {f}", field=f"graphs.{name}", source=str(p))
            self.register(name, f, max_runs=ge.max_runs)

    def get(self, name: str) -> Graph:
        """The graph registered as ``name`` (loaded on first use)."""
        graph = self._loaded.get(name)
        if graph is not None:
            return graph
        entry = self._entries.get(name)
        if entry is None:
            raise UnknownGraphError(name, self.names())
        from orchestra.loaders import load_graph

        graph = load_graph(entry.file)
        self._loaded[name] = graph
        return graph

    @classmethod
    def from_sources(
        cls, files: list[Path] | None = None, registry_file: Path | str | None = None
    ) -> GraphRegistry:
        """A registry of graph ``files`` (each under its own name) and a registry file."""
        reg = cls()
        if registry_file:
            reg.load_file(registry_file)
        for f in files or []:
            reg.add_file(f)
        return reg
