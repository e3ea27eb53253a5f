"""Settings (``ORCHESTRA_*`` environment variables), and reading a YAML settings file.

A leaf: nothing of the runtime, the fleet or the checkpoints is imported here (building a
runner from settings is :mod:`orchestra.building`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings", "parse_duration", "read_yaml_model"]

M = TypeVar("M", bound=BaseModel)


def read_yaml_model(path: Path, model: type[M], *, what: str) -> M:
    """The YAML file ``path`` (a ``what``: "fleet file", "graph registry file") read into
    ``model``; a missing file, bad YAML or a wrong field is a
    :class:`~orchestra.errors.ConfigError` naming the file (and the field)."""
    import yaml

    from orchestra.errors import ConfigError

    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no such {what}", source=str(path)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", source=str(path)) from exc
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        e = exc.errors()[0]
        raise ConfigError(e["msg"], field=".".join(map(str, e["loc"])), source=str(path)) from exc


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
    retention                    ORCHESTRA_RETENTION                         none (e.g. ``30d``: finished
                                                                             runs idle longer are pruned
                                                                             when a store opens)
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
    retention: str = "none"
    log_level: str = "WARNING"
    log_json: bool | None = None


def get_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(text: str | None, *, field: str = "duration") -> float | None:
    """Seconds in ``text``: ``90``, ``90s``, ``15m``, ``12h``, ``7d``, ``2w``; ``None`` for
    ``None``, empty, ``none`` or ``off``.  :class:`~orchestra.errors.ConfigError` otherwise."""
    if text is None:
        return None
    t = text.strip().lower()
    if t in ("", "none", "off", "never"):
        return None
    unit = _UNITS.get(t[-1])
    number = t[:-1] if unit is not None else t
    try:
        value = float(number) * (unit or 1.0)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        from orchestra.errors import ConfigError

        raise ConfigError(
            f"{field}: {text!r} is not a duration (use e.g. 90s, 15m, 12h, 7d, 2w or none)",
            field=field,
        )
    return value
