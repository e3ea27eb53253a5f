"""Every executor passes the same tests: in process (local) and on real Celery workers.

An executor never raises for a tool's failure: the exception, the timeout, input the skill's
schema rejects and output its model rejects all come back as ``ok=False`` outcomes with a
typed error payload naming the skill.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fleet.conftest import Fleet, _fleet, load_test_skills

from orchestra.executors import Executor, LocalExecutor, StepTask

SK: dict[str, Any] = load_test_skills()


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with _fleet(tmp_path_factory.mktemp("executors")) as f:
        f.start(1, concurrency=2)
        yield f


@pytest.fixture(params=["local", pytest.param("celery", marks=pytest.mark.fleet)])
async def executor(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Executor]:
    if request.param == "local":
        monkeypatch.setenv("FLEET_SIDE_LOG", str(tmp_path / "side.log"))
        yield LocalExecutor()
        return
    from orchestra.fleet import CeleryExecutor

    fleet: Fleet = request.getfixturevalue("workers")
    ex = CeleryExecutor(fleet.settings)
    yield ex
    await ex.aclose()


def _task(skill: str, arguments: dict[str, Any], **kw: Any) -> StepTask:
    return StepTask(
        run_id=f"r{uuid.uuid4().hex[:8]}", step_id="s", skill=skill, arguments=arguments, **kw
    )


async def test_a_call_returns_the_validated_output(executor: Executor) -> None:
    out = await executor.execute(_task("typed_add", {"a": 2, "b": 3}), SK["typed_add"])
    assert out.ok and out.error is None
    assert out.output == {"sum": 5}
    assert out.duration_ms > 0


async def test_an_exception_is_an_outcome_naming_the_skill(executor: Executor) -> None:
    out = await executor.execute(_task("broken", {"token": "t1"}), SK["broken"])
    assert not out.ok and out.error is not None
    assert out.error.type == "ToolRaised"
    assert out.error.message == "broken raised ValueError: broken on t1"


async def test_input_the_schema_rejects_never_reaches_the_tool(executor: Executor) -> None:
    out = await executor.execute(_task("typed_add", {"a": "x", "b": 1}), SK["typed_add"])
    assert not out.ok and out.error is not None
    assert out.error.type == "ToolRaised"
    assert out.error.message.startswith(
        "input rejected by typed_add: a: Input should be a valid integer"
    )


async def test_output_the_model_rejects_is_malformed(executor: Executor) -> None:
    out = await executor.execute(_task("malformed", {"token": "t2"}), SK["malformed"])
    assert not out.ok and out.error is not None
    assert out.error.type == "MalformedOutput"
    assert out.error.message.startswith("malformed returned malformed output: sum:")


async def test_a_call_past_its_timeout_is_a_timeout(executor: Executor) -> None:
    task = _task("slow_write", {"token": uuid.uuid4().hex[:8], "delay": 2.5}, timeout_s=0.5)
    out = await executor.execute(task, SK["slow_write"])
    assert not out.ok and out.error is not None
    assert out.error.type == "ToolTimeout"
    assert out.error.message == "slow_write did not answer within 0.5s"


async def test_declared_cost_is_booked_on_success(executor: Executor) -> None:
    out = await executor.execute(
        _task("slow_write", {"token": uuid.uuid4().hex[:8]}), SK["slow_write"]
    )
    assert out.ok and out.cost_usd == pytest.approx(SK["slow_write"].cost)
