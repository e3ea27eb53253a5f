"""``orchestra skills list|show|search``: look into a skill catalog folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["default_catalog", "skills_app"]

skills_app = typer.Typer(
    help="Browse and search a skill catalog (a folder of SKILL.md skills).", no_args_is_help=True
)


def default_catalog() -> Path | None:
    """The project's ``skills/`` folder, when it exists (next to the ``orchestra`` package)."""
    here = Path(__file__).resolve().parents[2] / "skills"
    if here.is_dir():
        return here
    cwd = Path.cwd() / "skills"
    return cwd if cwd.is_dir() else None


CatalogOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--catalog", "-c", help="catalog folder (repeatable); default: the project's skills/"
    ),
]


def _load(catalog: list[Path] | None) -> list[Any]:
    from rich.console import Console

    from orchestra.catalog import load_catalog
    from orchestra.errors import SkillSpecError

    roots = catalog or ([d] if (d := default_catalog()) else [])
    if not roots:
        raise typer.BadParameter(
            "no skills/ folder here; name one with --catalog DIR", param_hint="--catalog"
        )
    try:
        return load_catalog(roots)
    except SkillSpecError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _status(s: Any) -> str:
    from orchestra.catalog import INSTRUCTIONS_ONLY

    if s.fn is not None:
        return "callable"
    return "instructions" if INSTRUCTIONS_ONLY in s.tags else "no code"


def _first_sentence(text: str, limit: int = 90) -> str:
    line = " ".join(text.split())
    cut = line.find(". ")
    line = line[: cut + 1] if 0 < cut < limit else line
    return line if len(line) <= limit else line[: limit - 1] + "…"


@skills_app.command("list")
def list_skills(catalog: CatalogOpt = None) -> None:
    """List every skill of the catalog."""
    from rich.console import Console
    from rich.table import Table

    skills = _load(catalog)
    t = Table(title=f"{len(skills)} skills")
    for col in ("name", "capability", "cost", "kind", "description"):
        t.add_column(col, overflow="fold")
    for s in skills:
        t.add_row(
            s.name, s.capability or "-", f"{s.cost:g}", _status(s), _first_sentence(s.description)
        )
    Console().print(t)


@skills_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="skill name")], catalog: CatalogOpt = None
) -> None:
    """Show one skill: its numbers, its input and output schemas, its documentation."""
    import json

    from rich.console import Console
    from rich.markdown import Markdown
    from rich.panel import Panel
    from rich.syntax import Syntax
    from rich.table import Table

    from orchestra.errors import UnknownSkillError
    from orchestra.skills import SkillRegistry

    reg = SkillRegistry(_load(catalog))
    console = Console()
    try:
        s = reg.require(name)
    except UnknownSkillError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    t.add_row("description", s.description)
    for key in ("capability", "cost", "latency_ms", "reliability", "timeout_s", "idempotent"):
        t.add_row(key, str(getattr(s, key)))
    t.add_row("compensate", s.compensate or "-")
    t.add_row("tags", ", ".join(s.tags) or "-")
    t.add_row("kind", _status(s))
    t.add_row("source", s.source or "-")
    console.print(Panel(t, title=s.name))
    for label, model in (("input", s.input_model), ("output", s.output_model)):
        schema = json.dumps(model.model_json_schema(), indent=2)
        console.print(Panel(Syntax(schema, "json"), title=f"{label} schema"))
    if s.body:
        console.print(Panel(Markdown(s.body), title="documentation"))


@skills_app.command("search")
def search(
    query: Annotated[str, typer.Argument(help="what the step must do")],
    k: Annotated[int, typer.Option("-k", help="how many skills")] = 5,
    catalog: CatalogOpt = None,
    method: Annotated[str, typer.Option(help="hybrid | bm25 | dense")] = "hybrid",
    embedder: Annotated[
        str, typer.Option(help="'default', 'none' or a sentence-transformers model")
    ] = "default",
) -> None:
    """Find the skills that best fit a request (several intents are all covered)."""
    from rich.console import Console
    from rich.table import Table

    from orchestra.retrieval import Retriever

    if method not in ("hybrid", "bm25", "dense"):
        raise typer.BadParameter("choose hybrid, bm25 or dense", param_hint="--method")
    skills = _load(catalog)
    r = Retriever(skills, embedder=None if embedder.lower() == "none" else embedder)
    hits = r.search(query, k=k, method=method)  # type: ignore[arg-type]
    t = Table(title=f"{query!r}")
    for col in ("#", "skill", "score", "kind", "description"):
        t.add_column(col, justify="right" if col in ("#", "score") else "left", overflow="fold")
    for i, h in enumerate(hits, 1):
        t.add_row(
            str(i),
            h.skill.name,
            f"{h.score:.3f}",
            _status(h.skill),
            _first_sentence(h.skill.description),
        )
    Console().print(t)
