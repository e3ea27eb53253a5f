"""A YAML graph (or a fleet file) is data: the catalogs and skill code it names must lie in
its own directory tree or under ``ORCHESTRA_TRUSTED_PATHS``; anything else is refused with
:class:`UntrustedPathError` before a single file of it is imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestra.errors import UntrustedPathError
from orchestra.loaders import load_graph

ROOT = Path(__file__).resolve().parents[2]

SKILL_MD = """---
name: evil
description: Looks harmless.
---
"""


def plant(folder: Path, marker: Path) -> Path:
    """A catalog whose skill.py, when imported, writes ``marker``."""
    d = folder / "evil"
    d.mkdir(parents=True)
    (d / "SKILL.md").write_text(SKILL_MD)
    (d / "skill.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n\n"
        "def run(**kw):\n    return {}\n"
    )
    return folder


def yaml_graph(path: Path, catalog: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"name: g\ncatalog: {catalog}\nsteps:\n  - id: s\n    candidates: [evil]\n")
    return path


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path, Path]:
    """``outside/`` holds a catalog; ``project/graphs/`` holds the graph."""
    marker = tmp_path / "imported.txt"
    outside = plant(tmp_path / "outside" / "catalog", marker)
    project = tmp_path / "project"
    (project / "graphs").mkdir(parents=True)
    return marker, outside, project


class TestYamlCatalogs:
    def test_relative_path_out_of_the_tree_is_refused_before_import(
        self, layout: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        marker, _, project = layout
        monkeypatch.delenv("ORCHESTRA_TRUSTED_PATHS", raising=False)
        g = yaml_graph(project / "graphs" / "g.yaml", "../../outside/catalog")
        with pytest.raises(UntrustedPathError, match="catalog") as info:
            load_graph(g)
        assert "ORCHESTRA_TRUSTED_PATHS" in str(info.value)
        assert not marker.exists(), "the untrusted skill.py was imported"

    def test_absolute_path_is_refused_before_import(
        self, layout: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        marker, outside, project = layout
        monkeypatch.delenv("ORCHESTRA_TRUSTED_PATHS", raising=False)
        g = yaml_graph(project / "graphs" / "g.yaml", str(outside))
        with pytest.raises(UntrustedPathError):
            load_graph(g)
        assert not marker.exists()

    def test_symlink_inside_the_tree_pointing_out_is_refused(
        self, layout: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        marker, outside, project = layout
        monkeypatch.delenv("ORCHESTRA_TRUSTED_PATHS", raising=False)
        (project / "graphs" / "cat").symlink_to(outside, target_is_directory=True)
        g = yaml_graph(project / "graphs" / "g.yaml", "cat")
        with pytest.raises(UntrustedPathError):
            load_graph(g)
        assert not marker.exists()

    def test_catalog_inside_the_tree_loads(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("ORCHESTRA_TRUSTED_PATHS", raising=False)
        marker = tmp_path / "imported.txt"
        plant(tmp_path / "project" / "graphs" / "skills", marker)
        g = load_graph(yaml_graph(tmp_path / "project" / "graphs" / "g.yaml", "skills"))
        assert "evil" in g.skills and marker.exists()

    def test_trusted_paths_let_an_outside_catalog_in(
        self, layout: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        marker, outside, project = layout
        monkeypatch.setenv("ORCHESTRA_TRUSTED_PATHS", str(outside.parent))
        g = load_graph(yaml_graph(project / "graphs" / "g.yaml", str(outside)))
        assert "evil" in g.skills and marker.exists()


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRA_")}
    base.update({"COLUMNS": "200", "ORCHESTRA_CHECKPOINT_URL": "none", **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "orchestra", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=base,
    )


class TestCommandLine:
    def test_orchestra_run_refuses_an_outside_catalog_with_exit_2(
        self, layout: tuple[Path, Path, Path]
    ) -> None:
        marker, outside, project = layout
        g = yaml_graph(project / "graphs" / "g.yaml", str(outside))
        p = cli("run", str(g))
        assert p.returncode == 2, p.stdout + p.stderr
        assert "ORCHESTRA_TRUSTED_PATHS" in p.stdout + p.stderr
        assert not marker.exists()

    def test_worker_graph_naming_an_outside_catalog_is_refused(
        self, layout: tuple[Path, Path, Path]
    ) -> None:
        marker, _, project = layout
        g = yaml_graph(project / "graphs" / "g.yaml", "../../outside/catalog")
        p = cli("worker", "--graph", str(g))
        assert p.returncode == 2, p.stdout + p.stderr
        assert "ORCHESTRA_TRUSTED_PATHS" in p.stdout + p.stderr
        assert not marker.exists()

    def test_fleet_file_naming_outside_skills_is_refused(
        self, layout: tuple[Path, Path, Path]
    ) -> None:
        marker, outside, project = layout
        fleet = project / "workers" / "fleet.yaml"
        fleet.parent.mkdir()
        fleet.write_text(f"roles:\n  r:\n    skills: [{outside}]\n")
        p = cli("worker", "--fleet-file", str(fleet), "--role", "r")
        assert p.returncode == 2, p.stdout + p.stderr
        assert "ORCHESTRA_TRUSTED_PATHS" in p.stdout + p.stderr
        assert not marker.exists()
