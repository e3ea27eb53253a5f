"""The budget-aware model router: one :class:`ChatModel` in front of many backends.

For each call :class:`ModelRouter`

1. keeps the backends whose tier the call allows (``min_tier``/``max_tier`` in the call's
   metadata, or the router's defaults) and that are not cooling down after a failure;
2. ranks them with the :class:`~orchestra.models.policy.RoutingPolicy` (predicted chance of
   success against expected cost, one ``quality`` knob);
3. walks that ranking: a backend whose worst-case cost (prompt bytes + chat template +
   ``max_tokens``, at its prices) could cross the run's remaining hard budget is skipped,
   which falls back to cheaper tiers; the first that fits is reserved on the
   :class:`~orchestra.models.budget.Ledger` and called;
4. books the real cost from the response's usage, or, when the backend errors, times out or
   rate-limits, releases the reservation, cools the backend down (like a failing tool) and
   moves on to the next candidate.

When no candidate can run within the budget it raises :class:`~orchestra.errors.BudgetExceeded`
whose message lists every candidate and why it was refused: the caller (the core) demotes or
escalates on it.  When every candidate failed it raises :class:`AllBackendsFailed`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from pydantic import BaseModel, Field

from orchestra import tracing
from orchestra.errors import BudgetExceeded, ConfigError, ModelError
from orchestra.models.backends import Backend, BackendError, LiteLLMChatModel
from orchestra.models.base import ChatMessage, ChatModel, ChatResponse
from orchestra.models.budget import BudgetRefusal, InMemoryLedger, Ledger
from orchestra.models.policy import RoutingPolicy, SuccessPredictor

__all__ = [
    "AllBackendsFailed",
    "BackendHealth",
    "ModelRouter",
    "RouteDecision",
    "RoutedResponse",
]

log = structlog.get_logger("orchestra.models.router")


class AllBackendsFailed(ModelError):
    """Every backend the call could use failed (or was cooling down)."""


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

    def for_run(self, ledger: Ledger) -> ModelRouter:
        """A router for another run: same backends, health and policy, its own ledger."""
        clone = object.__new__(ModelRouter)
        clone.__dict__.update(self.__dict__)
        clone.ledger = ledger
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
    ) -> RoutedResponse:
        """Answer on the best backend that fits the budget; see the module docstring."""
        md = dict(metadata or {})
        max_tokens = max_tokens or self.default_max_tokens
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
        budget_refused = False
        for label, p_success, _utility in ranking:
            b = self._backends[label]
            bound_usd, bound_tokens = b.cost_bound(messages, max_tokens)
            try:
                res = await self.ledger.reserve(
                    bound_usd, bound_tokens, label=f"{label} (tier {b.tier})"
                )
            except BudgetRefusal as exc:
                budget_refused = True
                left = exc.snapshot.remaining_usd
                skipped[label] = (
                    f"could cost up to ${bound_usd:.6g} / {bound_tokens} tokens, budget left ${left:.6g}"
                )
                tracing.decision_event(
                    "budget", f"{label} skipped: {skipped[label]}", {"orchestra.backend": label}
                )
                log.info(
                    "model.route.skip",
                    backend=label,
                    reason="budget",
                    bound_usd=bound_usd,
                    left_usd=left,
                )
                continue
            try:
                resp = await asyncio.wait_for(
                    self._clients[label].chat(
                        messages, max_tokens=b.output_token_bound(max_tokens), metadata=md
                    ),
                    timeout=b.timeout_s + self.timeout_grace_s,
                )
            except (BackendError, ModelError, TimeoutError) as exc:
                await self.ledger.release(res)
                err = (
                    exc
                    if isinstance(exc, BackendError)
                    else BackendError(
                        str(exc) or type(exc).__name__,
                        backend=label,
                        kind="timeout" if isinstance(exc, TimeoutError) else "other",
                    )
                )
                failed[label] = str(err)
                self._record_failure(b, err)
                tracing.decision_event(
                    "reroute",
                    f"model backend {label} failed ({err.kind}); trying the next candidate",
                    {"orchestra.backend": label},
                )
                continue
            except BaseException:
                await self.ledger.release(res)
                raise
            await self.ledger.settle(
                res, usd=resp.cost_usd, tokens=resp.usage.input_tokens + resp.usage.output_tokens
            )
            self._record_success(b, resp)
            decision = RouteDecision(
                chosen=label,
                tier=b.tier,
                predicted_success=p_success,
                expected_cost_usd=expected[label],
                reserved_usd=res.usd,
                ranking=[r[0] for r in ranking],
                skipped=skipped,
                failed=failed,
                reason=_reason(label, ranking, skipped, failed),
            )
            log.info(
                "model.route",
                backend=label,
                tier=b.tier,
                cost_usd=resp.cost_usd,
                predicted_success=round(p_success, 3),
                reason=decision.reason,
                # the run's id when called inside a step (bound by run_skill), else the ledger's
                run_id=structlog.contextvars.get_contextvars().get("run_id", self.ledger.run_id),
            )
            return RoutedResponse(**resp.model_dump(), decision=decision)
        detail = "; ".join(f"{k}: {v}" for k, v in {**skipped, **failed}.items())
        if budget_refused:
            snap = await self.ledger.snapshot()
            raise BudgetExceeded(
                f"run {snap.run_id!r}: no model fits the remaining hard budget "
                f"(${snap.remaining_usd:.6g} of ${snap.limit_usd if snap.limit_usd is not None else math.inf:.6g} left); "
                f"{detail}. Demote the goal, escalate, or raise the run's budget"
            )
        raise AllBackendsFailed(f"every backend failed or is cooling down: {detail}")

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


def _reason(
    label: str,
    ranking: Sequence[tuple[str, float, float]],
    skipped: Mapping[str, str],
    failed: Mapping[str, str],
) -> str:
    first = ranking[0][0] if ranking else label
    if label == first:
        return f"{label}: best predicted success per cost"
    why = [f"{k} failed" for k in failed] + [
        f"{k} skipped ({v})" for k, v in skipped.items() if k not in failed
    ]
    return f"{label}: fallback after " + ", ".join(why)
