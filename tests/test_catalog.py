"""Loading skill catalogs: SKILL.md + Python folders, Agent Skills files, errors naming file and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestra.catalog import (
    INSTRUCTIONS_ONLY,
    load_catalog,
    load_skill_dir,
    parse_skill_md,
    schema_to_model,
)
from orchestra.errors import SkillSpecError

ROOT = Path(__file__).resolve().parents[1]
AGENT_SKILLS = ROOT.parent / "shared" / "data" / "agent-skills"
BUNDLED = ROOT / "skills"


def write_skill(
    root: Path, folder: str, front: str, body: str = "Docs.", code: str | None = None
) -> Path:
    d = root / folder
    d.mkdir(parents=True)
    (d / "SKILL.md").write_text(f"---\n{textwrap.dedent(front).strip()}\n---\n\n{body}\n")
    if code is not None:
        (d / "skill.py").write_text(textwrap.dedent(code))
    return d


class TestAgentSkillsFormat:
    """Real Agent Skills files (front matter with name and description only) load as they are."""

    def test_all_eleven_real_agent_skills_load(self) -> None:
        """Every SKILL.md in ../shared/data/agent-skills loads, with its name, description and body."""
        skills = load_catalog(AGENT_SKILLS)
        assert len(skills) == 11
        names = {s.name for s in skills}
        assert {"algorithmic-art", "claude-api", "mcp-builder", "webapp-testing"} <= names
        for s in skills:
            folder = Path(s.source or "").parent
            assert folder.name == s.name
            assert len(s.description) > 40
            assert s.body.startswith("#") or len(s.body) > 100
            assert "---" not in s.body.splitlines()[0]

    def test_agent_skills_get_sensible_defaults(self) -> None:
        """No cost, perfect prior reliability, any input, and no implementation (tagged instructions-only)."""
        s = next(s for s in load_catalog(AGENT_SKILLS) if s.name == "theme-factory")
        assert s.cost == 0.0 and s.reliability == 1.0 and s.capability == ""
        assert s.fn is None
        assert INSTRUCTIONS_ONLY in s.tags
        assert s.parse_input({"anything": 1}).model_extra == {"anything": 1}

    async def test_running_an_instructions_only_skill_fails_clearly(self) -> None:
        """A run that selects a skill without code gets a SkillSpecError, not a silent no-op."""
        s = next(s for s in load_catalog(AGENT_SKILLS) if s.name == "internal-comms")
        with pytest.raises(SkillSpecError, match="no implementation"):
            await s.acall({})

    def test_multiline_block_description_is_kept(self) -> None:
        """claude-api's description is a YAML block scalar spanning several lines."""
        s = next(s for s in load_catalog(AGENT_SKILLS) if s.name == "claude-api")
        assert "TRIGGER" in s.description and "SKIP" in s.description


class TestOrchestraSkills:
    """Orchestra's own format: numbers, schemas and the Python that implements the skill."""

    def test_bundled_catalog_loads_and_every_skill_is_callable(self) -> None:
        skills = load_catalog(BUNDLED)
        assert len(skills) >= 4
        for s in skills:
            assert s.fn is not None, s.name
            assert s.capability and s.description
            assert INSTRUCTIONS_ONLY not in s.tags

    async def test_bundled_skill_runs_through_its_schemas(self) -> None:
        """The JSON-schema input becomes a pydantic model that validates; the output validates too."""
        s = {s.name: s for s in load_catalog(BUNDLED)}["currency_convert"]
        assert s.cost == pytest.approx(0.0001)
        assert s.input_model.model_fields["amount"].is_required()
        out = await s.acall({"amount": "100", "from_currency": "USD", "to_currency": "EUR"})
        assert s.parse_output(out) == {"amount": 92.0, "currency": "EUR", "rate": 0.92}
        with pytest.raises(ValidationError):
            s.parse_input({"amount": "a lot", "from_currency": "USD", "to_currency": "EUR"})

    async def test_entrypoint_names_the_function(self, tmp_path: Path) -> None:
        write_skill(
            tmp_path,
            "double",
            """
            name: double
            description: Double a number.
            entrypoint: twice
            """,
            code="def twice(x: int) -> int:\n    return 2 * x\n",
        )
        s = load_skill_dir(tmp_path / "double")
        assert s.parse_output(await s.acall({"x": 21})) == {"result": 42}
        assert list(s.input_model.model_fields) == [
            "x"
        ]  # from the signature: no input schema given

    def test_schema_types_defaults_and_enums(self) -> None:
        model = schema_to_model(
            {
                "type": "object",
                "properties": {
                    "n": {"type": "integer"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "mode": {"enum": ["fast", "slow"], "default": "fast"},
                    "opt": {"type": "number"},
                    "nested": {
                        "type": "object",
                        "properties": {"a": {"type": "boolean"}},
                        "required": ["a"],
                    },
                },
                "required": ["n", "nested"],
            },
            "M",
        )
        m = model.model_validate({"n": "3", "tags": ["x"], "nested": {"a": True}})
        assert m.model_dump() == {
            "n": 3,
            "tags": ["x"],
            "mode": "fast",
            "opt": None,
            "nested": {"a": True},
        }
        with pytest.raises(ValidationError):
            model.model_validate({"n": 1, "nested": {"a": True}, "mode": "medium"})

    def test_python_file_of_skill_functions_joins_the_catalog(self, tmp_path: Path) -> None:
        """Top-level *.py files contribute their module-level @skill objects."""
        (tmp_path / "tools.py").write_text(
            "from orchestra.skills import skill\n\n@skill(cost=0.5)\ndef ping(host: str) -> str:\n"
            '    """Ping a host."""\n    return host\n'
        )
        write_skill(tmp_path, "other", "name: other\ndescription: Another skill.")
        skills = {s.name: s for s in load_catalog(tmp_path)}
        assert set(skills) == {"ping", "other"}
        assert skills["ping"].cost == 0.5


class TestErrors:
    """Bad front matter raises SkillSpecError naming the file and the field."""

    @pytest.mark.parametrize(
        ("front", "field", "message"),
        [
            ("description: no name here", "name", "is required"),
            ("name: x\ndescription: ''", "description", "non-empty string"),
            ("name: x\ndescription: d\ncost: cheap", "cost", "must be a number"),
            ("name: x\ndescription: d\ncost: -1", "cost", ">= 0"),
            ("name: x\ndescription: d\nreliability: 1.5", "reliability", "(0, 1]"),
            ("name: x\ndescription: d\nidempotent: maybe", "idempotent", "true or false"),
            ("name: x\ndescription: d\ncots: 1", "cots", "did you mean 'cost'"),
            ("name: bad name!\ndescription: d", "name", "letter or digit"),
            ("name: x\ndescription: d\ntags: 3", "tags", "list of strings"),
            (
                "name: x\ndescription: d\ninput: {type: object, properties: {a: {type: complex}}}",
                "input.properties.a.type",
                "unsupported type",
            ),
            (
                "name: x\ndescription: d\ninput: {properties: {a: {}}, required: [b]}",
                "input.required",
                "b",
            ),
            ("name: x\ndescription: d\nentrypoint: go", "entrypoint", "no skill.py"),
            ("name: x\ndescription: [unclosed", "front matter", "YAML does not parse"),
            ("- just\n- a list", "front matter", "mapping"),
        ],
    )
    def test_bad_front_matter_names_file_and_field(
        self, tmp_path: Path, front: str, field: str, message: str
    ) -> None:
        write_skill(tmp_path, "bad", front)
        with pytest.raises(SkillSpecError) as err:
            load_catalog(tmp_path)
        assert err.value.field == field
        assert err.value.source == str(tmp_path / "bad" / "SKILL.md")
        assert message in str(err.value)
        assert str(tmp_path / "bad" / "SKILL.md") in str(err.value)

    def test_missing_front_matter(self, tmp_path: Path) -> None:
        (tmp_path / "SKILL.md").write_text("# Just markdown\n")
        with pytest.raises(SkillSpecError, match="no YAML front matter") as err:
            parse_skill_md(tmp_path / "SKILL.md")
        assert err.value.field == "front matter"

    def test_missing_entrypoint_function(self, tmp_path: Path) -> None:
        write_skill(tmp_path, "s", "name: s\ndescription: d", code="def other():\n    pass\n")
        with pytest.raises(SkillSpecError, match="defines no function 'run'") as err:
            load_catalog(tmp_path)
        assert err.value.field == "entrypoint"

    def test_implementation_that_fails_to_import(self, tmp_path: Path) -> None:
        write_skill(tmp_path, "s", "name: s\ndescription: d", code="raise RuntimeError('boom')\n")
        with pytest.raises(SkillSpecError, match="RuntimeError: boom") as err:
            load_catalog(tmp_path)
        assert err.value.field == "implementation"
        assert err.value.source == str(tmp_path / "s" / "skill.py")

    def test_duplicate_names_across_folders(self, tmp_path: Path) -> None:
        write_skill(tmp_path, "a", "name: same\ndescription: d")
        write_skill(tmp_path, "b", "name: same\ndescription: d")
        with pytest.raises(SkillSpecError, match="two skills share this name") as err:
            load_catalog(tmp_path)
        assert err.value.field == "name"

    def test_missing_catalog_folder(self, tmp_path: Path) -> None:
        with pytest.raises(SkillSpecError, match="no such catalog folder"):
            load_catalog(tmp_path / "nope")
