"""Router configuration from the environment (``ORCHESTRA_MODELS_*``) or a YAML file.

::

    ORCHESTRA_MODELS_BACKENDS='[
      {"model": "hosted_vllm/smollm2-135m-instruct", "api_base": "http://127.0.0.1:8000/v1", "tier": 0},
      {"model": "openai/gpt-4o-mini", "tier": 1},
      {"model": "anthropic/claude-sonnet-4-5", "tier": 2}
    ]'
    ORCHESTRA_MODELS_QUALITY=0.7            # the policy knob, see RoutingPolicy
    ORCHESTRA_MODELS_BUDGET_USD=0.50        # hard budget of each run
    ORCHESTRA_MODELS_REDIS_URL=redis://...  # share each run's budget across workers

or the same keys in a YAML file read with :meth:`ModelSettings.from_yaml`.
:func:`build_router` turns the settings into a :class:`~orchestra.models.router.ModelRouter`
with the run's ledger.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestra.errors import ConfigError
from orchestra.models.backends import Backend
from orchestra.models.budget import InMemoryLedger, Ledger, RedisLedger
from orchestra.models.policy import SuccessPredictor, load_rows
from orchestra.models.router import ModelRouter

__all__ = ["ModelSettings", "build_router"]


class ModelSettings(BaseSettings):
    """Backends, the quality knob and the per-run budget of the model router."""

    model_config = SettingsConfigDict(env_prefix="ORCHESTRA_MODELS_", extra="forbid")

    backends: list[Backend] = Field(default_factory=list)
    quality: float = Field(default=0.7, ge=0, le=1)
    budget_usd: float | None = Field(default=None, ge=0)
    budget_tokens: int | None = Field(default=None, ge=0)
    redis_url: str | None = None
    routing_rows: Path | None = None
    default_max_tokens: int | None = Field(default=512, ge=1)

    @classmethod
    def from_yaml(cls, path: str | Path) -> ModelSettings:
        """Read settings from a YAML mapping; :class:`ConfigError` names the file and field."""
        p = Path(path)
        try:
            data: Any = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read model settings: {exc}", source=str(p)) from exc
        if not isinstance(data, dict):
            raise ConfigError("model settings are a YAML mapping", source=str(p))
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ConfigError(
                err["msg"], field=".".join(map(str, err["loc"])), source=str(p)
            ) from exc


async def build_router(
    settings: ModelSettings | None = None, *, run_id: str | None = None
) -> ModelRouter:
    """A router: its backends, a predictor (fitted on ``routing_rows`` if set) and, when a
    budget or ``redis_url`` is set, a ledger of its own for run ``run_id`` (in Redis when
    ``redis_url`` is set, so workers share it).  Without one, each call books on the ledger
    of the run that makes it (``Runner.run(..., budget_usd=...)``)."""
    s = settings if settings is not None else ModelSettings()
    if not s.backends:
        raise ConfigError(
            "no model backends configured; set ORCHESTRA_MODELS_BACKENDS (a JSON list of "
            '{"model": "provider/name", "tier": N, ...}) or pass ModelSettings(backends=[...])',
            field="backends",
        )
    ledger: Ledger | None
    if s.budget_usd is None and s.budget_tokens is None and not s.redis_url:
        ledger = None  # each call books on the ledger of the run that makes it
    elif s.redis_url:
        import uuid

        import redis.asyncio as aredis

        ledger = await RedisLedger.create(
            aredis.Redis.from_url(s.redis_url),
            run_id or uuid.uuid4().hex,
            limit_usd=s.budget_usd,
            limit_tokens=s.budget_tokens,
        )
    else:
        ledger = InMemoryLedger(s.budget_usd, s.budget_tokens, run_id=run_id)
    predictor = SuccessPredictor()
    if s.routing_rows is not None:
        predictor.fit(load_rows(s.routing_rows))
    return ModelRouter(
        s.backends,
        ledger=ledger,
        predictor=predictor,
        quality=s.quality,
        default_max_tokens=s.default_max_tokens,
    )
