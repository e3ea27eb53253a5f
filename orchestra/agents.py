"""Agent profiles, and the skills that turn them into graph steps.

An :class:`AgentProfile` is a YAML file in ``agents/`` (role, instructions, the skills the
agent may use, and its model-tier policy)::

    name: summarizer
    role: a concise technical summarizer
    instructions: Summarize the text in at most three sentences.
    allowed_skills: []
    tiers: {min_tier: 0, max_tier: 1, quality: 0.5}
    max_tokens: 200
    prompt: "Summarize this:\\n{text}"
    check: {min_chars: 20, max_chars: 600, validator: grounded}

:func:`agent_skill` turns a profile and a :class:`~orchestra.models.base.ChatModel` (normally
the :class:`~orchestra.models.router.ModelRouter`) into a :class:`~orchestra.skills.Skill`: a
step's candidate like any tool.  Its function renders the prompt from the step's input
fields, calls the model (the router picks the backend within the profile's tiers and the
run's budget) and returns ``{"text", "model", "cost_usd"}``.

A profile's ``check`` (:class:`OutputCheck`: a JSON schema, length bounds, required mentions,
a named validator) is the step's quality gate: an answer that fails it is a failure of the
backend that gave it, and the router cascades to the next tier within the budget; when no
tier gives an acceptable answer the step fails and the run reroutes to its other candidates.

Profiles are registered explicitly in an :class:`AgentRegistry` (no code loaded by import
path from a spec); :func:`bundled_agents` reads the project's ``agents/`` folder.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from orchestra.errors import ModelError, SpecError, UnknownSkillError
from orchestra.models.base import ChatMessage, ChatModel, ChatResponse
from orchestra.models.budget import book_unreserved, meter_model_call
from orchestra.skills import Skill

__all__ = [
    "VALIDATORS",
    "AgentInput",
    "AgentOutput",
    "AgentProfile",
    "AgentRegistry",
    "AgentSpecError",
    "AnswerRejected",
    "OutputCheck",
    "TierPolicy",
    "Validator",
    "agent_skill",
    "bundled_agents",
    "grounded",
]


class AgentSpecError(SpecError):
    """A malformed agent profile; ``field`` names what to fix."""


class TierPolicy(BaseModel):
    """Which model tiers an agent may use, and how much quality it buys (router knob)."""

    model_config = ConfigDict(extra="forbid")

    min_tier: int | None = Field(default=None, ge=0)
    max_tier: int | None = Field(default=None, ge=0)
    quality: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> TierPolicy:
        if (
            self.min_tier is not None
            and self.max_tier is not None
            and self.min_tier > self.max_tier
        ):
            raise ValueError("min_tier must be <= max_tier")
        return self


Validator = Callable[[str, Mapping[str, Any]], str | None]
"""A validator function: ``(answer, step inputs) -> why it is not acceptable, or None``."""

_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"https?://\S+")


def grounded(answer: str, inputs: Mapping[str, Any]) -> str | None:
    """The answer invents nothing checkable: every number, e-mail address and URL in it
    appears in the inputs, and when the inputs hold numbers it keeps at least one.

    Rejects a small model's drift (dates, addresses and codes that were never given)."""
    source = "\n".join(str(v) for v in inputs.values())
    src_numbers = {n.replace(",", "") for n in _NUMBER.findall(source)}
    numbers = {n.replace(",", "") for n in _NUMBER.findall(answer)}
    invented = sorted(n for n in numbers if n not in src_numbers)
    if invented:
        return f"numbers not in the input: {', '.join(invented[:5])}"
    for pattern, what in ((_EMAIL, "e-mail addresses"), (_URL, "links")):
        extra = sorted({m for m in pattern.findall(answer) if m not in source})
        if extra:
            return f"{what} not in the input: {', '.join(extra[:3])}"
    if src_numbers and not numbers:
        return "keeps none of the input's numbers"
    return None


VALIDATORS: dict[str, Validator] = {"grounded": grounded}
"""The validators a profile's ``check.validator`` may name (register yours here)."""


class AnswerRejected(ModelError):
    """A model's answer failed the step's output check (and no other tier did better)."""


class OutputCheck(BaseModel):
    """An agent step's quality gate: what an acceptable answer looks like.

    ``json_schema``: the answer is JSON valid against it; ``min_chars``/``max_chars``: length
    bounds (of the stripped answer); ``must_mention``: strings the answer contains (case does
    not matter), each a ``str.format`` template over the step's inputs (``"{customer}"``);
    ``validator``: the name of a function in :data:`VALIDATORS` (``grounded``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    json_schema: dict[str, Any] | None = None
    min_chars: int | None = Field(default=None, ge=0)
    max_chars: int | None = Field(default=None, ge=1)
    must_mention: tuple[str, ...] = ()
    validator: str | None = None

    @field_validator("validator")
    @classmethod
    def _known(cls, v: str | None) -> str | None:
        if v is not None and v not in VALIDATORS:
            raise ValueError(f"unknown validator {v!r}; known: {sorted(VALIDATORS)}")
        return v

    @model_validator(mode="after")
    def _bounds(self) -> OutputCheck:
        if (
            self.min_chars is not None
            and self.max_chars is not None
            and self.min_chars > self.max_chars
        ):
            raise ValueError("min_chars must be <= max_chars")
        return self

    def problem(self, answer: str, inputs: Mapping[str, Any]) -> str | None:
        """Why ``answer`` is not acceptable for a step given ``inputs``; ``None`` if it is."""
        text = answer.strip()
        if self.min_chars is not None and len(text) < self.min_chars:
            return f"{len(text)} characters, fewer than {self.min_chars}"
        if self.max_chars is not None and len(text) > self.max_chars:
            return f"{len(text)} characters, more than {self.max_chars}"
        if self.json_schema is not None:
            import jsonschema  # type: ignore[import-untyped,unused-ignore]

            try:
                jsonschema.validate(json.loads(text), self.json_schema)
            except json.JSONDecodeError as exc:
                return f"not JSON: {exc.msg}"
            except jsonschema.ValidationError as exc:
                return f"JSON not valid against the schema: {exc.message}"
        for template in self.must_mention:
            try:
                needle = template.format_map(dict(inputs))
            except (KeyError, IndexError, ValueError):
                needle = template
            if needle.strip() and needle.strip().lower() not in text.lower():
                return f"does not mention {needle.strip()!r}"
        if self.validator is not None:
            return VALIDATORS[self.validator](text, inputs)
        return None


class AgentProfile(BaseModel):
    """An LLM agent: who it is, what it is told, which skills and model tiers it may use.

    ``prompt`` is a ``str.format`` template over the step's input fields (``{text}``);
    without one, every input field is rendered as ``name: value`` lines.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[a-z][a-z0-9_\-]*$")
    role: str = Field(min_length=1)
    instructions: str = ""
    allowed_skills: tuple[str, ...] = ()
    tiers: TierPolicy = Field(default_factory=TierPolicy)
    max_tokens: int = Field(default=256, ge=1)
    prompt: str | None = None
    check: OutputCheck | None = None
    source: str | None = Field(default=None, exclude=True)

    @classmethod
    def from_yaml(cls, path: str | Path) -> AgentProfile:
        """Load one profile; :class:`AgentSpecError` names the file and the bad field."""
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise AgentSpecError(f"cannot read profile: {exc}", source=str(p)) from exc
        if not isinstance(data, dict):
            raise AgentSpecError("a profile is a YAML mapping", source=str(p))
        try:
            return cls.model_validate({**data, "source": str(p)})
        except ValidationError as exc:
            err = exc.errors()[0]
            raise AgentSpecError(
                err["msg"], field=".".join(map(str, err["loc"])), source=str(p)
            ) from exc

    def prompt_fields(self) -> list[str]:
        """The input fields the prompt template names (empty without a template)."""
        if not self.prompt:
            return []
        return [f for _, f, _, _ in string.Formatter().parse(self.prompt) if f]

    def system_message(self) -> ChatMessage:
        """The system message: role and instructions."""
        text = f"You are {self.role}."
        if self.instructions:
            text += "\n" + self.instructions.strip()
        return ChatMessage(role="system", content=text)

    def messages(self, inputs: Mapping[str, Any]) -> list[ChatMessage]:
        """The chat for one call: system message, then the rendered user prompt."""
        if self.prompt:
            missing = [f for f in self.prompt_fields() if f not in inputs]
            if missing:
                raise AgentSpecError(
                    f"the prompt needs input field(s) {missing}, the step gave {sorted(inputs)}",
                    field="prompt",
                    source=self.source or self.name,
                )
            user = self.prompt.format_map(dict(inputs))
        else:
            user = "\n".join(f"{k}: {v}" for k, v in inputs.items())
        return [self.system_message(), ChatMessage(role="user", content=user)]

    def check_skills(self, known: Iterable[str]) -> None:
        """Raise :class:`UnknownSkillError` for an allowed skill that is not registered."""
        names = list(known)
        for i, s in enumerate(self.allowed_skills):
            if s not in names:
                raise UnknownSkillError(
                    s, field=f"allowed_skills.{i}", source=self.source or self.name, known=names
                )


class AgentInput(BaseModel):
    """The input of an agent without a prompt template: any fields, rendered as lines.

    An agent whose profile has a ``prompt`` template takes exactly the template's fields.
    """

    model_config = ConfigDict(extra="allow")


class AgentOutput(BaseModel):
    """What an agent step returns."""

    text: str
    model: str
    cost_usd: float = 0.0


def agent_skill(
    profile: AgentProfile,
    model: ChatModel,
    *,
    name: str | None = None,
    validator: Validator | None = None,
) -> Skill:
    """A :class:`Skill` that answers with ``model`` as ``profile`` (a graph step's candidate).

    The call's metadata carries the profile's tier policy and name, so a router keeps the
    agent within its tiers and learns per agent.  The profile's ``check`` and ``validator``
    (a function, checked after it) gate the answer: a router cascades past a rejected
    answer; with any other model a rejected answer fails the step (:class:`AnswerRejected`).
    Model costs are booked on the run's ledger (a router books what it routes).
    """
    metadata: dict[str, Any] = {"agent": profile.name, "role": profile.role}
    for key in ("min_tier", "max_tier", "quality"):
        val = getattr(profile.tiers, key)
        if val is not None:
            metadata[key] = val

    fields_needed = profile.prompt_fields()
    input_model: type[BaseModel] = AgentInput
    if fields_needed:
        # The prompt's fields are the step's inputs: the runtime maps exactly these.
        camel = "".join(part.capitalize() for part in profile.name.replace("-", "_").split("_"))
        input_model = create_model(  # type: ignore[call-overload]
            f"{camel}AgentInput",
            __config__=ConfigDict(extra="ignore"),
            **{f: (Any, ...) for f in dict.fromkeys(fields_needed)},
        )

    def checker(fields: Mapping[str, Any]) -> Callable[[str], str | None] | None:
        if profile.check is None and validator is None:
            return None

        def check(answer: str) -> str | None:
            problem = profile.check.problem(answer, fields) if profile.check else None
            if problem is None and validator is not None:
                problem = validator(answer.strip(), fields)
            return problem

        return check

    async def run(**fields: Any) -> AgentOutput:
        from orchestra.models.router import ModelRouter

        md = dict(metadata)
        messages = profile.messages(fields)
        check = checker(fields)
        resp: ChatResponse
        if isinstance(model, ModelRouter):
            resp = await model.chat(
                messages, max_tokens=profile.max_tokens, metadata=md, check=check
            )
        else:
            resp = await model.chat(messages, max_tokens=profile.max_tokens, metadata=md)
        if not resp.booked:
            tokens = resp.usage.input_tokens + resp.usage.output_tokens
            await book_unreserved(resp.cost_usd, tokens, label=f"agent {profile.name}")
            # a router counted its calls already; any other model made one
            routed = isinstance(model, ModelRouter)
            meter_model_call(
                calls=0 if routed else 1,
                booked_usd=resp.cost_usd,
                route=None if routed else f"model {resp.model}",
            )
        problem = check(resp.text) if check is not None else None
        if problem is not None:
            raise AnswerRejected(f"{resp.model}'s answer failed the output check: {problem}")
        return AgentOutput(text=resp.text, model=resp.model, cost_usd=resp.cost_usd)

    return Skill(
        name=name or f"agent.{profile.name}",
        description=f"LLM agent: {profile.role}",
        capability=f"agent.{profile.name}",
        tags=("agent",),
        timeout_s=600.0,
        idempotent=False,
        body=profile.instructions,
        source=profile.source,
        input_model=input_model,
        output_model=AgentOutput,
        fn=run,
    )


class AgentRegistry(Mapping[str, AgentProfile]):
    """An explicit name → profile table."""

    def __init__(self, profiles: Iterable[AgentProfile] = ()):
        self._profiles: dict[str, AgentProfile] = {}
        for p in profiles:
            self.add(p)

    def add(self, profile: AgentProfile) -> AgentProfile:
        """Register a profile; a second profile with the same name is an error."""
        if profile.name in self._profiles and self._profiles[profile.name] != profile:
            raise AgentSpecError(
                "another profile already has this name",
                field="name",
                source=profile.source or profile.name,
            )
        self._profiles[profile.name] = profile
        return profile

    def load_dir(self, folder: str | Path) -> AgentRegistry:
        """Register every ``*.yaml``/``*.yml`` profile in ``folder``."""
        root = Path(folder)
        if not root.is_dir():
            raise AgentSpecError(f"no such folder {root}", field="agents")
        for path in sorted([*root.glob("*.yaml"), *root.glob("*.yml")]):
            self.add(AgentProfile.from_yaml(path))
        return self

    def require(self, name: str) -> AgentProfile:
        """The profile named ``name``; :class:`AgentSpecError` lists the known ones."""
        try:
            return self._profiles[name]
        except KeyError:
            raise AgentSpecError(
                f"unknown agent {name!r}; known: {sorted(self._profiles)}", field="agent"
            ) from None

    def skills(self, model: ChatModel) -> list[Skill]:
        """One :func:`agent_skill` per profile, all calling ``model``."""
        return [agent_skill(p, model) for p in self._profiles.values()]

    def __getitem__(self, name: str) -> AgentProfile:
        return self.require(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._profiles)

    def __len__(self) -> int:
        return len(self._profiles)


def bundled_agents() -> AgentRegistry:
    """The profiles shipped in the project's ``agents/`` folder."""
    return AgentRegistry().load_dir(Path(__file__).resolve().parents[1] / "agents")
