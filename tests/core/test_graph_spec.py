"""Invalid graphs fail at load time with a typed error naming the offending field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from orchestra import Graph, GraphSpecError, SkillSpecError, Step, UnknownSkillError, skill
from orchestra.loaders import load_graph, load_graph_yaml
from orchestra.skills import SkillRegistry


class Amount(BaseModel):
    amount: float


class Customer(BaseModel):
    customer_id: str


@skill
def lookup(customer_id: str) -> Customer:
    return Customer(customer_id=customer_id)


@skill
def charge(amount: float) -> Amount:
    return Amount(amount=amount)


@skill
def notify(message: str) -> str:
    return message


class In(BaseModel):
    customer_id: str


def test_cycle_is_rejected_with_the_cycle_named() -> None:
    g = Graph("g", skills=[lookup, charge])
    g.step("a", [lookup], after="b")
    g.step("b", [charge], after="a")
    with pytest.raises(GraphSpecError, match=r"cycle: (a -> b -> a|b -> a -> b)") as e:
        g.validate()
    assert e.value.field == "steps"


def test_unknown_skill_names_the_candidate_and_suggests() -> None:
    g = Graph("g", skills=[lookup, charge])
    g.step("a", ["lookpu"])
    with pytest.raises(UnknownSkillError, match="did you mean: lookup") as e:
        g.validate()
    assert e.value.field == "steps[0].candidates[0]"


def test_unknown_dependency() -> None:
    g = Graph("g", skills=[lookup])
    g.step("a", [lookup], after="nope")
    with pytest.raises(GraphSpecError) as e:
        g.validate()
    assert e.value.field == "steps[0].after[0]"


def test_missing_input_is_caught_when_the_graph_declares_its_input() -> None:
    g = Graph("g", skills=[lookup, notify], input_model=In)
    g.step("a", [lookup])
    g.step("b", [notify], after="a")  # needs `message`: nobody provides it
    with pytest.raises(GraphSpecError, match="needs input 'message'") as e:
        g.validate()
    assert e.value.field == "steps[1].candidates[0]"


def test_input_mapping_to_a_missing_field_is_rejected() -> None:
    g = Graph("g", skills=[charge, notify], input_model=Amount)
    g.step("a", [charge])
    g.step("b", [notify], after="a", inputs={"message": "a.receipt"})
    with pytest.raises(GraphSpecError, match="returns no field 'receipt'") as e:
        g.validate()
    assert e.value.field == "steps[1].inputs.message"


def test_bad_cost_is_rejected_on_the_skill() -> None:
    with pytest.raises(SkillSpecError) as e:
        skill(cost=-1)(lambda x: x)
    assert e.value.field == "cost"


def test_bad_transition_cost() -> None:
    g = Graph("g", skills=[lookup, charge], transitions={("lookup", "charge"): float("nan")})
    g.step("a", [lookup])
    g.step("b", [charge], after="a")
    with pytest.raises(GraphSpecError) as e:
        g.validate()
    assert e.value.field == "transitions[lookup->charge]"


def test_goal_unreachable_even_when_healthy() -> None:
    g = Graph("g", skills=[lookup, charge], strict_transitions=True)  # no transition allowed
    g.step("a", [lookup])
    g.step("b", [charge], after="a")
    with pytest.raises(GraphSpecError, match="unreachable even with every skill healthy") as e:
        g.validate()
    assert e.value.field == "goal"


def test_fallback_goal_must_name_a_step() -> None:
    g = Graph("g", skills=[lookup], fallback_goals=["charged"])
    g.step("a", [lookup])
    with pytest.raises(GraphSpecError) as e:
        g.validate()
    assert e.value.field == "fallback_goals[0]"


def test_duplicate_step_id() -> None:
    g = Graph(
        "g",
        steps=[Step(id="a", candidates=["lookup"]), Step(id="a", candidates=["lookup"])],
        skills=[lookup],
    )
    with pytest.raises(GraphSpecError) as e:
        g.validate()
    assert e.value.field == "steps[1].id"


def test_yaml_errors_name_file_and_field(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("name: g\nsteps:\n  - id: a\n    candidates: [lookup]\n    after: [x]\n")
    with pytest.raises(GraphSpecError) as e:
        load_graph_yaml(p, skills=SkillRegistry([lookup]))
    assert str(p) in str(e.value)
    assert e.value.field == "steps[0].after[0]"  # `after` is a key; x is no step


def test_yaml_graph_loads_and_validates(tmp_path: Path) -> None:
    p = tmp_path / "ok.yaml"
    p.write_text(
        "name: billing\ninput: {customer_id: str, amount: float}\n"
        "steps:\n  - id: find\n    candidates: [lookup]\n"
        "  - id: pay\n    candidates: [charge]\n    depends_on: [find]\n"
        "fallback_goals: [find]\n"
    )
    g = load_graph_yaml(p, skills=SkillRegistry([lookup, charge]))
    c = g.compile()
    assert c.order == ["find", "pay"]
    assert set(c.goals) == {"goal", "find"}


def test_yaml_missing_input_fails_at_load(tmp_path: Path) -> None:
    p = tmp_path / "missing.yaml"
    p.write_text(
        "name: billing\ninput: {customer_id: str}\n"
        "steps:\n  - id: find\n    candidates: [lookup]\n"
        "  - id: pay\n    candidates: [charge]\n    depends_on: [find]\n"
    )
    with pytest.raises(GraphSpecError, match="needs input 'amount'"):
        load_graph_yaml(p, skills=SkillRegistry([lookup, charge]))


def test_python_graph_file_must_define_a_graph(tmp_path: Path) -> None:
    p = tmp_path / "g.py"
    p.write_text("x = 1\n")
    with pytest.raises(GraphSpecError, match="must define `graph`"):
        load_graph(p)
