"""Skills: the tools a step can be served by, and the registry that names them.

A skill is a callable with a pydantic input model and a pydantic output model, plus the
numbers the router weighs it by (``cost``, ``latency_ms``, ``reliability``).  Declare one
with :func:`skill` on a typed function::

    @skill(cost=0.002, latency_ms=120, capability="payments.charge")
    async def stripe_charge(amount: float, currency: str = "USD") -> ChargeReceipt:
        ...

or load one from a folder with a ``SKILL.md`` (see :mod:`orchestra.catalog`).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any, get_type_hints, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from orchestra.errors import SkillSpecError, UnknownSkillError

__all__ = [
    "AnyInput",
    "AnyOutput",
    "Skill",
    "SkillRegistry",
    "skill",
]


class AnyInput(BaseModel):
    """Input model of a skill that takes whatever it is given."""

    model_config = ConfigDict(extra="allow")


class AnyOutput(BaseModel):
    """Output model of a skill that may return any mapping."""

    model_config = ConfigDict(extra="allow")


SkillFn = Callable[..., Any] | Callable[..., Awaitable[Any]]


class Skill(BaseModel):
    """A tool a step can use, with what the router needs to weigh it.

    ``cost`` is in USD per call (or any unit, as long as one graph is consistent);
    ``latency_ms`` the expected latency; ``reliability`` the prior chance a call succeeds.
    ``idempotent`` says a call may safely run twice (redelivery after a worker crash).
    ``compensate`` names the skill that undoes a call (``void_charge`` for ``stripe_charge``):
    a run that abandons a completed step (backtracking, or work beyond a demoted goal) calls
    it with the step's arguments and output.  A step whose skill is neither idempotent nor
    compensable is never abandoned.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    name: str = Field(min_length=1)
    description: str = ""
    capability: str = ""
    cost: float = 0.0
    latency_ms: float = 0.0
    reliability: float = 1.0
    timeout_s: float = 30.0
    idempotent: bool = True
    compensate: str | None = None
    milestone: bool = False
    tags: tuple[str, ...] = ()
    body: str = ""
    source: str | None = None
    input_model: type[BaseModel] = AnyInput
    output_model: type[BaseModel] = AnyOutput
    fn: Any = Field(default=None, exclude=True, repr=False)
    #: The compensating skill itself, when ``@skill(compensate=...)`` was given one (a graph
    #: that registers this skill registers it too).
    compensator: Any = Field(default=None, exclude=True, repr=False)
    #: Optional health probe: a callable (sync or async) returning ``None`` when the skill is
    #: available, or the reason it is not (see :class:`orchestra.monitors.ProbeMonitor`).
    probe: Any = Field(default=None, exclude=True, repr=False)

    @field_validator("cost", "latency_ms")
    @classmethod
    def _non_negative(cls, v: float) -> float:
        if not math.isfinite(v) or v < 0:
            raise ValueError("must be a finite number >= 0")
        return v

    @field_validator("reliability")
    @classmethod
    def _probability(cls, v: float) -> float:
        if not 0 < v <= 1:
            raise ValueError("must be in (0, 1]")
        return v

    @field_validator("timeout_s")
    @classmethod
    def _positive(cls, v: float) -> float:
        if not v > 0:
            raise ValueError("must be > 0")
        return v

    # ----------------------------------------------------------------- calling

    @property
    def is_async(self) -> bool:
        return _is_coroutine_fn(self.fn)

    def parse_input(self, data: Mapping[str, Any]) -> BaseModel:
        """Validate ``data`` against the input model (raises ``ValidationError``)."""
        return self.input_model.model_validate(dict(data))

    def parse_output(self, value: Any) -> dict[str, Any]:
        """Validate what the function returned; return it as a JSON-able dict.

        Raises ``ValidationError`` (or ``TypeError``) when the output is malformed.
        """
        if isinstance(value, BaseModel):
            # python mode keeps SecretStr values whole (JSON mode would mask them)
            value = value.model_dump(mode="python")
        if _wraps_result(self.output_model) and not (
            isinstance(value, Mapping) and set(value) == {"result"}
        ):
            value = {"result": value}
        if not isinstance(value, Mapping):
            raise TypeError(f"skill {self.name!r} returned {type(value).__name__}, not a mapping")
        model = self.output_model.model_validate(dict(value))
        from orchestra.secrets import dump_sealed  # SecretStr outputs stay usable, sealed

        return dump_sealed(model)

    async def acall(self, arguments: Mapping[str, Any]) -> Any:
        """Call the function with validated arguments (sync functions run in a thread)."""
        if self.fn is None:
            if self.milestone:
                return {}
            raise SkillSpecError("has no implementation to call", field="fn", source=self.name)
        return await self.invoke(self.parse_input(arguments))

    async def invoke(self, parsed: BaseModel) -> Any:
        """Call the function with arguments already validated by :meth:`parse_input`."""
        if self.fn is None:
            return await self.acall({})  # a milestone's nothing, or the missing-fn error
        kwargs = _kwargs_for(self.fn, parsed)
        if self.is_async:
            return await self.fn(**kwargs)
        return await asyncio.to_thread(self.fn, **kwargs)

    def describe(self) -> str:
        """Text a retriever indexes: name, description, capability, parameters and body."""
        params = " ".join(
            f"{n} {f.description or ''}".strip() for n, f in self.input_model.model_fields.items()
        )
        return "\n".join(
            p for p in (self.name, self.description, self.capability, params, self.body) if p
        )


# Cached by the function or model itself (not on the frozen Skill: ``model_copy`` would carry
# a cached answer over to a copy with another ``fn``).
def _is_coroutine_fn(fn: Any) -> bool:
    try:
        return _is_coroutine_fn_cached(fn)
    except TypeError:  # an unhashable callable
        return inspect.iscoroutinefunction(fn)


@functools.lru_cache(maxsize=4096)
def _is_coroutine_fn_cached(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn)


@functools.lru_cache(maxsize=4096)
def _wraps_result(model: type[BaseModel]) -> bool:
    """Whether ``model`` is ``{"result": ...}`` (a bare return value is wrapped in it)."""
    return model.model_fields.keys() == {"result"}


def _kwargs_for(fn: Callable[..., Any], parsed: BaseModel) -> dict[str, Any]:
    try:
        whole, names, var_kw = _call_shape(fn)
    except TypeError:  # an unhashable callable: read its signature every time
        whole, names, var_kw = _call_shape.__wrapped__(fn)
    if whole is not None:
        return {whole: parsed}
    data = {name: getattr(parsed, name) for name in type(parsed).model_fields}
    if var_kw:
        data.update(parsed.model_extra or {})
        return data
    return {k: v for k, v in data.items() if k in names}


@functools.lru_cache(maxsize=4096)
def _call_shape(fn: Callable[..., Any]) -> tuple[str | None, frozenset[str], bool]:
    """How ``fn`` takes its arguments (read once per function, not once per call): the name
    of its one parameter if that takes the whole input model, its parameter names, and
    whether it takes ``**kwargs``."""
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    whole = (
        params[0].name if len(params) == 1 and _annotation_is_model(fn, params[0].name) else None
    )
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    return whole, frozenset(sig.parameters), var_kw


def _annotation_is_model(fn: Callable[..., Any], name: str) -> bool:
    try:
        hint = get_type_hints(fn).get(name)
    except Exception:
        return False
    return isinstance(hint, type) and issubclass(hint, BaseModel)


def _models_from_signature(
    fn: Callable[..., Any], name: str
) -> tuple[type[BaseModel], type[BaseModel]]:
    try:
        hints = get_type_hints(fn)
    except Exception as exc:
        raise SkillSpecError(f"cannot read type hints: {exc}", source=name) from exc
    sig = inspect.signature(fn)
    params = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    if len(params) == 1 and _annotation_is_model(fn, params[0].name):
        input_model: type[BaseModel] = hints[params[0].name]
    else:
        fields: dict[str, Any] = {}
        for p in params:
            if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.POSITIONAL_ONLY):
                raise SkillSpecError(
                    f"parameter {p.name!r} must be passable by keyword", field=p.name, source=name
                )
            ann = hints.get(p.name, Any)
            default = ... if p.default is inspect.Parameter.empty else p.default
            fields[p.name] = (ann, default)
        config = (
            ConfigDict(extra="allow")
            if len(params) != len(sig.parameters)
            else ConfigDict(extra="ignore")
        )
        input_model = create_model(  # type: ignore[call-overload]
            f"{_camel(name)}Input", __config__=config, **fields
        )
    ret = hints.get("return", Any)
    if isinstance(ret, type) and issubclass(ret, BaseModel):
        output_model: type[BaseModel] = ret
    elif ret is Any or ret is inspect.Signature.empty or ret in (dict, Mapping):
        output_model = AnyOutput
    else:
        output_model = create_model(f"{_camel(name)}Output", result=(ret, ...))
    return input_model, output_model


def _camel(name: str) -> str:
    return "".join(
        part.capitalize() for part in name.replace("-", "_").replace(".", "_").split("_")
    )


@overload
def skill(fn: SkillFn, /) -> Skill: ...


@overload
def skill(
    *,
    name: str | None = None,
    description: str | None = None,
    capability: str = "",
    cost: float = 0.0,
    latency_ms: float = 0.0,
    reliability: float = 1.0,
    timeout_s: float = 30.0,
    idempotent: bool = True,
    compensate: Skill | str | None = None,
    tags: Iterable[str] = (),
) -> Callable[[SkillFn], Skill]: ...


def skill(
    fn: SkillFn | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    capability: str = "",
    cost: float = 0.0,
    latency_ms: float = 0.0,
    reliability: float = 1.0,
    timeout_s: float = 30.0,
    idempotent: bool = True,
    compensate: Skill | str | None = None,
    tags: Iterable[str] = (),
) -> Skill | Callable[[SkillFn], Skill]:
    """Turn a typed function into a :class:`Skill`.

    Parameters become the input model, the return annotation the output model (a pydantic
    model, or any type, wrapped as ``{"result": value}``).  The docstring is the description.
    ``compensate`` is the skill (or its name) that undoes a call of this one.
    """
    if compensate is not None and not isinstance(compensate, Skill | str):
        raise SkillSpecError(
            f"must be a Skill or a skill name, not {type(compensate).__name__}",
            field="compensate",
            source=name or getattr(fn, "__name__", None),
        )

    def wrap(f: SkillFn) -> Skill:
        skill_name = name or f.__name__
        input_model, output_model = _models_from_signature(f, skill_name)
        try:
            return Skill(
                name=skill_name,
                description=description if description is not None else inspect.getdoc(f) or "",
                capability=capability,
                cost=cost,
                latency_ms=latency_ms,
                reliability=reliability,
                timeout_s=timeout_s,
                idempotent=idempotent,
                compensate=compensate.name if isinstance(compensate, Skill) else compensate,
                compensator=compensate if isinstance(compensate, Skill) else None,
                tags=tuple(tags),
                input_model=input_model,
                output_model=output_model,
                fn=f,
                source=f"{f.__module__}.{f.__qualname__}",
            )
        except ValidationError as exc:
            err = exc.errors()[0]
            raise SkillSpecError(
                err["msg"], field=".".join(map(str, err["loc"])), source=skill_name
            ) from exc

    return wrap(fn) if fn is not None else wrap


class SkillRegistry(Mapping[str, Skill]):
    """An explicit name → skill table (no loading code by import path from a spec)."""

    def __init__(self, skills: Iterable[Skill] = ()):
        self._skills: dict[str, Skill] = {}
        for s in skills:
            self.add(s)

    def add(self, s: Skill, *, replace: bool = False) -> Skill:
        if not replace and s.name in self._skills and self._skills[s.name] is not s:
            raise SkillSpecError(
                "a different skill with this name is already registered",
                field="name",
                source=s.name,
            )
        self._skills[s.name] = s
        if s.compensator is not None and s.compensator.name not in self._skills:
            self.add(s.compensator)
        return s

    def extend(self, skills: Iterable[Skill]) -> None:
        for s in skills:
            self.add(s)

    def require(self, name: str, *, field: str | None = None) -> Skill:
        try:
            return self._skills[name]
        except KeyError:
            raise UnknownSkillError(name, field=field, known=list(self._skills)) from None

    def __getitem__(self, name: str) -> Skill:
        return self.require(name)

    def __contains__(self, name: object) -> bool:
        return name in self._skills

    def __iter__(self) -> Iterator[str]:
        return iter(self._skills)

    def __len__(self) -> int:
        return len(self._skills)

    def __repr__(self) -> str:
        return f"SkillRegistry({sorted(self._skills)})"
