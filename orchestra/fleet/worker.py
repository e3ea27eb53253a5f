"""Starting a worker: load skills, pick queues, publish heartbeats, run the Celery worker.

``orchestra worker`` (:mod:`orchestra.cli.worker`) is a thin shell around :func:`serve`.
A worker hosts the skills it is given (catalog folders and/or the skills of Python graph
files) and consumes the queue of each, ``orchestra.skill.<name>``, plus ``orchestra``.

A fleet file (``workers/fleet.yaml``) names roles, so that every machine starts the same
command (``orchestra worker --fleet-file workers/fleet.yaml --role payments``)::

    roles:
      payments:
        graph: [graphs/refund.py]                     # host these graphs' skills...
        queues: [stripe_refund, razorpay_refund]      # ...or only some of them
        concurrency: 2
      catalog:
        skills: [skills]                              # catalog folders
        pool: threads
        concurrency: 8
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from orchestra.config import Settings, read_yaml_model
from orchestra.errors import ConfigError, SkillSpecError, did_you_mean
from orchestra.fleet.app import DEFAULT_QUEUE, QUEUE_PREFIX, create_app, queue_for
from orchestra.fleet.health import Heartbeat, worker_info
from orchestra.fleet.settings import fleet_settings
from orchestra.fleet.tasks import WorkerContext, configure_worker
from orchestra.logs import get_logger
from orchestra.skills import Skill

__all__ = ["FleetFile", "WorkerRole", "default_name", "load_skills", "select_skills", "serve"]

log = get_logger("orchestra.fleet.worker")


class WorkerRole(BaseModel):
    """One role of a fleet file: what a worker started with ``--role NAME`` hosts."""

    model_config = ConfigDict(extra="forbid")

    skills: list[str] = Field(default_factory=list)
    graph: list[str] = Field(default_factory=list)
    queues: list[str] = Field(default_factory=list)
    concurrency: int | None = Field(default=None, ge=1)
    pool: str = "prefork"


class FleetFile(BaseModel):
    """A fleet file: named worker roles (paths are relative to the working directory)."""

    model_config = ConfigDict(extra="forbid")

    roles: dict[str, WorkerRole] = Field(min_length=1)

    @classmethod
    def load(cls, path: Path | str) -> FleetFile:
        """Read ``path``; errors name the file and the field."""
        p = Path(path)
        fleet = read_yaml_model(p, cls, what="fleet file")
        # A fleet file is data: the code it names must lie in its own folder, the working
        # directory (its paths are relative to it) or ORCHESTRA_TRUSTED_PATHS.
        from orchestra.trust import check_trusted, trusted_roots

        roots = trusted_roots(p.parent, Path.cwd(), project_of=p.parent)
        for name, role in fleet.roles.items():
            for key in ("skills", "graph"):
                for i, path in enumerate(getattr(role, key)):
                    check_trusted(path, roots, field=f"roles.{name}.{key}[{i}]", source=str(p))
        return fleet

    def role(self, name: str) -> WorkerRole:
        if name not in self.roles:
            raise ConfigError(
                f"no role {name!r} (roles: {', '.join(sorted(self.roles))})", field="--role"
            )
        return self.roles[name]


def default_name() -> str:
    """A worker name unique on this machine: ``orchestra-<pid>@<host>``."""
    return f"orchestra-{os.getpid()}@{socket.gethostname()}"


def load_skills(
    skill_dirs: Iterable[Path | str] = (), graphs: Iterable[Path | str] = ()
) -> dict[str, Skill]:
    """The skills of catalog folders (``--skills``) and of graph files (``--graph``)."""
    found: dict[str, Skill] = {}
    dirs = [Path(d) for d in skill_dirs]
    if dirs:
        from orchestra.catalog import load_catalog

        for sk in load_catalog(dirs):
            found[sk.name] = sk
    for path in graphs:
        from orchestra.loaders import load_graph

        graph = load_graph(Path(path))
        for name in graph.skills:
            sk = graph.skills[name]
            if sk.milestone:
                continue
            if name in found and found[name] is not sk and found[name].source != sk.source:
                raise SkillSpecError(
                    f"two skills share this name: {found[name].source} and {sk.source}",
                    field="name",
                    source=str(path),
                )
            found[name] = sk
    return found


def select_skills(skills: dict[str, Skill], queues: Sequence[str]) -> dict[str, Skill]:
    """The skills named by ``queues`` (skill names or ``orchestra.skill.<name>``); all if empty."""
    if not queues:
        return dict(skills)
    out: dict[str, Skill] = {}
    for q in queues:
        if q == DEFAULT_QUEUE:
            continue
        name = q.removeprefix(QUEUE_PREFIX)
        if name not in skills:
            hint = did_you_mean(name, sorted(skills)) or " (this worker loaded none)"
            raise ConfigError(
                f"queue {q!r} names no skill this worker loaded{hint}", field="--queues"
            )
        out[name] = skills[name]
    return out


def _flush_telemetry() -> None:
    """Export the spans this process still holds and flush its log streams (warm shutdown)."""
    import sys

    try:
        from orchestra import tracing

        tracing.flush_tracing(5.0)
    except Exception as exc:  # never let telemetry stop a shutdown
        log.warning("could not flush spans at shutdown", error=str(exc))
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            continue


def serve(
    skills: dict[str, Skill],
    *,
    settings: Settings | None = None,
    queues: Sequence[str] = (),
    concurrency: int | None = None,
    pool: str = "prefork",
    loglevel: str = "WARNING",
    name: str | None = None,
) -> None:
    """Run a Celery worker hosting ``skills`` until it is told to stop (blocks).

    SIGTERM or Ctrl-C stop it warmly: the steps it is running finish, its heartbeat is
    removed and drivers route around it at once.
    """
    s = fleet_settings(settings)
    hosted = select_skills(skills, queues)
    if not hosted:
        raise ConfigError("this worker would host no skill: give --skills or --graph")
    too_slow = [k.name for k in hosted.values() if k.timeout_s >= s.visibility_timeout_s]
    if too_slow:
        raise ConfigError(
            f"skills {', '.join(too_slow)} may run longer than the visibility timeout "
            f"({s.visibility_timeout_s:g}s), so Redis would hand them to a second worker while "
            f"the first still runs them: raise ORCHESTRA_VISIBILITY_TIMEOUT_S",
            field="visibility_timeout_s",
        )
    worker_name = name or default_name()
    app = create_app(s)
    app.conf.worker_hijack_root_logger = True
    configure_worker(WorkerContext(name=worker_name, skills=hosted, settings=s))
    queue_names = [queue_for(k) for k in sorted(hosted)] + [DEFAULT_QUEUE]
    heartbeat = Heartbeat(
        s.health_url,
        worker_info(
            worker_name,
            skills=hosted,
            queues=queue_names,
            concurrency=concurrency or os.cpu_count() or 1,
            pool=pool,
        ),
        interval_s=s.heartbeat_s,
        ttl_s=s.heartbeat_ttl_s,
        probes={k: sk.probe for k, sk in hosted.items() if sk.probe is not None},
    )
    from celery import signals

    def on_ready(**_: Any) -> None:
        heartbeat.start()
        log.info("worker ready", worker=worker_name, skills=sorted(hosted))

    def on_shutdown(**_: Any) -> None:
        heartbeat.stop()
        _flush_telemetry()

    signals.worker_ready.connect(on_ready, weak=False)
    signals.worker_shutdown.connect(on_shutdown, weak=False)
    # A pool process exits without running atexit handlers: export its spans first.
    signals.worker_process_shutdown.connect(lambda **_: _flush_telemetry(), weak=False)
    from orchestra import tracing

    setup = getattr(tracing, "setup_tracing", None)
    if setup is not None:
        setup(service_name="orchestra-worker")
    if any("agent" in k.tags for k in hosted.values()):
        # litellm takes seconds to import: at start, before the pool forks, not in the first
        # model call of every child process
        from orchestra.models.backends import import_litellm

        import_litellm()
    argv = [
        "worker",
        "--hostname",
        worker_name,
        "--queues",
        ",".join(queue_names),
        "--pool",
        pool,
        "--loglevel",
        loglevel,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    app.worker_main(argv=argv)
