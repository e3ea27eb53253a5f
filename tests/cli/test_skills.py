"""``orchestra skills list|show NAME|search "query" [--catalog DIR]`` on any catalog folder."""

from __future__ import annotations

import re

from .conftest import ROOT, orchestra

AGENT_SKILLS = ROOT.parent / "shared" / "data" / "agent-skills"


def _names(table: str) -> list[str]:
    """The first column of a rich table's rows (skipping header and wrapped lines)."""
    out = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and cells[0] and cells[0] != "name":
            out.append(cells[0])
    return out


class TestList:
    def test_lists_every_skill_of_the_projects_catalog(self) -> None:
        p = orchestra("skills", "list")
        assert p.returncode == 0, p.stderr
        expected = sorted(d.name for d in (ROOT / "skills").iterdir() if (d / "SKILL.md").exists())
        assert f"{len(expected)} skills" in p.stdout
        assert sorted(_names(p.stdout)) == expected
        assert re.search(r"│ send_sms\s+│ messaging\.sms\s+│ 0\.0075\s+│ callable", p.stdout)

    def test_agent_skills_files_load_as_they_are(self) -> None:
        """A catalog written for other agents (only name and description) lists as
        instructions."""
        p = orchestra("skills", "list", "--catalog", str(AGENT_SKILLS))
        assert p.returncode == 0, p.stderr
        folders = sorted(d.name for d in AGENT_SKILLS.iterdir() if (d / "SKILL.md").exists())
        assert f"{len(folders)} skills" in p.stdout
        assert "│ internal-comms" in p.stdout and "instructions" in p.stdout

    def test_a_folder_that_is_not_a_catalog_is_a_clear_error(self, tmp_path) -> None:
        bad = tmp_path / "broken"
        bad.mkdir()
        (bad / "SKILL.md").write_text("---\nname: x\ndescription: d\nreliability: 1.5\n---\n")
        p = orchestra("skills", "list", "--catalog", str(tmp_path))
        assert p.returncode == 2
        assert "reliability" in p.stderr


class TestShow:
    def test_shows_a_skills_fields_and_schemas(self) -> None:
        p = orchestra("skills", "show", "send_sms")
        assert p.returncode == 0, p.stderr
        assert "Send a short text message (SMS) to a mobile phone number." in p.stdout
        assert re.search(r"capability\s+messaging\.sms", p.stdout)
        assert re.search(r"idempotent\s+False", p.stdout)
        assert "input schema" in p.stdout and '"phone"' in p.stdout and '"text"' in p.stdout

    def test_an_unknown_name_is_bad_input_with_suggestions(self) -> None:
        p = orchestra("skills", "show", "send_smss")
        assert p.returncode == 2
        assert "unknown skill 'send_smss' (did you mean: send_sms" in p.stderr


class TestSearch:
    def test_the_best_match_comes_first_bm25(self) -> None:
        p = orchestra(
            "skills", "search", "text message to a phone", "-k", "3", "--embedder", "none"
        )
        assert p.returncode == 0, p.stderr
        rows = [ln for ln in p.stdout.splitlines() if re.match(r"│ \d ", ln)]
        assert len(rows) == 3
        assert re.match(r"│ 1 │ send_sms\s", rows[0])

    def test_hybrid_search_on_the_default_embedder(self) -> None:
        p = orchestra("skills", "search", "refund a card payment through adyen", "-k", "2")
        assert p.returncode == 0, p.stderr
        rows = [ln for ln in p.stdout.splitlines() if re.match(r"│ \d ", ln)]
        assert re.match(r"│ 1 │ adyen_refund\s", rows[0]), p.stdout
