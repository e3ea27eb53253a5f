"""Under ``CI=true`` a skipped test fails the session, unless ``tests/skip_allowlist.txt`` names it.

A test that cannot run here (a service down, an extra not installed, a command missing)
calls :func:`missing`: on a laptop that is a skip with the reason; under ``CI=true`` it is a
failure, so a broken import or a service that did not start can never pass as "skipped".

The hooks below (registered by ``tests/conftest.py``) are the backstop for every other way a
test gets skipped (``skipif`` marks, ``importorskip``, a plain ``pytest.skip``): under
``CI=true`` the session's exit status is set to "tests failed" when any skip is not matched
by an entry of the allow-list.  Each entry is ``<node id pattern>  # <reason>`` (``fnmatch``
patterns that name a test file); an entry without a reason, or wide enough to silence more
than one file, is itself an error.  ``.ci/run`` exports ``CI=true``,
and ``tests/test_skip_policy.py`` checks that the hooks are active in every session and that
they fail a session with an unlisted skip.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

ALLOWLIST = Path("tests") / "skip_allowlist.txt"
_SESSION_SKIPS: list[tuple[str, str]] = []  # (node id, reason) of every skip of this session


def in_ci() -> bool:
    """Whether this run is CI (``CI`` set to a true value, as every CI service does)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on")


def missing(reason: str) -> NoReturn:
    """A service, extra or command this test needs is absent: skip here, fail under CI."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: what the tests need must be there; it does not skip)")
    pytest.skip(reason)


@dataclass(frozen=True)
class Entry:
    pattern: str
    reason: str


def load_allowlist(path: Path) -> list[Entry]:
    """Entries of the allow-list; ``ValueError`` naming the line when one has no reason."""
    if not path.exists():
        return []
    entries = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        pattern, sep, reason = text.partition("#")
        if not sep or not reason.strip() or not pattern.strip():
            raise ValueError(
                f"{path}:{n}: an allow-list entry is '<node id pattern>  # <reason>', got {text!r}"
            )
        pattern = pattern.strip()
        if not pattern.startswith("tests/") or ".py" not in pattern.split("*")[0]:
            raise ValueError(
                f"{path}:{n}: an allow-list entry names a test file ('tests/x/test_y.py::...'), "
                f"not a pattern as wide as {pattern!r}"
            )
        entries.append(Entry(pattern, reason.strip()))
    return entries


def unallowed(skips: list[tuple[str, str]], entries: list[Entry]) -> list[tuple[str, str]]:
    """The skips no entry matches."""
    return [
        (nodeid, why)
        for nodeid, why in skips
        if not any(fnmatch.fnmatchcase(nodeid, e.pattern) for e in entries)
    ]


def pytest_configure(config: pytest.Config) -> None:
    _SESSION_SKIPS.clear()


def _record(report: pytest.TestReport | pytest.CollectReport) -> None:
    longrepr = report.longrepr
    why = str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr)
    _SESSION_SKIPS.append((report.nodeid, why.removeprefix("Skipped: ")))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _record(report)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped:  # a whole module skipped at import (importorskip, allow_module_level)
        _record(report)


def _verdict(config: pytest.Config) -> tuple[list[tuple[str, str]], str | None]:
    try:
        entries = load_allowlist(config.rootpath / ALLOWLIST)
    except ValueError as exc:
        return [], str(exc)
    return unallowed(_SESSION_SKIPS, entries), None


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not in_ci():
        return
    bad, error = _verdict(session.config)
    if (bad or error) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not in_ci():
        return
    bad, error = _verdict(terminalreporter.config)
    if error:
        terminalreporter.write_sep("=", "skip policy: the allow-list is malformed", red=True)
        terminalreporter.write_line(error)
    if bad:
        terminalreporter.write_sep(
            "=", f"skip policy: {len(bad)} skipped test(s) not in {ALLOWLIST}", red=True
        )
        for nodeid, why in bad:
            terminalreporter.write_line(f"SKIPPED (not allowed under CI=true) {nodeid}: {why}")
    elif not error:
        terminalreporter.write_line(
            f"skip policy: {len(_SESSION_SKIPS)} skipped, all in {ALLOWLIST} (CI=true)"
        )
