"""Risk: card numbers (Luhn-checked) and injections in tool output fail the call; PII is a note."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from orchestra import Graph, Runner, Skill
from orchestra.monitors import RiskMonitor
from orchestra.monitors.base import Priority

VISA = "4111 1111 1111 1111"  # a test card number: passes the Luhn check


class TestInspectOutput:
    @pytest.mark.parametrize("card", [VISA, "4111-1111-1111-1111", "5500005555555559"])
    def test_a_card_number_is_a_critical_block(self, card: str) -> None:
        signals = RiskMonitor().inspect_output("crm", {"note": f"card on file: {card}"})
        (sig,) = [s for s in signals if s.kind == "block"]
        assert sig.kind == "block" and sig.priority == Priority.CRITICAL
        assert sig.reason == "payment card number in crm output"

    @pytest.mark.parametrize("text", ["4111 1111 1111 1112", "order 1234567890123", "12345"])
    def test_digits_that_fail_the_luhn_check_or_are_too_short_are_not_cards(
        self, text: str
    ) -> None:
        assert [
            s for s in RiskMonitor().inspect_output("crm", {"t": text}) if s.kind == "block"
        ] == []

    def test_card_blocking_can_be_turned_off(self) -> None:
        signals = RiskMonitor(block_card_numbers=False).inspect_output("crm", {"t": VISA})
        assert [s for s in signals if s.kind == "block"] == []

    def test_nested_output_is_searched(self) -> None:
        out = {"customer": {"cards": [{"pan": VISA}]}}
        signals = RiskMonitor().inspect_output("crm", out)
        assert [s.reason for s in signals if s.kind == "block"] == [
            "payment card number in crm output"
        ]

    @pytest.mark.parametrize(
        "text", ["write to jane.doe@example.com", "call +1 (415) 555-0100 after 5"]
    )
    def test_an_email_or_phone_number_is_a_note(self, text: str) -> None:
        (sig,) = RiskMonitor().inspect_output("crm", {"t": text})
        assert sig.kind == "note" and sig.priority == Priority.LOW
        assert sig.reason == "personal data (e-mail/phone) in crm output"


class Out(BaseModel):
    value: str


def _skill(name: str, value: str, cost: float, log: list[str]) -> Skill:
    async def fn(**kwargs: Any) -> Out:
        log.append(name)
        return Out(value=value)

    fn.__name__ = name
    return Skill(name=name, fn=fn, output_model=Out, cost=cost)


class TestInARun:
    async def test_a_card_number_in_output_fails_the_call_and_the_run_reroutes(self) -> None:
        log: list[str] = []
        g = Graph("g")
        g.step(
            "lookup", [_skill("leaky", f"card {VISA}", 0.1, log), _skill("safe", "ok", 0.5, log)]
        )
        r = await Runner().run(g)
        assert r.status == "completed" and r.path == ["safe"]
        assert r.outputs["lookup"] == {"value": "ok"}  # the card number is never passed on
        fail = next(d for d in r.decisions if d.kind == "fail")
        assert fail.skill == "leaky" and fail.error_kind == "risk"
        assert fail.reason == "payment card number in leaky output"

    async def test_personal_data_in_output_is_logged_as_a_note_and_the_run_goes_on(self) -> None:
        log: list[str] = []
        g = Graph("g")
        g.step("lookup", [_skill("crm", "reach her at jane.doe@example.com", 0.1, log)])
        r = await Runner().run(g)
        assert r.status == "completed" and r.path == ["crm"]
        notes = [d for d in r.decisions if d.kind == "note"]
        assert [(d.skill, d.reason) for d in notes] == [
            ("crm", "personal data (e-mail/phone) in crm output")
        ]
