"""Risk: amounts over a limit, prompt injection in tool output, personal data.

Two places look at risk:

* :meth:`RiskMonitor.check` runs before routing and looks at the arguments a ready step is
  about to be called with: an amount over ``max_amount`` (the monitor's, or the graph's
  ``Graph(max_amount=...)``, the lower of the two) blocks the step (a human must approve it,
  so the run escalates instead of paying).
* :meth:`RiskMonitor.inspect_output` runs after a skill returned: output that carries a prompt
  injection (:mod:`orchestra.monitors.injection`: normalised text, overrides in several
  languages, chat-template markers, fake tool calls, persona switches, and then, for what
  the rules let through and when ``ORCHESTRA_INJECTION_MODEL=on``, the learned detector that
  ships with the package: :mod:`orchestra.monitors.injection_model`), or a payment card number, is treated as a
  failure of that skill (the run reroutes to another skill for the step and never passes
  that text on).  E-mail addresses
  and phone numbers give a ``note``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from orchestra.monitors.base import MonitorContext, Priority, Signal
from orchestra.monitors.injection import detect_injection
from orchestra.redact import luhn

__all__ = ["RiskMonitor"]

_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b")
_PHONE = re.compile(r"(?<!\d)\+?\d[\d\s().-]{8,}\d(?!\d)")
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){13,19}(?!\d)")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


class RiskMonitor:
    """Blocks steps whose amount is over a limit; vets tool output for injection and PII."""

    name = "risk"

    def __init__(
        self,
        *,
        max_amount: float | None = None,
        amount_fields: tuple[str, ...] = ("amount", "amount_usd", "total"),
        block_injection: bool = True,
        block_card_numbers: bool = True,
        learned: Any = "shipped",
    ):
        self.max_amount = max_amount
        self.amount_fields = amount_fields
        self.block_injection = block_injection
        self.block_card_numbers = block_card_numbers
        #: the learned detector (``score(text) -> float`` and ``threshold``, see
        #: :class:`~orchestra.monitors.injection_model.LearnedInjectionDetector`) asked about
        #: what the rules let through: ``"shipped"`` (the default) follows
        #: ``ORCHESTRA_INJECTION_MODEL`` (unset/``off``: none; ``on``: the model that ships
        #: with the package; a path: that model), ``None`` turns it off
        self._learned = learned

    @property
    def learned(self) -> Any:
        """The learned detector in use, or ``None``; the shipped one is loaded lazily."""
        if isinstance(self._learned, str) and self._learned == "shipped":
            from orchestra.monitors.injection_model import default_detector

            self._learned = default_detector()
        return self._learned

    async def check(self, ctx: MonitorContext) -> list[Signal]:
        limits = [
            x
            for x in (self.max_amount, getattr(ctx.graph.graph, "max_amount", None))
            if x is not None
        ]
        if not limits:
            return []
        limit = min(limits)
        signals = []
        for r in ctx.ready:
            for f in self.amount_fields:
                v = r.arguments.get(f)
                if isinstance(v, int | float) and not isinstance(v, bool) and v > limit:
                    signals.append(
                        Signal(
                            monitor=self.name,
                            kind="block",
                            priority=Priority.CRITICAL,
                            step=r.step,
                            reason=f"{f}={v:g} exceeds the limit {limit:g}: needs human approval",
                        )
                    )
        return signals

    def inspect_output(self, skill: str, output: Mapping[str, Any]) -> list[Signal]:
        """Signals about what ``skill`` returned; a ``block`` makes the call a failure."""
        signals: list[Signal] = []
        for text in _strings(output):
            found = detect_injection(text) if self.block_injection else None
            hit = str(found) if found is not None else None
            learned = self.learned if hit is None and self.block_injection else None
            if learned is not None:
                score = float(learned.score(text))
                if score >= learned.threshold:
                    hit = f"learned detector, score {score:.2f}"
            if hit is not None:
                signals.append(
                    Signal(
                        monitor=self.name,
                        kind="block",
                        priority=Priority.CRITICAL,
                        skill=skill,
                        reason=f"prompt injection in {skill} output ({hit})",
                    )
                )
            if self.block_card_numbers:
                for m in _CARD.finditer(text):
                    digits = re.sub(r"\D", "", m.group(0))
                    if 13 <= len(digits) <= 19 and luhn(digits):
                        signals.append(
                            Signal(
                                monitor=self.name,
                                kind="block",
                                priority=Priority.CRITICAL,
                                skill=skill,
                                reason=f"payment card number in {skill} output",
                            )
                        )
                        break
            if _EMAIL.search(text) or _PHONE.search(text):
                signals.append(
                    Signal(
                        monitor=self.name,
                        kind="note",
                        priority=Priority.LOW,
                        skill=skill,
                        reason=f"personal data (e-mail/phone) in {skill} output",
                    )
                )
        return signals
