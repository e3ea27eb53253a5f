"""The README is trustworthy by construction: every fenced shell command, Python block and
YAML graph in it runs as written, from a fresh-clone layout (the tracked files copied to a
temporary folder, nothing else).

* Shell lines run one by one with bash in that folder, with ``.venv/bin`` first on PATH (as
  after ``source .venv/bin/activate``); ``export`` lines carry on to later lines and blocks.
  A line's exit code must be 0, or what its comment says (``# exit 4``).
* A line ending in ``&`` starts a long-lived process (a worker): it is stopped when its block
  ends.  Servers (``orchestra ui``...) run in the foreground for a bounded time, then are
  stopped; they pass if they did not fail before.
* "The services this machine runs" are private ones here: a ``redis-server`` on a free port
  (the ``ORCHESTRA_*_URL`` variables point at it), an OTLP receiver standing in for
  ``http://localhost:4318``, a private run store for the shared PostgreSQL database, and a
  free port for ``--port N``.
* A block that needs what a test machine does not have (docker, Jaeger, another machine) is
  preceded in the README by ``<!-- readme-test: skip: REASON -->``; single commands that must
  not run here are in :data:`SKIP_COMMANDS`, with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tracing.otlp import HttpReceiver

from orchestra.bench._procs import RedisServer, free_port

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

SKIP_COMMANDS = {
    "make test": "it runs this whole suite, this test included",
}
SERVERS = ("orchestra ui", "orchestra serve-api", "orchestra serve-model")
SERVER_S = 15.0  # how long a server must stay up
LOCAL_OTLP = "http://localhost:4318"
# The machine's PostgreSQL database `test` is shared by other suites (their runs, sealed with
# their keys): the README's lines get this test's private run store instead.
SHARED_PG = "postgresql://postgres@127.0.0.1:5432/test"

_FENCE = re.compile(
    r"(?:^[ ]*<!--\s*readme-test:\s*(?P<directive>.*?)\s*-->\s*\n)?"
    r"^(?P<indent>[ ]*)```(?P<lang>[\w-]*)\n(?P<body>.*?)^(?P=indent)```[ ]*$",
    re.M | re.S,
)


@dataclass
class Block:
    lang: str
    body: str
    line: int
    skip: str | None

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.lang})"


def blocks(text: str) -> list[Block]:
    """The fenced blocks of ``text`` (indented ones too), with their skip reason if any."""
    out = []
    for m in _FENCE.finditer(text):
        indent = len(m["indent"])
        body = "\n".join(line[indent:] for line in m["body"].splitlines())
        directive = (m["directive"] or "").strip()
        skip = directive.removeprefix("skip:").strip() if directive.startswith("skip") else None
        if directive and skip is None:
            raise AssertionError(f"unknown readme-test directive {directive!r}")
        out.append(Block(m["lang"], body, text.count("\n", 0, m.start("indent")) + 1, skip))
    return out


def commands(body: str) -> Iterator[tuple[str, int]]:
    """(command, expected exit code) for each shell line (continuations joined)."""
    joined = re.sub(r"\\\n\s*", " ", body)
    for raw in joined.splitlines():
        parts = re.split(r"(?:^|\s)#(?:\s|$)", raw, maxsplit=1)
        code = parts[0].strip()
        comment = parts[1] if len(parts) > 1 else ""
        if not code:
            continue
        m = re.search(r"\bexit (\d+)\b", comment)
        yield code, int(m[1]) if m else 0


# ------------------------------------------------------------------ fixtures


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A fresh-clone layout: the files git knows (tracked, or new and not ignored); the
    project's .venv linked in (installed already, so `make demo` must not reinstall)."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    dest = tmp_path / "orchestra"
    for name in filter(None, files):
        src = ROOT / os.fsdecode(name)
        if src.is_file():
            (dest / os.fsdecode(name)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / os.fsdecode(name))
    venv = ROOT / ".venv"
    if not (venv / "bin" / "orchestra").exists():
        pytest.fail(f"{venv} is not installed: run `make install-dev` first")
    (dest / ".venv").symlink_to(venv)
    for stamp in (".installed", ".installed-dev"):
        (venv / stamp).touch()
    os.utime(dest / "pyproject.toml", (0, 0))  # older than the stamps: nothing to reinstall
    return dest


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    server = RedisServer(
        workdir=tmp_path,
        missing="the README's fleet lines need redis-server (apt install redis-server)",
    )
    server.start()
    try:
        yield server.url
    finally:
        server.stop(signal.SIGTERM)


@pytest.fixture
def otlp() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()


# ------------------------------------------------------------------ running a block


class Shell:
    """Runs README lines as a user would, in one environment that ``export`` changes."""

    def __init__(self, cwd: Path, env: dict[str, str], otlp_url: str, logs: Path):
        self.cwd, self.env, self.otlp_url, self.logs = cwd, env, otlp_url, logs
        self.background: list[tuple[subprocess.Popen[bytes], str]] = []

    def _subst(self, command: str) -> str:
        command = command.replace(LOCAL_OTLP, self.otlp_url)
        command = command.replace(SHARED_PG, self.env["ORCHESTRA_CHECKPOINT_URL"])
        return re.sub(r"--port \d+", f"--port {free_port()}", command)

    def run(self, block: Block, command: str, expected: int) -> None:
        command = self._subst(command)
        where = f"{block}: {command}"
        m = re.fullmatch(r"(?:export )?([A-Za-z_]\w*)=(\S+|\$\(.*\))", command)
        if m:  # a variable for the lines after this one: bash works out its value
            p = subprocess.run(
                ["bash", "-c", f'{m[1]}={m[2]} && printf %s "${m[1]}"'],
                cwd=self.cwd,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert p.returncode == 0, f"{where}\nexit {p.returncode}\n{p.stdout}\n{p.stderr}"
            self.env[m[1]] = p.stdout
            return
        if command.endswith("&"):
            log = self.logs / f"bg-{len(self.background)}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    ["bash", "-c", command.rstrip("&").strip()],
                    cwd=self.cwd,
                    env=self.env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self.background.append((proc, str(log)))
            return
        if any(re.search(rf"(^|\s){re.escape(s)}(\s|$)", command) for s in SERVERS):
            self._server(where, command)
            return
        p = subprocess.run(
            ["bash", "-c", command],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert p.returncode == expected, (
            f"{where}\nexit {p.returncode}, expected {expected}\n"
            f"{p.stdout[-3000:]}\n{p.stderr[-3000:]}\n{self._background_logs()}"
        )

    def _server(self, where: str, command: str) -> None:
        proc = subprocess.Popen(
            ["bash", "-c", command],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=SERVER_S)
        except subprocess.TimeoutExpired:
            _stop(proc)
            return
        out = proc.stdout.read().decode() if proc.stdout else ""
        raise AssertionError(f"{where}: the server exited ({proc.returncode}) early\n{out}")

    def _background_logs(self) -> str:
        return "\n".join(
            f"--- {cmd}\n{Path(log).read_text(errors='replace')[-1500:]}"
            for proc, log in self.background
            for cmd in [" ".join(map(str, proc.args))]
        )

    def end_block(self) -> None:
        for proc, _ in self.background:
            _stop(proc)
        self.background.clear()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


# ------------------------------------------------------------------ the tests


def test_the_readme_has_one_section_per_title_and_only_known_block_kinds() -> None:
    text = README.read_text()
    titles = re.findall(r"^## (.+)$", text, re.M)
    assert len(titles) == len(set(titles)), f"a section appears twice: {titles}"
    for b in blocks(text):
        assert b.lang in ("bash", "python", "yaml", "text", "console", ""), b
        if b.lang in ("text", "console", ""):
            assert b.skip is None, f"{b}: not run anyway, no skip marker needed"


def test_every_readme_block_runs_as_written(
    checkout: Path, redis_url: str, otlp: HttpReceiver, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRA_", "OTEL_"))}
    env.update(
        {
            "PATH": f"{checkout / '.venv' / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
            "COLUMNS": "200",
            "ORCHESTRA_BROKER_URL": f"{redis_url}/0",
            "ORCHESTRA_RESULT_BACKEND": f"{redis_url}/1",
            "ORCHESTRA_HEALTH_URL": f"{redis_url}/2",
            "ORCHESTRA_CHECKPOINT_URL": f"sqlite:///{tmp_path}/runs.sqlite",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    shell = Shell(checkout, env, otlp.base_url, logs)
    ran: dict[str, int] = {"bash": 0, "python": 0, "yaml": 0}
    skipped: list[str] = []
    for block in blocks(README.read_text()):
        if block.skip is not None:
            skipped.append(f"{block}: {block.skip}")
            continue
        if block.lang == "python":
            script = checkout / f"readme_{block.line}.py"  # saved in the checkout, run there
            script.write_text(block.body)
            p = subprocess.run(
                [str(checkout / ".venv" / "bin" / "python"), str(script)],
                cwd=checkout,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert p.returncode == 0, f"{block}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
            if 'Graph("refund"' in block.body:  # the first graph: it completes, rerouted
                assert p.stdout.startswith("completed "), p.stdout
        elif block.lang == "yaml":
            from orchestra.loaders import load_graph

            spec = checkout / "graphs" / f"readme_{block.line}.yaml"
            spec.write_text(block.body)
            os.environ["ORCHESTRA_TRUSTED_PATHS"] = shell.env.get("ORCHESTRA_TRUSTED_PATHS", "")
            try:
                load_graph(spec).validate()
            finally:
                del os.environ["ORCHESTRA_TRUSTED_PATHS"]
        elif block.lang == "bash":
            try:
                for command, expected in commands(block.body):
                    skip = next((why for c, why in SKIP_COMMANDS.items() if command == c), None)
                    if skip:
                        skipped.append(f"{block}: {command}: {skip}")
                        continue
                    shell.run(block, command, expected)
            finally:
                shell.end_block()
        else:
            continue
        ran[block.lang] += 1
    assert ran["bash"] >= 4 and ran["python"] >= 1 and ran["yaml"] >= 1, ran
    # the fleet traced to "localhost:4318": both sides of the queue arrived
    spans = otlp.wait_for(lambda ss: {4, 5} <= {s.kind for s in ss}, timeout=30)
    assert any(s.name == "invoke_agent support-triage" for s in spans)
    print("skipped:", *skipped, sep="\n  ", file=sys.stderr)
