"""ModelRouter: the policy's pick, budget fallbacks, refusals with reasons, backend failures."""

from __future__ import annotations

import asyncio

import pytest

from orchestra.errors import BudgetExceeded, ConfigError, ModelError
from orchestra.models import (
    Backend,
    BackendError,
    ChatMessage,
    ChatModel,
    InMemoryLedger,
    ModelRouter,
)
from orchestra.models.policy import ModelOutcome, RoutingRow, SuccessPredictor

from .doubles import FakeModel

LOCAL = Backend(model="hosted_vllm/small", name="local", tier=0, max_output_tokens=100)
MID = Backend(
    model="openai/mid",
    name="mid",
    tier=1,
    input_cost_per_token=1e-6,
    output_cost_per_token=2e-6,
    max_output_tokens=100,
)
STRONG = Backend(
    model="openai/strong",
    name="strong",
    tier=2,
    input_cost_per_token=1e-5,
    output_cost_per_token=3e-5,
    max_output_tokens=100,
)
MSG = [ChatMessage(role="user", content="Summarize: the quarterly numbers went up.")]


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(
    answers: dict[str, list[object]] | None = None, **kw: object
) -> tuple[ModelRouter, dict[str, FakeModel]]:
    answers = answers or {}
    fakes = {
        b.label: FakeModel(b.label, answers.get(b.label, ["ok"]), cost=b.prices.cost(10, 5))
        for b in (LOCAL, MID, STRONG)
    }
    router = ModelRouter([(b, fakes[b.label]) for b in (LOCAL, MID, STRONG)], **kw)  # type: ignore[arg-type]
    return router, fakes


class TestChoosing:
    def test_router_is_a_chat_model(self) -> None:
        """The router itself implements ChatModel (the core's demotion takes any ChatModel)."""
        router, _ = make()
        assert isinstance(router, ChatModel) and router.name == "router"

    async def test_low_quality_takes_cheapest_high_takes_strongest(self) -> None:
        """Without data, tiers set the priors: quality 0 -> local, quality 1 -> strongest."""
        router, _ = make()
        assert (await router.chat(MSG, metadata={"quality": 0.0})).model == "local"
        assert (await router.chat(MSG, metadata={"quality": 1.0})).model == "strong"

    async def test_learned_policy_routes_by_difficulty(self) -> None:
        """A predictor fitted on routing rows sends hard prompts up, easy ones to local."""
        rows = []
        for i in range(100):
            hard = i % 2 == 0
            prompt = (
                f"prove theorem {i} about prime gaps rigorously"
                if hard
                else f"say hello to user {i}"
            )
            rows.append(
                RoutingRow(
                    prompt=prompt,
                    models={
                        "local": ModelOutcome(score=0.0 if hard else 1.0, cost_usd=0.0),
                        "mid": ModelOutcome(score=0.0 if hard else 1.0, cost_usd=1e-4),
                        "strong": ModelOutcome(score=1.0, cost_usd=1e-3),
                    },
                )
            )
        router, _ = make(predictor=SuccessPredictor(n_features=4096).fit(rows), quality=0.8)
        hard = await router.chat(
            [ChatMessage(role="user", content="prove theorem 777 about prime gaps rigorously")]
        )
        easy = await router.chat([ChatMessage(role="user", content="say hello to user 777")])
        assert hard.model == "strong" and easy.model == "local"
        assert hard.decision is not None and hard.decision.predicted_success > 0.7

    async def test_tier_bounds_from_metadata(self) -> None:
        """min_tier/max_tier in the call's metadata keep the call within those tiers."""
        router, _ = make()
        r = await router.chat(MSG, metadata={"min_tier": 1, "max_tier": 1, "quality": 1.0})
        assert r.model == "mid"
        with pytest.raises(ConfigError, match="no backend has a tier"):
            await router.chat(MSG, metadata={"min_tier": 5})

    async def test_feedback_learns_online(self) -> None:
        """Outcomes fed back move the predicted success of that model on such calls."""
        router, _ = make()
        before = router.policy.predictor.predict("Summarize: the quarterly numbers went up.")[
            "local"
        ]
        for _ in range(10):
            router.feedback(MSG, "local", False)
        after = router.policy.predictor.predict("Summarize: the quarterly numbers went up.")[
            "local"
        ]
        assert after < before


class TestBudget:
    async def test_spend_is_booked_from_usage(self) -> None:
        """The ledger books the cost and tokens the response reported."""
        ledger = InMemoryLedger(limit_usd=1.0)
        router, _ = make(ledger=ledger)
        r = await router.chat(MSG, metadata={"quality": 1.0})
        snap = await ledger.snapshot()
        assert r.model == "strong" and snap.spent_usd == pytest.approx(STRONG.prices.cost(10, 5))
        assert snap.spent_tokens == 15 and snap.reserved_usd == 0 and snap.calls == 1

    async def test_falls_back_to_a_cheaper_tier_when_budget_is_short(self) -> None:
        """When the preferred model could cross the budget, a cheaper tier that fits answers."""
        bound_strong, _ = STRONG.cost_bound(MSG, None)
        bound_mid, _ = MID.cost_bound(MSG, None)
        ledger = InMemoryLedger(limit_usd=(bound_mid + bound_strong) / 2)
        router, _ = make(ledger=ledger, min_tier=1)
        r = await router.chat(MSG, metadata={"quality": 1.0})
        assert r.model == "mid"
        assert r.decision is not None and "strong" in r.decision.skipped
        assert "budget left" in r.decision.skipped["strong"]
        assert "fallback" in r.decision.reason

    async def test_budget_too_small_for_any_model_raises_with_reason(self) -> None:
        """Nothing fits: BudgetExceeded lists every candidate and why; nothing is spent."""
        ledger = InMemoryLedger(limit_usd=1e-9, run_id="tiny")
        router, fakes = make(ledger=ledger, min_tier=1)
        with pytest.raises(BudgetExceeded) as err:
            await router.chat(MSG)
        msg = str(err.value)
        assert "tiny" in msg and "no model fits the remaining hard budget" in msg
        assert "mid: could cost up to" in msg and "strong: could cost up to" in msg
        assert "Demote the goal, escalate, or raise the run's budget" in msg
        assert not fakes["mid"].calls and not fakes["strong"].calls
        assert (await ledger.snapshot()).spent_usd == 0

    async def test_parallel_calls_never_cross_the_budget(self) -> None:
        """Forty concurrent calls: those that could cross are refused, spend stays under."""
        bound, _ = STRONG.cost_bound(MSG, None)
        ledger = InMemoryLedger(limit_usd=bound * 5.5)
        slow = FakeModel("strong", ["ok"], cost=STRONG.prices.cost(10, 5))

        async def slow_chat(*a: object, **k: object) -> object:
            await asyncio.sleep(0.01)
            return await FakeModel.chat(slow, *a, **k)  # type: ignore[arg-type]

        slow.chat = slow_chat  # type: ignore[method-assign]
        router = ModelRouter([(STRONG, slow)], ledger=ledger)
        results = await asyncio.gather(
            *(router.chat(MSG) for _ in range(40)), return_exceptions=True
        )
        ok = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, BudgetExceeded)]
        assert len(ok) >= 5 and len(ok) + len(refused) == 40
        snap = await ledger.snapshot()
        assert snap.spent_usd <= bound * 5.5 and snap.reserved_usd == 0

    async def test_for_run_uses_its_own_ledger_and_shares_health(self) -> None:
        """A per-run copy books on its ledger and sees the same backend health."""
        router, _ = make(
            answers={"strong": [BackendError("down", backend="strong", kind="unavailable")]}
        )
        run = router.for_run(InMemoryLedger(limit_usd=1.0, run_id="r2"))
        r = await run.chat(MSG, metadata={"quality": 1.0})
        assert r.model == "mid"
        assert router.health("strong").failures == 1
        assert (await run.ledger.snapshot()).calls == 1
        assert (await router.ledger.snapshot()).calls == 0


class TestFailures:
    async def test_backend_error_moves_to_next_and_cools_down(self) -> None:
        """A failing backend is routed around at once, and skipped while it cools down."""
        clock = Clock()
        err = BackendError("connection refused", backend="strong", kind="unavailable")
        router, fakes = make(answers={"strong": [err, "back"]}, clock=clock, min_tier=1)
        r = await router.chat(MSG, metadata={"quality": 1.0})
        assert r.model == "mid"
        assert r.decision is not None and "strong" in r.decision.failed
        r2 = await router.chat(MSG, metadata={"quality": 1.0})
        assert r2.model == "mid" and len(fakes["strong"].calls) == 1
        assert r2.decision is not None and "cooling down" in r2.decision.skipped["strong"]
        clock.t += STRONG.cooldown_s + 1
        r3 = await router.chat(MSG, metadata={"quality": 1.0})
        assert r3.model == "strong" and r3.text == "back"
        assert router.health("strong").consecutive_failures == 0

    async def test_lone_cooling_backend_gets_a_half_open_trial(self) -> None:
        """When every backend is cooling down, the one that cools off first is tried anyway."""
        clock = Clock()
        err = BackendError("blip", backend="local", kind="unavailable")
        fake = FakeModel("local", [err, "recovered"])
        router = ModelRouter([(LOCAL, fake)], clock=clock)
        with pytest.raises(ModelError):
            await router.chat(MSG)
        assert router.health("local").cooling(clock())
        r = await router.chat(MSG)
        assert r.text == "recovered" and not router.health("local").cooling(clock())

    async def test_failed_call_releases_its_reservation(self) -> None:
        """The failed attempt's reservation is released; only the answer is booked."""
        ledger = InMemoryLedger(limit_usd=1.0)
        err = BackendError("rate limited", backend="strong", kind="rate_limit")
        router, _ = make(answers={"strong": [err]}, ledger=ledger)
        await router.chat(MSG, metadata={"quality": 1.0})
        snap = await ledger.snapshot()
        assert snap.calls == 1 and snap.reserved_usd == 0

    async def test_bad_request_does_not_cool_down(self) -> None:
        """A request the backend rejects is the caller's problem, not the backend's health."""
        clock = Clock()
        err = BackendError("bad", backend="strong", kind="bad_request")
        router, _ = make(answers={"strong": [err, "ok"]}, clock=clock)
        assert (await router.chat(MSG, metadata={"quality": 1.0})).model != "strong"
        assert not router.health("strong").cooling(clock())

    async def test_timeout_is_a_failure(self) -> None:
        """A backend slower than its timeout is abandoned and the call moves on."""
        quick = Backend(
            model="openai/strong",
            name="strong",
            tier=2,
            input_cost_per_token=0,
            output_cost_per_token=0,
            timeout_s=0.05,
        )
        hang = FakeModel("strong")

        async def forever(*a: object, **k: object) -> object:
            await asyncio.sleep(60)
            raise AssertionError

        hang.chat = forever  # type: ignore[method-assign]
        router = ModelRouter(
            [(LOCAL, FakeModel("local")), (quick, hang)], quality=1.0, timeout_grace_s=0.05
        )
        r = await router.chat(MSG)
        assert r.model == "local" and "timeout" in router.health("strong").last_error

    async def test_all_failing_raises_model_error(self) -> None:
        """When every backend fails the router raises AllBackendsFailed naming each."""
        from orchestra.models import AllBackendsFailed

        errs = {
            b: [BackendError("boom", backend=b, kind="unavailable")]
            for b in ("local", "mid", "strong")
        }
        router, _ = make(answers=errs)
        with pytest.raises(AllBackendsFailed, match=r"local.*boom|boom.*local"):
            await router.chat(MSG)


def test_duplicate_backend_names_are_config_errors() -> None:
    """Two backends with one name cannot be told apart in the ledger or the policy."""
    with pytest.raises(ConfigError, match="distinct name"):
        ModelRouter([(LOCAL, FakeModel("a")), (LOCAL, FakeModel("b"))])


class TestSettings:
    async def test_backends_from_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """ORCHESTRA_MODELS_* configure backends, knob and budget; the router books on it."""
        from orchestra.models.settings import ModelSettings, build_router

        monkeypatch.setenv(
            "ORCHESTRA_MODELS_BACKENDS",
            '[{"model": "hosted_vllm/small", "api_base": "http://127.0.0.1:1/v1", "tier": 0},'
            ' {"model": "openai/gpt-4o-mini", "tier": 1}]',
        )
        monkeypatch.setenv("ORCHESTRA_MODELS_QUALITY", "0.9")
        monkeypatch.setenv("ORCHESTRA_MODELS_BUDGET_USD", "0.25")
        router = await build_router(ModelSettings(), run_id="env-run")
        assert [b.tier for b in router.backends] == [0, 1] and router.policy.quality == 0.9
        snap = await router.ledger.snapshot()
        assert snap.limit_usd == 0.25 and snap.run_id == "env-run"

    async def test_no_backends_names_the_variable(self) -> None:
        """Without backends the error says which variable to set."""
        from orchestra.models.settings import ModelSettings, build_router

        with pytest.raises(ConfigError, match="ORCHESTRA_MODELS_BACKENDS"):
            await build_router(ModelSettings(backends=[]))

    def test_yaml_errors_name_the_field(self, tmp_path) -> None:  # type: ignore[no-untyped-def]
        """A bad YAML setting names the file and the field."""
        from orchestra.models.settings import ModelSettings

        f = tmp_path / "models.yaml"
        f.write_text("backends:\n  - model: gpt-4o\n")
        with pytest.raises(ConfigError, match=r"models.yaml: backends.0.model"):
            ModelSettings.from_yaml(f)
