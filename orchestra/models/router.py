"""The budget-aware model router: one :class:`ChatModel` in front of many backends.

For each call :class:`ModelRouter`

1. keeps the backends whose tier the call allows (``min_tier``/``max_tier`` in the call's
   metadata, or the router's defaults) and that are not cooling down after a failure;
2. ranks them with the :class:`~orchestra.models.policy.RoutingPolicy` (predicted chance of
   success against expected cost, one ``quality`` knob);
3. walks that ranking: a backend whose worst-case cost (prompt bytes + chat template +
   ``max_tokens``, at its prices) could cross the run's remaining hard budget is skipped,
   which falls back to cheaper tiers; the first that fits is reserved on the
   :class:`~orchestra.models.budget.Ledger` and called.  When none fits at the full
   ``max_tokens``, they are tried again with ``max_tokens`` cut to what the budget allows
   (never below a quarter of the request), so a response cannot cost more than it reserved;
4. books the real cost from the response's usage, or, when the backend errors, times out or
   rate-limits, releases the reservation, cools the backend down (like a failing tool) and
   moves on to the next candidate;
5. checks the answer with the step's output check, if any: a rejected answer (its cost is
   booked) is a failure of that backend for this call, not a cooldown; the call cascades to
   the stronger tiers first (FrugalGPT), then to the rest.

The ledger is the router's own when it was given one, else the ledger of the run that calls
(:func:`~orchestra.models.budget.current_ledger`): one budget for the run's tools and models.
Every call is counted on the step's :class:`~orchestra.models.budget.CallMeter`, and the
answer's ``reason`` (tier, predicted success, expected cost, budget left, every fallback) is
what the run's decision log and the ``chat`` span (``orchestra.route_reason``) show.

When no candidate can run within the budget it raises :class:`~orchestra.errors.BudgetExceeded`
whose message lists every candidate and why it was refused: the caller (the core) demotes or
escalates on it.  When every candidate failed it raises :class:`AllBackendsFailed`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from pydantic import BaseModel, Field

from orchestra import tracing
from orchestra.errors import BudgetExceeded, ConfigError, ModelError
from orchestra.models.backends import Backend, BackendError, LiteLLMChatModel, litellm_ready
from orchestra.models.base import ChatMessage, ChatModel, ChatResponse
from orchestra.models.budget import (
    BudgetRefusal,
    InMemoryLedger,
    Ledger,
    Reservation,
    current_ledger,
    meter_model_call,
)
from orchestra.models.policy import RoutingPolicy, SuccessPredictor

__all__ = [
    "AllBackendsFailed",
    "AnswerCheck",
    "BackendHealth",
    "ModelRouter",
    "RouteDecision",
    "RoutedResponse",
]

log = structlog.get_logger("orchestra.models.router")


_BLOCKED = "spending is blocked after an overrun"

AnswerCheck = Callable[[str], str | None]
"""An output check: why an answer is not acceptable, or ``None`` when it is."""


class AllBackendsFailed(ModelError):
    """Every backend the call could use failed, gave an answer its check rejected, or was
    cooling down."""


class RouteDecision(BaseModel):
    """Why a call went where it went: the record a trace span event carries."""

    chosen: str
    tier: int
    predicted_success: float
    expected_cost_usd: float
    reserved_usd: float
    ranking: list[str] = Field(default_factory=list)
    skipped: dict[str, str] = Field(default_factory=dict)
    failed: dict[str, str] = Field(default_factory=dict)
    reason: str = ""


class RoutedResponse(ChatResponse):
    """A :class:`ChatResponse` with the routing decision that produced it."""

    decision: RouteDecision | None = None


@dataclass
class BackendHealth:
    """A backend's recent record: failures in a row and when it may be tried again."""

    consecutive_failures: int = 0
    cooldown_until: float = 0.0
    last_error: str = ""
    calls: int = 0
    failures: int = 0
    mean_output_tokens: float | None = None

    def cooling(self, now: float) -> bool:
        """True while the backend should be routed around."""
        return now < self.cooldown_until


@dataclass
class _Shared:
    """State shared by a router and every per-run copy of it (:meth:`ModelRouter.for_run`)."""

    health: dict[str, BackendHealth] = field(default_factory=dict)
    scale_seen: int = 0  # calls that have updated the adaptive cost scale


class ModelRouter:
    """Routes each chat call to one backend under a hard budget; itself a :class:`ChatModel`.

    ``backends`` are :class:`Backend` specs (called through litellm) or ``(Backend, ChatModel)``
    pairs to supply the client yourself (tests, custom transports).  ``ledger`` is the run's
    budget (unlimited :class:`InMemoryLedger` by default); :meth:`for_run` gives a copy bound to
    another run's ledger that shares health and learning.  ``quality`` is the policy knob
    (see :class:`RoutingPolicy`); its unit of money, ``cost_scale_usd``, adapts to the calls seen
    (running mean of each call's cheapest-to-dearest expected cost gap) unless given.
    ``default_max_tokens`` bounds calls that name no limit.  A call is abandoned (and the
    backend cooled down) after the backend's ``timeout_s`` plus ``timeout_grace_s``.

    Per-call ``metadata`` may carry ``min_tier``, ``max_tier``, ``quality`` and any difficulty
    signal (``source``, ``capability``, ``agent``, ``step``, ``attempt``, ``failures``).
    """

    def __init__(
        self,
        backends: Sequence[Backend | tuple[Backend, ChatModel]],
        *,
        ledger: Ledger | None = None,
        predictor: SuccessPredictor | None = None,
        quality: float = 0.7,
        cost_scale_usd: float | None = None,
        default_max_tokens: int | None = None,
        min_tier: int | None = None,
        max_tier: int | None = None,
        name: str = "router",
        clock: Callable[[], float] = time.monotonic,
        timeout_grace_s: float = 5.0,
    ):
        if not backends:
            raise ConfigError("a router needs at least one backend", field="backends")
        self._backends: dict[str, Backend] = {}
        self._clients: dict[str, ChatModel] = {}
        for item in backends:
            b, client = item if isinstance(item, tuple) else (item, LiteLLMChatModel(item))
            if b.label in self._backends:
                raise ConfigError(
                    f"two backends are named {b.label!r}; give one a distinct name",
                    field="backends",
                )
            self._backends[b.label] = b
            self._clients[b.label] = client
        if predictor is None:
            predictor = SuccessPredictor()
        for b in self._backends.values():
            predictor.add_model(b.label, prior=min(0.95, 0.5 + 0.15 * b.tier))
        # cost_scale_usd: the knob's unit of money. Fixed if given; else it adapts to the
        # workload as a running mean of the cost gap between the cheapest and the dearest
        # candidate of each call (what "a typical call" costs to upgrade).
        self._adaptive_scale = cost_scale_usd is None
        self.policy = RoutingPolicy(
            predictor,
            quality=quality,
            cost_scale_usd=cost_scale_usd or self._default_cost_scale(),
        )
        self._own_ledger = ledger is not None
        self.ledger: Ledger = ledger if ledger is not None else InMemoryLedger()
        self.default_max_tokens = default_max_tokens
        self.min_tier = min_tier
        self.max_tier = max_tier
        self._name = name
        self._clock = clock
        self.timeout_grace_s = timeout_grace_s
        self._shared = _Shared(health={label: BackendHealth() for label in self._backends})

    # ------------------------------------------------------------------ identity

    @property
    def name(self) -> str:
        """``router`` unless named otherwise."""
        return self._name

    @property
    def backends(self) -> list[Backend]:
        """The backends, in declaration order."""
        return list(self._backends.values())

    def health(self, label: str) -> BackendHealth:
        """The health record of one backend."""
        return self._shared.health[label]

    def probe(self, *, timeout_s: float = 0.5) -> Callable[[], Awaitable[str | None]]:
        """A skill probe for an agent on this router: available while any backend may answer.

        A backend with a URL (a server we run) is checked by a TCP connection; one without
        (a provider's API, e.g. ``openai/gpt-4o-mini``) by its calls' outcomes: available
        unless the router is cooling it down after failures.
        """
        from orchestra.monitors.probe import tcp_probe

        urls = [b.api_base for b in self._backends.values() if b.api_base]
        tcp = tcp_probe(*urls, timeout_s=timeout_s) if urls else None
        hosted = [b.label for b in self._backends.values() if not b.api_base]

        async def probe() -> str | None:
            now = self._clock()
            cooling = [k for k in hosted if self._shared.health[k].cooling(now)]
            if len(cooling) < len(hosted):
                return None
            reasons = [
                f"{k} cooling down after: {self._shared.health[k].last_error}" for k in cooling
            ]
            if tcp is not None:
                down = await tcp()
                if down is None:
                    return None
                reasons.append(down)
            return "; ".join(reasons)

        return probe

    def for_run(self, ledger: Ledger) -> ModelRouter:
        """A router for another run: same backends, health and policy, its own ledger."""
        clone = object.__new__(ModelRouter)
        clone.__dict__.update(self.__dict__)
        clone.ledger = ledger
        clone._own_ledger = True
        return clone

    def _default_cost_scale(self) -> float:
        # Cost gap between the cheapest and the dearest backend on a nominal call
        # (1,000 prompt tokens, 300 completion tokens).
        costs = [b.prices.cost(1000, 300) for b in self._backends.values()]
        gap = max(costs) - min(costs)
        return gap if gap > 0 else 1e-6

    # ------------------------------------------------------------------ learning

    def feedback(
        self,
        messages: Sequence[ChatMessage],
        model: str,
        success: bool | float,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Tell the policy how ``model`` did on this call, so it keeps learning online."""
        self.policy.predictor.partial_fit(_prompt_text(messages), model, float(success), metadata)

    # ------------------------------------------------------------------ routing

    def _eligible(self, metadata: Mapping[str, Any]) -> list[Backend]:
        lo = metadata.get("min_tier", self.min_tier)
        hi = metadata.get("max_tier", self.max_tier)
        out = [
            b
            for b in self._backends.values()
            if (lo is None or b.tier >= int(lo)) and (hi is None or b.tier <= int(hi))
        ]
        if not out:
            tiers = sorted({b.tier for b in self._backends.values()})
            raise ConfigError(
                f"no backend has a tier in [{lo}, {hi}]; the router's tiers are {tiers}",
                field="max_tier" if hi is not None else "min_tier",
            )
        return out

    def _expected_cost(
        self, b: Backend, messages: Sequence[ChatMessage], max_tokens: int | None
    ) -> float:
        tin = (
            sum(len(m.content.encode("utf-8")) for m in messages) / 4
            + b.template_overhead_tokens / 2
        )
        h = self._shared.health[b.label]
        cap = b.output_token_bound(max_tokens)
        tout = min(cap, h.mean_output_tokens if h.mean_output_tokens is not None else cap / 2)
        return b.prices.cost(math.ceil(tin), math.ceil(tout))

    async def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        check: AnswerCheck | None = None,
    ) -> RoutedResponse:
        """Answer on the best backend that fits the budget; see the module docstring.

        ``check`` is the step's output check: it returns why an answer is not acceptable (or
        ``None``).  An answer that fails it is a failure of that backend for this call (not a
        reason to cool it down): the call cascades to the next tier within the budget.
        """
        md = dict(metadata or {})
        max_tokens = max_tokens or self.default_max_tokens
        ledger = self.ledger_for_call()
        now = self._clock()
        eligible = self._eligible(md)
        skipped: dict[str, str] = {}
        failed: dict[str, str] = {}
        live: list[Backend] = []
        for b in eligible:
            h = self._shared.health[b.label]
            if h.cooling(now):
                skipped[b.label] = (
                    f"cooling down for {h.cooldown_until - now:.1f}s after: {h.last_error}"
                )
            else:
                live.append(b)
        if not live and eligible:
            # Everything is cooling down: a half-open trial of the one that cools off first,
            # rather than failing the call outright (a lone backend's blip is not an outage).
            probe = min(eligible, key=lambda b: self._shared.health[b.label].cooldown_until)
            skipped.pop(probe.label, None)
            live.append(probe)
        expected = {b.label: self._expected_cost(b, messages, max_tokens) for b in live}
        if self._adaptive_scale and len(expected) > 1:
            gap = max(expected.values()) - min(expected.values())
            if gap > 0:
                self._shared.scale_seen += 1
                w = max(0.02, 1.0 / self._shared.scale_seen)
                self.policy.cost_scale_usd = (1 - w) * self.policy.cost_scale_usd + w * gap
        quality = md.get("quality")
        ranking = (
            self.policy.rank(
                _prompt_text(messages),
                expected,
                md,
                quality=None if quality is None else float(quality),
            )
            if live
            else []
        )
        if any(isinstance(self._clients[r[0]], LiteLLMChatModel) for r in ranking):
            await litellm_ready()  # imported before any call's clock starts
        budget_refused = False
        # Candidates the budget refused at the full max_tokens are tried again, after every
        # other candidate, with max_tokens cut to what the budget allows.
        queue = list(ranking)
        capping: set[str] = set()
        i = 0
        while i < len(queue):
            label, p_success, _utility = queue[i]
            i += 1
            b = self._backends[label]
            cap = label in capping
            res, out_tokens, refusal = await self._reserve(ledger, b, messages, max_tokens, cap)
            if res is None:
                budget_refused = True
                if not cap and refusal != _BLOCKED:
                    capping.add(label)
                    queue.append((label, p_success, _utility))
                if label not in skipped:
                    skipped[label] = refusal
                    tracing.decision_event(
                        "budget", f"{label} skipped: {refusal}", {"orchestra.backend": label}
                    )
                    log.info("model.route.skip", backend=label, reason="budget", detail=refusal)
                continue
            skipped.pop(label, None)
            left_usd = await _left(ledger)
            why = _why(b, p_success, expected[label], left_usd, out_tokens, max_tokens)
            fallback = _fallbacks(skipped, failed)
            md["route_reason"] = f"{label}: {why}" + (f"; {fallback}" if fallback else "")
            try:
                resp = await asyncio.wait_for(
                    self._clients[label].chat(messages, max_tokens=out_tokens, metadata=md),
                    timeout=b.timeout_s + self.timeout_grace_s,
                )
            except (BackendError, ModelError, TimeoutError) as exc:
                await ledger.release(res)
                err = (
                    exc
                    if isinstance(exc, BackendError)
                    else BackendError(
                        str(exc) or type(exc).__name__,
                        backend=label,
                        kind="timeout" if isinstance(exc, TimeoutError) else "other",
                    )
                )
                failed[label] = (
                    f"{err.kind}: {_short(str(err).removeprefix(f'{label}: {err.kind}: '))}"
                )
                meter_model_call()
                self._record_failure(b, err)
                tracing.decision_event(
                    "reroute",
                    f"model backend {label} failed ({err.kind}); trying the next candidate",
                    {"orchestra.backend": label},
                )
                continue
            except BaseException:
                await ledger.release(res)
                raise
            tokens = resp.usage.input_tokens + resp.usage.output_tokens
            over = await ledger.settle(res, usd=resp.cost_usd, tokens=tokens)
            booked = ledger is current_ledger()
            if over > 0:
                tracing.decision_event(
                    "overrun",
                    f"{label} cost ${resp.cost_usd:.6g}, ${over:.6g} more than it reserved",
                    {"orchestra.backend": label},
                )
                log.warning("model.overrun", backend=label, cost_usd=resp.cost_usd, over_usd=over)
            problem = check(resp.text) if check is not None else None
            if problem is not None:
                # A failure of this backend for this call, not an outage: no cooldown; the
                # call cascades to the stronger tiers first, then to the rest.
                failed[label] = f"answer rejected: {problem}"
                meter_model_call(booked_usd=resp.cost_usd if booked else 0.0)
                self.feedback(messages, label, False, md)
                tracing.decision_event(
                    "reroute",
                    f"model backend {label}'s answer failed the output check ({problem}); "
                    "trying the next tier",
                    {"orchestra.backend": label},
                )
                log.info("model.route.rejected", backend=label, tier=b.tier, problem=problem)
                rest = queue[i:]
                queue[i:] = sorted(
                    (r for r in rest if self._backends[r[0]].tier > b.tier),
                    key=lambda r: self._backends[r[0]].tier,
                ) + [r for r in rest if self._backends[r[0]].tier <= b.tier]
                continue
            self._record_success(b, resp)
            answered = resp.response_model or b.model
            reason = f"{label}: {why}" + (f"; {fallback}" if fallback else "")
            decision = RouteDecision(
                chosen=label,
                tier=b.tier,
                predicted_success=p_success,
                expected_cost_usd=expected[label],
                reserved_usd=res.usd,
                ranking=[r[0] for r in ranking],
                skipped=skipped,
                failed=failed,
                reason=reason,
            )
            route = f"model {label} ({b.model}, answered as {answered}), {why}" + (
                f"; {fallback}" if fallback else ""
            )
            meter_model_call(booked_usd=resp.cost_usd if booked else 0.0, route=route)
            log.info(
                "model.route",
                backend=label,
                model=answered,
                tier=b.tier,
                cost_usd=resp.cost_usd,
                predicted_success=round(p_success, 3),
                reason=reason,
                # the run's id when called inside a step (bound by run_skill), else the ledger's
                run_id=structlog.contextvars.get_contextvars().get("run_id", ledger.run_id),
            )
            return RoutedResponse(
                **{**resp.model_dump(exclude={"decision"}), "booked": booked},
                decision=decision,
            )
        detail = "; ".join(f"{k}: {v}" for k, v in {**skipped, **failed}.items())
        if budget_refused and not failed:
            snap = await ledger.snapshot()
            limit = snap.limit_usd if snap.limit_usd is not None else math.inf
            raise BudgetExceeded(
                f"run {snap.run_id!r}: no model fits the remaining hard budget "
                f"(${snap.remaining_usd:.6g} of ${limit:.6g} left); "
                f"{detail}. Demote the goal, escalate, or raise the run's budget"
            )
        raise AllBackendsFailed(f"every backend failed, was refused or is cooling down: {detail}")

    def ledger_for_call(self) -> Ledger:
        """The ledger a call books on: the router's own if it was given one, else the ledger
        of the run that calls (:func:`~orchestra.models.budget.current_ledger`), else an
        unlimited one of this router."""
        if self._own_ledger:
            return self.ledger
        return current_ledger() or self.ledger

    async def _reserve(
        self,
        ledger: Ledger,
        b: Backend,
        messages: Sequence[ChatMessage],
        max_tokens: int | None,
        cap: bool,
    ) -> tuple[Reservation | None, int, str]:
        """Reserve the call's worst case.  With ``cap``, cut ``max_tokens`` to what the budget
        allows (never below a quarter of the request, nor 16 tokens).  Returns the
        reservation (``None`` if refused), the ``max_tokens`` to send, and why it was refused
        (:data:`_BLOCKED` when spending is blocked after an overrun)."""
        want = b.output_token_bound(max_tokens)
        label = f"{b.label} (tier {b.tier})"
        fits = want
        if cap:
            snap = await ledger.snapshot()
            if snap.overrun_usd > 0:
                return None, want, _BLOCKED
            tin = b.input_token_bound(messages)
            price_out = b.prices.output_per_token
            if math.isfinite(snap.remaining_usd) and price_out > 0:
                spare = snap.remaining_usd - b.prices.input_per_token * tin
                fits = min(fits, math.floor(spare / price_out * (1 - 1e-9)))
            if math.isfinite(snap.remaining_tokens):
                fits = min(fits, int(snap.remaining_tokens) - tin)
            if fits < min(want, max(16, want // 4)):
                return (
                    None,
                    want,
                    f"even a {min(want, max(16, want // 4))}-token answer "
                    + (f"could cross the budget (left ${snap.remaining_usd:.6g})"),
                )
        usd, tokens = b.cost_bound(messages, fits)
        try:
            return await ledger.reserve(usd, tokens, label=label), fits, ""
        except BudgetRefusal as exc:
            snap = exc.snapshot
            if snap.overrun_usd > 0:
                return None, want, _BLOCKED
            return (
                None,
                want,
                f"could cost up to ${usd:.6g} / {tokens} tokens, "
                f"budget left ${snap.remaining_usd:.6g}",
            )

    def _record_failure(self, b: Backend, err: BackendError) -> None:
        h = self._shared.health[b.label]
        h.calls += 1
        h.failures += 1
        h.last_error = str(err)[:200]
        if err.cools_down:
            h.consecutive_failures += 1
            wait = b.cooldown_s * min(2 ** (h.consecutive_failures - 1), 16)
            h.cooldown_until = self._clock() + wait
            log.warning(
                "model.cooldown", backend=b.label, kind=err.kind, seconds=wait, error=h.last_error
            )
        else:
            log.warning("model.call_failed", backend=b.label, kind=err.kind, error=h.last_error)

    def _record_success(self, b: Backend, resp: ChatResponse) -> None:
        h = self._shared.health[b.label]
        h.calls += 1
        h.consecutive_failures = 0
        h.cooldown_until = 0.0
        out = float(resp.usage.output_tokens)
        h.mean_output_tokens = (
            out if h.mean_output_tokens is None else 0.8 * h.mean_output_tokens + 0.2 * out
        )


def _prompt_text(messages: Sequence[ChatMessage]) -> str:
    return "\n".join(m.content for m in messages)


async def _left(ledger: Ledger) -> float:
    return (await ledger.snapshot()).remaining_usd


def _short(text: str, n: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _why(
    b: Backend,
    p_success: float,
    expected_usd: float,
    left_usd: float,
    out_tokens: int,
    max_tokens: int | None,
) -> str:
    """Why this backend: its tier, predicted difficulty and cost, and the budget left."""
    left = "unlimited" if math.isinf(left_usd) else f"${left_usd:.6f}"
    why = (
        f"tier {b.tier}, predicted success {p_success:.2f} (difficulty {1 - p_success:.2f}), "
        f"expected ${expected_usd:.6f}, budget left {left} after reserving"
    )
    want = b.output_token_bound(max_tokens)
    if out_tokens < want:
        why += f", max_tokens capped from {want} to {out_tokens} by the budget"
    return why


def _fallbacks(skipped: Mapping[str, str], failed: Mapping[str, str]) -> str:
    """Every backend tried or passed over before this one, and why."""
    parts = [f"{k} failed ({v})" for k, v in failed.items()] + [
        f"{k} skipped ({v})" for k, v in skipped.items() if k not in failed
    ]
    return "fallback after " + ", ".join(parts) if parts else ""
