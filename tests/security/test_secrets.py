"""Secrets in process: a ``SecretStr``/``SecretBytes`` reaches the skill intact, is sealed in
the run's state and checkpoints, needs a key, and keys rotate."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, SecretBytes, SecretStr

from orchestra import Graph, Runner, secrets, skill
from orchestra.checkpoint import open_checkpointer
from orchestra.errors import SecretKeyError

PASSWORD = "Hunter2-planted-pw-0091"
OLD_KEY = "3q2-7wM0h5VYkZ0m4rP3iJ8s1l8Qh1yq7w0mYx6mH2k="


class LoginIn(BaseModel):
    user: str
    password: SecretStr
    pin: SecretBytes | None = None


class Token(BaseModel):
    access: SecretStr


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    k = secrets.generate_key()
    monkeypatch.setenv(secrets.KEY_ENV, k)
    return k


seen: dict[str, object] = {}


@skill
def login(user: str, password: SecretStr, pin: SecretBytes | None = None) -> Token:
    seen["password"] = password.get_secret_value()
    seen["pin"] = pin.get_secret_value() if pin else None
    if password.get_secret_value() != PASSWORD:
        raise PermissionError(f"bad password {password.get_secret_value()}")
    return Token(access=SecretStr("acc-" + PASSWORD[::-1]))


@skill
def use_token(access: SecretStr) -> dict[str, str]:
    seen["access"] = access.get_secret_value()
    return {"ok": "yes"}


def graph() -> Graph:
    g = Graph("login", input_model=LoginIn)
    g.step("login", [login])
    g.step("use", [use_token], after=["login"])
    return g


async def test_secret_reaches_the_skill_intact_and_is_sealed_in_the_checkpoint(key: str) -> None:
    cp = open_checkpointer("memory://")
    assert cp is not None
    seen.clear()
    result = await Runner(checkpointer=cp).run(
        graph(), {"user": "ann", "password": PASSWORD, "pin": b"1234"}, run_id="r1"
    )
    assert result.status == "completed", result.reason
    assert seen == {"password": PASSWORD, "pin": b"1234", "access": "acc-" + PASSWORD[::-1]}
    state = await cp.load("r1")
    assert state is not None and secrets.is_sealed(state.input["password"])
    raw = str(cp._saver.storage) if hasattr(cp._saver, "storage") else ""  # type: ignore[union-attr]
    assert PASSWORD not in raw and PASSWORD not in result.model_dump_json()
    assert PASSWORD[::-1] not in result.model_dump_json()
    await cp.aclose()


async def test_a_run_that_needs_a_secret_and_has_no_key_fails_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(secrets.KEY_ENV, raising=False)
    with pytest.raises(SecretKeyError, match="ORCHESTRA_SECRET_KEY"):
        await Runner().run(graph(), {"user": "ann", "password": PASSWORD})


async def test_a_secret_the_skill_echoes_is_scrubbed_from_its_error(key: str) -> None:
    seen.clear()
    result = await Runner().run(graph(), {"user": "ann", "password": "not-the-pw-123"})
    assert result.status != "completed"
    assert "not-the-pw-123" not in result.model_dump_json()
    assert seen["password"] == "not-the-pw-123"


def test_keys_rotate(monkeypatch: pytest.MonkeyPatch) -> None:
    """A value sealed with the old key opens once the new key is put first; it is refused,
    with a message naming the variable, when the old key is dropped."""
    monkeypatch.setenv(secrets.KEY_ENV, OLD_KEY)
    sealed = secrets.seal(PASSWORD)
    record = secrets.seal_record('{"x": 1}')
    new = secrets.generate_key()
    monkeypatch.setenv(secrets.KEY_ENV, f"{new},{OLD_KEY}")
    assert secrets.unseal(sealed) == PASSWORD
    assert secrets.open_record(record) == '{"x": 1}'
    monkeypatch.setenv(secrets.KEY_ENV, new)
    with pytest.raises(SecretKeyError, match="ORCHESTRA_SECRET_KEY"):
        secrets.unseal(sealed)


def test_a_bad_key_is_named_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(secrets.KEY_ENV, "not-a-key-xyz")
    with pytest.raises(SecretKeyError) as info:
        secrets.seal("x")
    assert "not-a-key-xyz" not in str(info.value) and "key #1" in str(info.value)


async def test_a_yaml_graph_declares_a_secret_input(key: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``input: {password: secret}`` in a YAML graph seals the field like ``SecretStr``."""
    from orchestra.loaders import load_graph_yaml
    from orchestra.skills import SkillRegistry

    p = tmp_path / "g.yaml"
    p.write_text(
        "name: y\ninput: {user: str, password: secret}\n"
        "steps:\n  - id: login\n    candidates: [login]\n  - id: use\n"
        "    candidates: [use_token]\n    depends_on: [login]\n"
    )
    g = load_graph_yaml(p, skills=SkillRegistry([login, use_token]))
    cp = open_checkpointer("memory://")
    assert cp is not None
    seen.clear()
    result = await Runner(checkpointer=cp).run(g, {"user": "a", "password": PASSWORD}, run_id="y1")
    assert result.status == "completed" and seen["password"] == PASSWORD
    state = await cp.load("y1")
    assert state is not None and secrets.is_sealed(state.input["password"])
    await cp.aclose()


async def test_a_run_sealed_with_another_key_is_listed_not_fatal(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """`orchestra runs list`/`trace` over a store shared with another key: the foreign run is
    listed from its plain metadata (graph, status), the rest as usual."""
    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    monkeypatch.setenv(secrets.KEY_ENV, secrets.generate_key())
    cp = open_checkpointer(url)
    assert cp is not None
    seen.clear()
    await Runner(checkpointer=cp).run(
        graph(), {"user": "ann", "password": PASSWORD}, run_id="theirs"
    )
    await cp.aclose()
    monkeypatch.setenv(secrets.KEY_ENV, secrets.generate_key())  # another team's key
    cp = open_checkpointer(url)
    assert cp is not None
    try:
        listed = await cp.list_runs(10)
        assert [(s.run_id, s.graph, s.status) for s in listed] == [("theirs", "login", "completed")]
        assert listed[0].reason.startswith("sealed:") and PASSWORD not in listed[0].reason
        with pytest.raises(SecretKeyError):  # loading it in full still needs its key
            await cp.load("theirs")
    finally:
        await cp.aclose()


@skill
def login_backup(user: str, password: SecretStr, pin: SecretBytes | None = None) -> Token:
    seen["backup"] = password.get_secret_value()
    return Token(access=SecretStr("acc-" + password.get_secret_value()[::-1]))


async def test_an_executor_without_the_key_is_a_setup_fault_not_a_broken_tool(
    key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whoever runs ``login`` lacks the key (a worker started without it): the call fails
    with ``SecretKeyError`` naming the setting, once (no retry), the tool's circuit stays
    closed (it is not broken), and the run goes on with another candidate."""
    from orchestra import HealthBoard
    from orchestra.executors.base import StepOutcome, StepTask
    from orchestra.executors.local import LocalExecutor
    from orchestra.skills import Skill

    class KeylessForLogin(LocalExecutor):
        async def execute(self, task: StepTask, skill: Skill) -> StepOutcome:
            if skill.name != "login":
                return await super().execute(task, skill)
            with monkeypatch.context() as m:
                m.delenv(secrets.KEY_ENV)
                return await super().execute(task, skill)

    g = Graph("login2", input_model=LoginIn)
    g.step("login", [login, login_backup])
    g.step("use", [use_token], after=["login"])
    board = HealthBoard()
    seen.clear()
    result = await Runner(executor=KeylessForLogin(), health=board).run(
        g, {"user": "ann", "password": PASSWORD}
    )
    assert result.status == "completed", result.reason
    assert result.chosen["login"] == "login_backup" and seen["backup"] == PASSWORD
    fails = [d for d in result.decisions if d.kind == "fail"]
    assert [(d.skill, d.error_kind) for d in fails] == [("login", "config")]
    assert "SecretKeyError" in fails[0].reason and "ORCHESTRA_SECRET_KEY" in fails[0].reason
    assert board.status("login") == "closed"
    assert "password" not in seen and PASSWORD not in result.model_dump_json()
