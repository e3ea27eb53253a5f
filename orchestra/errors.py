"""Every error Orchestra raises, in one place.

The hierarchy::

    OrchestraError
    ├── SpecError                  the developer's mistake; names the offending field/file
    │   ├── GraphSpecError         a malformed graph (cycle, unknown skill, missing input, bad cost…)
    │   ├── SkillSpecError         a malformed skill (bad SKILL.md front matter, bad signature…)
    │   ├── UnknownSkillError      a step or a query names a skill the registry does not hold
    │   ├── UntrustedPathError     a data file (YAML graph, fleet file) names code outside its trust
    │   └── ConfigError            a setting that cannot work (bad URL, negative budget…)
    │       └── SecretKeyError     a secret must be sealed or opened and ORCHESTRA_SECRET_KEY can't
    ├── RunError                   something went wrong while a run was executing
    │   ├── StepFailed             one attempt of a skill failed (base of the three below)
    │   │   ├── ToolRaised         the skill raised an exception
    │   │   ├── ToolTimeout        the skill did not answer within its timeout
    │   │   ├── MalformedOutput    the skill returned output that fails its output schema
    │   │   └── MissingStepInput   an earlier step's skill did not return a field this one needs
    │   ├── RunInputError          the run's input lacks or mistypes a field the graph needs
    │   ├── ExecutorError          the executor (e.g. the Celery fleet) could not run a step
    │   ├── RunLeaseHeld           another driver holds the run's lease (a second --resume)
    │   ├── LeaseLost              this driver's lease was taken over: it must stop at once
    │   ├── ModelError             an LLM backend failed (HTTP error, timeout, rate limit)
    │   └── BudgetExceeded         a call would cross the run's hard budget
    └── ControlSignal              not an error: a run changing course on purpose
        └── Escalation             the run stopped and waits for a human

Third-party errors (Celery, litellm, networkx, pydantic) are translated at the edge into the
most specific class here with ``raise ... from exc``.  Errors that cross a process boundary
travel as :class:`ErrorPayload` (JSON) and are rebuilt with :func:`error_from_payload`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

__all__ = [
    "BudgetExceeded",
    "ConfigError",
    "ControlSignal",
    "ErrorPayload",
    "Escalation",
    "ExecutorError",
    "GraphSpecError",
    "LeaseLost",
    "MalformedOutput",
    "MissingStepInput",
    "ModelError",
    "OrchestraError",
    "RunError",
    "RunInputError",
    "RunLeaseHeld",
    "SecretKeyError",
    "SkillSpecError",
    "SpecError",
    "StepFailed",
    "ToolRaised",
    "ToolTimeout",
    "UnknownSkillError",
    "UntrustedPathError",
    "did_you_mean",
    "error_from_payload",
    "error_kind",
    "install_hint",
]


class OrchestraError(Exception):
    """Base of every exception Orchestra raises on purpose."""


# --------------------------------------------------------------------------- spec errors


class SpecError(OrchestraError):
    """A specification is wrong; ``field`` is the dotted path of what to fix."""

    def __init__(self, message: str, *, field: str | None = None, source: str | None = None):
        self.field = field
        self.source = source
        where = ""
        if source:
            where += f"{source}: "
        if field:
            where += f"{field}: "
        super().__init__(f"{where}{message}")


class GraphSpecError(SpecError):
    """A graph declaration that cannot run (cycle, unknown skill, missing input, bad cost…)."""


class SkillSpecError(SpecError):
    """A skill declaration that cannot be loaded (bad front matter, bad signature…)."""


class UnknownSkillError(SpecError):
    """A name that no registered skill carries."""

    def __init__(
        self,
        name: str,
        *,
        field: str | None = None,
        source: str | None = None,
        known: list[str] | None = None,
    ):
        self.name = name
        super().__init__(
            f"unknown skill {name!r}{did_you_mean(name, known or [])}", field=field, source=source
        )


class ConfigError(SpecError):
    """A setting that cannot work."""


class SecretKeyError(ConfigError):
    """A secret must be sealed or opened, and ``ORCHESTRA_SECRET_KEY`` is missing or wrong."""


class UntrustedPathError(SpecError):
    """A data file (a YAML/JSON graph, a fleet file) names code outside the paths it may name.

    Such a file may only name catalogs and skill code inside its own directory tree or under
    ``ORCHESTRA_TRUSTED_PATHS`` or its project's ``[tool.orchestra] trusted-paths``; nothing is
    imported before this is checked.
    """


def did_you_mean(name: str, known: list[str] | tuple[str, ...], *, n: int = 3) -> str:
    """`` (did you mean: a, b?)`` with the ``n`` known names closest to ``name``, or ``""``.

    Closest first: the edit distance, with a name that contains ``name`` (or is contained
    in it) counted as close as one edit.
    """
    if not known:
        return ""

    def score(k: str) -> tuple[int, str]:
        a, b = k.lower(), name.lower()
        d = _distance(a, b)
        if a in b or b in a:
            d = min(d, 1)
        return d, k

    close = sorted(dict.fromkeys(known), key=score)[:n]
    return f" (did you mean: {', '.join(close)}?)"


def error_kind(error_type: str) -> str:
    """The kind of a step failure (``exception``, ``timeout``, ``malformed``, ``budget``,
    ``config``) from its error class name: the decision log's ``error_kind`` and the spans'
    ``error.type``.  ``config``: whoever ran the call is set up wrong (a worker without
    ``ORCHESTRA_SECRET_KEY``), not the tool."""
    return {
        "ToolTimeout": "timeout",
        "MalformedOutput": "malformed",
        "BudgetExceeded": "budget",
        "SecretKeyError": "config",
    }.get(error_type, "exception")


def install_hint(extra: str) -> str:
    """How to install one of Orchestra's extras (it is not on PyPI under that name)."""
    return (
        f"install the {extra} extra from the Orchestra checkout: "
        f".venv/bin/pip install -e '.[{extra}]' (make install-dev installs every extra)"
    )


def _distance(a: str, b: str) -> int:
    """Levenshtein distance, for 'did you mean' hints."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


# --------------------------------------------------------------------------- run errors


class RunError(OrchestraError):
    """Something failed while a run executed."""


class StepFailed(RunError):
    """One attempt of one skill failed. ``kind`` is ``exception``, ``timeout`` or ``malformed``."""

    kind = "exception"

    def __init__(self, message: str, *, step: str | None = None, skill: str | None = None):
        self.step = step
        self.skill = skill
        super().__init__(message)


class ToolRaised(StepFailed):
    """The skill raised."""

    kind = "exception"


class ToolTimeout(StepFailed):
    """The skill did not answer within its timeout."""

    kind = "timeout"


class MalformedOutput(StepFailed):
    """The skill's output failed its output schema."""

    kind = "malformed"


class MissingStepInput(StepFailed):
    """A step cannot run: the skill chosen for an earlier step (after a reroute) did not return
    a field this step needs.  A step failure, healed like any other; not bad run input."""

    kind = "input"


class RunInputError(RunError):
    """The run's input does not satisfy what the graph needs."""


class ExecutorError(RunError):
    """The executor could not run a step (broker down, worker lost past its redeliveries…)."""


class RunLeaseHeld(RunError):
    """Another driver holds the lease of ``run_id``: this one may not drive the run."""

    def __init__(self, run_id: str, holder: str, expires_at: float):
        import time

        self.run_id = run_id
        self.holder = holder
        self.expires_at = expires_at
        left = max(0.0, expires_at - time.time())
        super().__init__(
            f"run {run_id} is being driven by {holder} (its lease runs {left:.0f}s more unless "
            f"renewed): only one driver at a time; if that driver is dead, resume after its "
            f"lease expires"
        )


class LeaseLost(RunError):
    """This driver's lease of a run expired and another driver took it (fencing token
    superseded): the run is someone else's now, so this driver stops without writing."""

    def __init__(self, run_id: str, holder: str, token: int, detail: str = ""):
        self.run_id = run_id
        self.holder = holder
        self.token = token
        super().__init__(
            f"driver {holder} lost the lease of run {run_id} (token {token})"
            + (f": {detail}" if detail else "")
            + "; it stops without writing the run's checkpoint"
        )


class ModelError(RunError):
    """An LLM backend failed."""


class BudgetExceeded(RunError):
    """A call would cross the run's hard budget."""


# --------------------------------------------------------------------------- control signals


class ControlSignal(Exception):
    """A run changing course on purpose; not an error."""


class Escalation(ControlSignal):
    """The run cannot continue without a human."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


# --------------------------------------------------------------------------- wire format


class ErrorPayload(BaseModel):
    """An error as JSON, to cross a process boundary (Celery results, checkpoints)."""

    type: str
    message: str
    step: str | None = None
    skill: str | None = None


_BY_NAME: dict[str, type[Exception]] = {
    cls.__name__: cls
    for cls in (
        StepFailed,
        ToolRaised,
        ToolTimeout,
        MalformedOutput,
        MissingStepInput,
        RunInputError,
        ExecutorError,
        ModelError,
        BudgetExceeded,
        RunError,
    )
}


def to_payload(
    exc: BaseException, *, step: str | None = None, skill: str | None = None
) -> ErrorPayload:
    """Turn an exception into its wire form."""
    return ErrorPayload(type=type(exc).__name__, message=str(exc), step=step, skill=skill)


def error_from_payload(payload: ErrorPayload | dict[str, Any]) -> RunError:
    """Rebuild an error that crossed a process boundary; unknown types become ``RunError``."""
    p = payload if isinstance(payload, ErrorPayload) else ErrorPayload.model_validate(payload)
    cls = _BY_NAME.get(p.type, ToolRaised)
    if issubclass(cls, StepFailed):
        return cls(p.message, step=p.step, skill=p.skill)
    err = cls(p.message)
    assert isinstance(err, RunError)
    return err
