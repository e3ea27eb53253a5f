"""Settings (``ORCHESTRA_*`` environment variables).

A leaf: nothing of the runtime, the fleet or the checkpoints is imported here (building a
runner from settings is :mod:`orchestra.building`).
"""

from __future__ import annotations

from typing import Any

from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    """Every setting, its environment variable and its default.

    ===========================  ==========================================  ==========================
    setting                      environment variable                        default
    ===========================  ==========================================  ==========================
    broker_url                   ORCHESTRA_BROKER_URL                        redis://127.0.0.1:6379/0
    result_backend               ORCHESTRA_RESULT_BACKEND                    redis://127.0.0.1:6379/1
    health_url                   ORCHESTRA_HEALTH_URL                        redis://127.0.0.1:6379/2
    fleet                        ORCHESTRA_FLEET                             false
    cooldown_s                   ORCHESTRA_COOLDOWN_S                        30
    max_attempts                 ORCHESTRA_MAX_ATTEMPTS                      3
    max_amount                   ORCHESTRA_MAX_AMOUNT                        (none)
    checkpoint_url               ORCHESTRA_CHECKPOINT_URL                    sqlite:///.orchestra/runs.sqlite
                                                                             (``none``: no checkpoints)
    log_level                    ORCHESTRA_LOG_LEVEL                         WARNING
    log_json                     ORCHESTRA_LOG_JSON                          (auto: JSON unless a TTY)
    ===========================  ==========================================  ==========================
    """

    model_config = SettingsConfigDict(env_prefix="ORCHESTRA_", extra="ignore")

    broker_url: str = "redis://127.0.0.1:6379/0"
    result_backend: str = "redis://127.0.0.1:6379/1"
    health_url: str = "redis://127.0.0.1:6379/2"
    fleet: bool = False
    cooldown_s: float = 30.0
    max_attempts: int = 3
    max_amount: float | None = None
    checkpoint_url: str = "sqlite:///.orchestra/runs.sqlite"
    log_level: str = "WARNING"
    log_json: bool | None = None


def get_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
