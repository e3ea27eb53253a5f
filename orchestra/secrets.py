"""Secrets at rest: ``SecretStr``/``SecretBytes`` values sealed with Fernet, opened only at the call.

A run keeps every secret it is given **sealed**: a field declared ``SecretStr`` or
``SecretBytes`` (in the graph's input model, in a skill's input model, or in a skill's output
model) is stored in the run's state as an opaque string::

    orchestra-sealed:v1:s:gAAAAABn...      (a str; ``...:b:...`` for bytes)

and stays sealed wherever the state goes: checkpoints, Celery task payloads, Redis outcomes,
dead letters, ``--json`` results.  :func:`open_arguments` opens the sealed values of one
call just before the skill runs (in process or on a worker), so the skill gets the real
value (pydantic wraps it in ``SecretStr`` again), and :func:`scrub` takes that value out of
whatever the call returned or raised.

When a key is set, whole records are sealed too (:func:`seal_record`): a run's checkpointed
state, a step's outcome in Redis and the task of a dead letter, so plain fields (a card
number, a ``password: str``) are not at rest in plaintext either.

The key is ``ORCHESTRA_SECRET_KEY``: one Fernet key (``orchestra keygen`` makes one), or a
comma-separated list to rotate keys: the first seals, every one opens (``MultiFernet``).  A
run that needs to seal a secret while no key is set fails with :class:`SecretKeyError`.
"""

from __future__ import annotations

import datetime
import enum
import functools
import os
import re
import threading
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, SecretBytes, SecretStr
from pydantic_core import to_jsonable_python

from orchestra.errors import SecretKeyError

__all__ = [
    "KEY_ENV",
    "SEALED_PREFIX",
    "dump_sealed",
    "generate_key",
    "has_key",
    "is_sealed",
    "open_arguments",
    "open_record",
    "scrub",
    "seal",
    "seal_named",
    "seal_record",
    "secret_field_names",
    "unseal",
]

KEY_ENV = "ORCHESTRA_SECRET_KEY"
"""The environment variable holding the key (or comma-separated keys, newest first)."""

SEALED_PREFIX = "orchestra-sealed:v1:"
_STR, _BYTES, _RECORD = "s:", "b:", "r:"
SEALED_RE = re.compile(r"orchestra-sealed:v1:[sbr]:[A-Za-z0-9_\-=]+")
"""A sealed value inside any text (what :mod:`orchestra.redact` hides from print)."""

# (no "NAME: value" shapes in these messages: the printed line is scrubbed of those)
_HOW = (
    f"set {KEY_ENV} to a Fernet key (make one with `orchestra keygen`) on the driver and on "
    f"every worker"
)

_lock = threading.Lock()
_cached: tuple[str, Any] | None = None


def generate_key() -> str:
    """A new random key for ``ORCHESTRA_SECRET_KEY``."""
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def has_key() -> bool:
    """Whether ``ORCHESTRA_SECRET_KEY`` is set (whole records are sealed only then)."""
    return bool(os.environ.get(KEY_ENV, "").strip())


def _cipher(why: str) -> Any:
    """The ``MultiFernet`` of the configured keys; :class:`SecretKeyError` if there are none."""
    global _cached
    raw = os.environ.get(KEY_ENV, "").strip()
    if not raw:
        raise SecretKeyError(f"{why}, but {KEY_ENV} is not set; {_HOW}")
    with _lock:
        if _cached is not None and _cached[0] == raw:
            return _cached[1]
        from cryptography.fernet import Fernet, MultiFernet

        keys = []
        for i, part in enumerate(p.strip() for p in raw.split(",")):
            if not part:
                continue
            try:
                keys.append(Fernet(part.encode()))
            except (ValueError, TypeError):
                raise SecretKeyError(
                    f"{KEY_ENV} key #{i + 1} is not a Fernet key (32 url-safe base64-encoded "
                    f"bytes); make one with `orchestra keygen`"
                ) from None
        if not keys:
            raise SecretKeyError(f"{why}, but {KEY_ENV} holds no key; {_HOW}")
        cipher = MultiFernet(keys)
        _cached = (raw, cipher)
        return cipher


# --------------------------------------------------------------------------- one value


def is_sealed(value: object) -> bool:
    """Whether ``value`` is a sealed string."""
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


def seal(value: str | bytes, *, why: str = "a run holds a secret") -> str:
    """Seal one secret value (``str`` or ``bytes``) with the current key."""
    kind = _BYTES if isinstance(value, bytes) else _STR
    data = value if isinstance(value, bytes) else value.encode()
    token = _cipher(why).encrypt(data).decode()
    return f"{SEALED_PREFIX}{kind}{token}"


def unseal(value: str) -> str | bytes:
    """Open a sealed value; :class:`SecretKeyError` when no configured key opens it."""
    from cryptography.fernet import InvalidToken

    body = value[len(SEALED_PREFIX) :]
    kind, token = body[:2], body[2:]
    try:
        data: bytes = _cipher("a sealed secret must be opened").decrypt(token.encode())
    except InvalidToken:
        raise SecretKeyError(
            f"a sealed secret cannot be opened with the keys in {KEY_ENV} (it was sealed with "
            f"another key; when rotating, keep the old key after the new one)"
        ) from None
    return data if kind == _BYTES else data.decode()


# --------------------------------------------------------------------------- models


@functools.lru_cache(maxsize=1024)
def _may_hold_secrets(model: type[BaseModel]) -> bool:
    """Whether an instance of ``model`` can hold a secret value anywhere (decided from its
    declaration once, so models without one skip the walk over every dump)."""
    if model.model_config.get("extra") == "allow":
        return True
    return any(_type_may_hold(f.annotation, set()) for f in model.model_fields.values())


def _type_may_hold(tp: Any, seen: set[Any]) -> bool:
    if tp in (str, int, float, bool, bytes, type(None), datetime.date, datetime.datetime):
        return False
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        if tp in seen:
            return False
        seen.add(tp)
        if tp.model_config.get("extra") == "allow":
            return True
        return any(_type_may_hold(f.annotation, seen) for f in tp.model_fields.values())
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return False
    args = typing.get_args(tp)
    if typing.get_origin(tp) is typing.Literal:
        return False
    if args:  # list[X], dict[K, V], X | None, Annotated[X, ...]: what they hold
        return any(_type_may_hold(a, seen) for a in args if a is not Ellipsis)
    return True  # SecretStr, Any, object or anything not known to be plain


def _has_secrets(value: Any) -> bool:
    if isinstance(value, SecretStr | SecretBytes):
        return True
    if isinstance(value, BaseModel):
        return any(_has_secrets(v) for v in value.__dict__.values())
    if isinstance(value, Mapping):
        return any(_has_secrets(v) for v in value.values())
    if isinstance(value, list | tuple | set | frozenset):
        return any(_has_secrets(v) for v in value)
    return False


def _seal_tree(value: Any) -> Any:
    if isinstance(value, SecretStr | SecretBytes):
        plain = value.get_secret_value()
        # an output validated again (the driver re-checks what a worker returned) already
        # holds its sealed form: it is not sealed twice
        if isinstance(plain, bytes) and plain.startswith(SEALED_PREFIX.encode()):
            return plain.decode()
        return plain if is_sealed(plain) else seal(plain)
    if isinstance(value, Mapping):
        return {k: _seal_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_seal_tree(v) for v in value]
    return to_jsonable_python(value)


def dump_sealed(model: BaseModel) -> dict[str, Any]:
    """``model`` as JSON-able data, with every ``SecretStr``/``SecretBytes`` value sealed.

    Pydantic's own JSON dump writes ``"**********"`` in their place (the value is lost);
    this keeps it, sealed.  Without secret fields this is ``model_dump(mode="json")``.
    """
    if not _may_hold_secrets(type(model)):
        return model.model_dump(mode="json")
    data = model.model_dump(mode="python", by_alias=False)
    if not _has_secrets(data):
        return model.model_dump(mode="json")
    out: dict[str, Any] = _seal_tree(data)
    return out


def secret_field_names(models: Iterable[type[BaseModel]]) -> set[str]:
    """Top-level fields of ``models`` declared ``SecretStr``/``SecretBytes`` (or optional)."""
    names: set[str] = set()
    for m in models:
        names.update(_secret_fields_of(m))
    return names


@functools.lru_cache(maxsize=4096)
def _secret_fields_of(model: type[BaseModel]) -> frozenset[str]:
    names = set()
    for name, info in model.model_fields.items():
        ann = info.annotation
        args = getattr(ann, "__args__", ()) or ()
        if ann in (SecretStr, SecretBytes) or any(a in (SecretStr, SecretBytes) for a in args):
            names.add(name)
    return frozenset(names)


def seal_named(data: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """``data`` with the plain string values of the fields ``names`` sealed."""
    out = dict(data)
    for n in names:
        v = out.get(n)
        if isinstance(v, SecretStr | SecretBytes):
            v = v.get_secret_value()
        if isinstance(v, str | bytes) and not is_sealed(v):
            out[n] = seal(v, why=f"input field {n!r} is a secret")
    return out


# --------------------------------------------------------------------------- at the call


def open_arguments(arguments: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The arguments of one call with their sealed values opened, and those plain values.

    The skill gets the returned arguments; :func:`scrub` takes the plain values back out of
    what it returned.
    """
    if not arguments or not any(_contains_sealed(v) for v in arguments.values()):
        return dict(arguments), []  # the common case: nothing sealed, nothing to open
    opened: list[str] = []

    def walk(v: Any) -> Any:
        if is_sealed(v):
            plain = unseal(v)
            opened.append(plain if isinstance(plain, str) else plain.decode("utf-8", "replace"))
            return plain
        if isinstance(v, Mapping):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    out = {k: walk(v) for k, v in arguments.items()}
    return out, opened


def _contains_sealed(v: Any) -> bool:
    if isinstance(v, str):
        return v.startswith(SEALED_PREFIX)
    if isinstance(v, Mapping):
        return any(_contains_sealed(x) for x in v.values())
    if isinstance(v, list):
        return any(_contains_sealed(x) for x in v)
    return False


_HIDDEN = "[REDACTED]"
_MIN_SCRUB = 4  # shorter secrets would blank out ordinary words


def scrub(value: Any, secrets: Iterable[str]) -> Any:
    """``value`` (strings, mappings, lists) with every one of ``secrets`` replaced."""
    found = [s for s in secrets if len(s) >= _MIN_SCRUB]
    if not found:
        return value

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            for s in found:
                if s in v:
                    v = v.replace(s, _HIDDEN)
            return v
        if isinstance(v, Mapping):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    return walk(value)


# --------------------------------------------------------------------------- whole records


def seal_record(text: str) -> str:
    """A whole record (a checkpointed state, a step outcome): sealed when a key is set.

    Without a key it is returned as it is (plain fields stay plain; secrets inside it are
    sealed one by one anyway).
    """
    if not has_key():
        return text
    token = _cipher("a record is sealed").encrypt(text.encode()).decode()
    return f"{SEALED_PREFIX}{_RECORD}{token}"


def open_record(text: str | bytes) -> str:
    """The plain text of a record written by :func:`seal_record` (plain records pass)."""
    if isinstance(text, bytes):
        text = text.decode()
    if not text.startswith(SEALED_PREFIX):
        return text
    plain = unseal(text)
    return plain if isinstance(plain, str) else plain.decode()
