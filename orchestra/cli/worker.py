"""``orchestra worker``: serve skills to a fleet as a Celery worker."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from orchestra.cli.run import print_error
from orchestra.errors import SpecError

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command("worker")
    def worker_cmd(
        skills: Annotated[
            list[Path],
            typer.Option(
                "--skills",
                help="A skill catalog folder (or .py file of @skill) to host; repeatable",
            ),
        ] = [],  # noqa: B006
        graph: Annotated[
            list[Path],
            typer.Option(
                "--graph", help="Host the skills of this graph file (.py/.yaml); repeatable"
            ),
        ] = [],  # noqa: B006
        queues: Annotated[
            str | None,
            typer.Option(
                "--queues",
                "-Q",
                help="Comma-separated skills (or orchestra.skill.<name> queues) to serve; "
                "default: every skill loaded",
            ),
        ] = None,
        concurrency: Annotated[
            int | None,
            typer.Option("--concurrency", "-c", help="Steps run at once (default: CPU count)"),
        ] = None,
        pool: Annotated[
            str | None, typer.Option(help="Celery pool: prefork (default), threads or solo")
        ] = None,
        loglevel: Annotated[
            str | None,
            typer.Option("--loglevel", "-l", help="Log level (default: ORCHESTRA_LOG_LEVEL)"),
        ] = None,
        name: Annotated[
            str | None,
            typer.Option("--name", "-n", help="Worker name (default orchestra-PID@HOST)"),
        ] = None,
        fleet_file: Annotated[
            Path | None,
            typer.Option(
                "--fleet-file", help="A fleet file naming worker roles (workers/fleet.yaml)"
            ),
        ] = None,
        role: Annotated[
            str | None,
            typer.Option("--role", help="Serve this role of --fleet-file (options add to it)"),
        ] = None,
        runs: Annotated[
            bool,
            typer.Option(
                "--runs",
                help="Drive runs instead of serving steps: consume orchestra.runs and run the "
                "graphs of --graph/--registry (their steps go to step workers)",
            ),
        ] = False,
        registry: Annotated[
            Path | None,
            typer.Option(
                "--registry",
                help="With --runs: a graph registry file (names -> graph files, limits); "
                "default ORCHESTRA_GRAPHS",
            ),
        ] = None,
        runs_concurrency: Annotated[
            int | None,
            typer.Option(
                "--runs-concurrency",
                help="With --runs: runs driven at once by this worker (default "
                "ORCHESTRA_RUNS_CONCURRENCY, 50)",
            ),
        ] = None,
        fail: Annotated[
            list[str] | None,
            typer.Option(
                "--fail",
                help="Make a hosted skill misbehave here: NAME[:exception|timeout|malformed] (repeatable)",
            ),
        ] = None,
    ) -> None:
        """Serve skills to a fleet: run their steps as they arrive on their queues.

        Broker, result store and health store come from ORCHESTRA_BROKER_URL,
        ORCHESTRA_RESULT_BACKEND and ORCHESTRA_HEALTH_URL.  SIGTERM stops it warmly.
        """
        from orchestra.fleet.worker import FleetFile, WorkerRole, load_skills, serve
        from orchestra.logs import configure_logging_from_env

        console = Console(stderr=True)
        try:
            level = configure_logging_from_env(loglevel)
            if runs:
                _serve_runs(console, graph, registry, runs_concurrency, level, name)
                return
            if (fleet_file is None) != (role is None):
                raise SpecError("--fleet-file and --role go together")
            r = FleetFile.load(fleet_file).role(role) if fleet_file and role else WorkerRole()
            loaded = load_skills([*map(Path, r.skills), *skills], [*map(Path, r.graph), *graph])
            if not loaded:
                raise SpecError("nothing to host: give --skills DIR, --graph FILE or --role")
            from orchestra.errors import UnknownSkillError
            from orchestra.testing import faults_from, misbehave

            try:
                faults = faults_from(fail or [])
            except ValueError as exc:
                raise SpecError(str(exc), field="--fail") from None
            for fname, kind in faults.items():
                if fname not in loaded:
                    raise UnknownSkillError(fname, field="--fail", known=list(loaded))
                loaded[fname] = misbehave(loaded[fname], kind)
            wanted = [q.strip() for q in (queues or "").split(",") if q.strip()] or r.queues
            serve(
                loaded,
                queues=wanted,
                concurrency=concurrency or r.concurrency,
                pool=pool or r.pool,
                loglevel=level,
                name=name,
            )
        except SpecError as exc:
            print_error(console, exc)
            raise typer.Exit(2) from None


def _serve_runs(
    console: Console,
    graphs: list[Path],
    registry_file: Path | None,
    concurrency: int | None,
    loglevel: str,
    name: str | None,
) -> None:
    from orchestra.fleet import fleet_settings
    from orchestra.fleet.worker import default_name
    from orchestra.service.driver import serve_driver
    from orchestra.service.registry import GraphRegistry

    s = fleet_settings()
    try:
        reg = GraphRegistry.from_sources(graphs, registry_file or s.graphs)
        for n in reg.names():  # compile once now: the first run does not pay for it
            reg.get(n).compile()
        serve_driver(
            reg,
            settings=s,
            name=name or default_name().replace("orchestra-", "driver-", 1),
            concurrency=concurrency,
            loglevel=loglevel,
        )
    except SpecError as exc:
        print_error(console, exc)
        raise typer.Exit(2) from None
