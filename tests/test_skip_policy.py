"""Under CI=true a skipped test fails the session unless the allow-list names it, with a reason."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import skip_policy

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"

SKIPPING = """
import pytest

def test_runs():
    assert True

def test_needs_a_service():
    pytest.skip("no such service here")

@pytest.mark.skipif(True, reason="an extra is missing")
def test_marked():
    pass
"""

MISSING = """
from skip_policy import missing

def test_needs_redis():
    missing("no Redis at 127.0.0.1:1")
"""


def _project(tmp_path: Path, body: str, allow: str | None = None) -> Path:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "conftest.py").write_text((TESTS / "conftest.py").read_text())
    (tmp_path / "tests" / "test_x.py").write_text(body)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\ntestpaths = tests\nasyncio_default_fixture_loop_scope = function\n"
    )
    if allow is not None:
        (tmp_path / "tests" / "skip_allowlist.txt").write_text(allow)
    return tmp_path


def _pytest(project: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = str(TESTS)  # skip_policy itself, as the real conftest imports it
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


class TestUnderCI:
    def test_an_unlisted_skip_fails_the_session_and_is_named(self, tmp_path: Path) -> None:
        proc = _pytest(_project(tmp_path, SKIPPING), "true")
        assert proc.returncode == pytest.ExitCode.TESTS_FAILED, proc.stdout
        assert "skip policy: 2 skipped test(s) not in tests/skip_allowlist.txt" in proc.stdout
        assert "test_x.py::test_needs_a_service: no such service here" in proc.stdout
        assert "test_x.py::test_marked: an extra is missing" in proc.stdout

    def test_skips_named_by_the_allow_list_pass(self, tmp_path: Path) -> None:
        allow = (
            "# comment\n"
            "tests/test_x.py::test_needs_a_service  # not on CI machines\n"
            "tests/test_x.py::test_mark*  # documented reason\n"
        )
        proc = _pytest(_project(tmp_path, SKIPPING, allow), "true")
        assert proc.returncode == pytest.ExitCode.OK, proc.stdout
        assert "skip policy: 2 skipped, all in tests/skip_allowlist.txt" in proc.stdout

    def test_an_allow_list_entry_without_a_reason_fails(self, tmp_path: Path) -> None:
        allow = "tests/test_x.py::*\n"
        proc = _pytest(_project(tmp_path, SKIPPING, allow), "true")
        assert proc.returncode == pytest.ExitCode.TESTS_FAILED, proc.stdout
        assert "skip_allowlist.txt:1: an allow-list entry is" in proc.stdout

    @pytest.mark.parametrize("pattern", ["*", "tests/*", "test_x.py::*"])
    def test_an_allow_list_entry_wider_than_a_test_file_fails(
        self, tmp_path: Path, pattern: str
    ) -> None:
        """An entry cannot silence every skip: it must name a test file."""
        proc = _pytest(_project(tmp_path, SKIPPING, f"{pattern}  # everything\n"), "true")
        assert proc.returncode == pytest.ExitCode.TESTS_FAILED, proc.stdout
        assert "an allow-list entry names a test file" in proc.stdout

    def test_a_missing_service_is_a_failure_not_a_skip(self, tmp_path: Path) -> None:
        proc = _pytest(_project(tmp_path, MISSING), "true")
        assert proc.returncode == pytest.ExitCode.TESTS_FAILED, proc.stdout
        assert "1 failed" in proc.stdout
        assert "no Redis at 127.0.0.1:1 (CI=true" in proc.stdout


class TestOffCI:
    @pytest.mark.parametrize("ci", [None, "false"])
    def test_skips_are_skips_with_their_reason(self, tmp_path: Path, ci: str | None) -> None:
        proc = _pytest(_project(tmp_path, SKIPPING + MISSING.replace("from", "\nfrom")), ci)
        assert proc.returncode == pytest.ExitCode.OK, proc.stdout
        assert "1 passed, 3 skipped" in proc.stdout


class TestThisSuite:
    def test_the_policy_hooks_are_active_in_this_session(
        self, request: pytest.FixtureRequest
    ) -> None:
        """Removing the hooks from tests/conftest.py (or not loading it) fails this test."""
        hooks = request.config.pluginmanager.hook
        for name in ("pytest_runtest_logreport", "pytest_sessionfinish"):
            impls = [h.function for h in getattr(hooks, name).get_hookimpls()]
            assert getattr(skip_policy, name) in impls, name

    def test_every_allow_list_entry_has_a_reason(self) -> None:
        entries = skip_policy.load_allowlist(TESTS / "skip_allowlist.txt")
        assert all(e.reason for e in entries)

    def test_ci_sets_ci_true(self) -> None:
        """The CI entry point runs the suite under the policy whatever its runner exports."""
        assert "export CI=true" in (ROOT / ".ci" / "run").read_text().splitlines()
