"""Skill catalogs: folders of ``SKILL.md`` files (and the Python behind them) loaded as skills.

A catalog is a folder.  Every sub-folder holding a ``SKILL.md`` is one skill::

    skills/
      currency_convert/
        SKILL.md        YAML front matter + Markdown body
        skill.py        the implementation (or impl.py): a function named ``run``
                        or whatever ``entrypoint:`` names

The front matter of an Orchestra skill::

    ---
    name: currency_convert
    description: Convert an amount of money between currencies.
    capability: finance.fx
    cost: 0.0001            # USD per call (default 0)
    latency_ms: 5
    reliability: 0.999
    timeout_s: 5
    idempotent: true
    compensate: null        # the skill that undoes a call (a skill of the same catalog)
    tags: [finance, currency]
    entrypoint: convert     # default: run
    input:                  # JSON schema of the arguments
      type: object
      properties:
        amount: {type: number, description: The amount to convert}
      required: [amount]
    output: {...}           # JSON schema of the result (optional)
    ---

Files written for other agents in the common Agent Skills format (front matter with only
``name`` and ``description``, maybe ``license``, ``allowed-tools``, ``metadata``) load as they
are: the skill takes any input, has no implementation, is tagged ``instructions-only``, and
a run that selects it fails with :class:`~orchestra.errors.SkillSpecError`.

Top-level ``*.py`` files of a catalog are imported too, and every module-level
:class:`~orchestra.skills.Skill` in them (made with ``@skill``) joins the catalog.  A catalog
is trusted code, like a plugin folder: point Orchestra only at catalogs you trust.

Every mistake raises :class:`~orchestra.errors.SkillSpecError` naming the file and the field.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import structlog
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from orchestra.errors import SkillSpecError, _distance
from orchestra.skills import AnyInput, AnyOutput, Skill, skill

__all__ = [
    "INSTRUCTIONS_ONLY",
    "discover_skill_files",
    "load_catalog",
    "load_skill_dir",
    "parse_skill_md",
    "schema_to_model",
]

log = structlog.get_logger(__name__)

#: Tag carried by skills that document a procedure but have no Python to call.
INSTRUCTIONS_ONLY = "instructions-only"

#: Module files searched, in order, for a skill's implementation.
IMPL_FILES = ("skill.py", "impl.py")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_FRONT_MATTER_RE = re.compile(
    r"\A(?:\ufeff)?---[ \t]*\r?\n(.*?)^---[ \t]*\r?$\n?", re.DOTALL | re.MULTILINE
)

# Keys of the Agent Skills format (agentskills.io) that Orchestra reads or keeps.
_AGENT_SKILLS_KEYS = {
    "name",
    "description",
    "license",
    "allowed-tools",
    "metadata",
    "compatibility",
}
# Keys Orchestra adds.
_ORCHESTRA_KEYS = {
    "capability",
    "cost",
    "latency_ms",
    "reliability",
    "timeout_s",
    "idempotent",
    "compensate",
    "milestone",
    "tags",
    "entrypoint",
    "input",
    "output",
    "input_schema",
    "output_schema",
}
_KNOWN_KEYS = _AGENT_SKILLS_KEYS | _ORCHESTRA_KEYS


# --------------------------------------------------------------------------- SKILL.md


def parse_skill_md(path: Path) -> tuple[dict[str, Any], str]:
    """Split a ``SKILL.md`` into its front matter (a mapping) and its Markdown body.

    Raises :class:`SkillSpecError` naming the file when there is no front matter, when its
    YAML does not parse, or when it is not a mapping.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SkillSpecError(f"cannot read: {exc}", source=str(path)) from exc
    m = _FRONT_MATTER_RE.match(text)
    if m is None:
        raise SkillSpecError(
            "no YAML front matter: the file must start with a '---' line, "
            "the front matter, and a closing '---' line",
            field="front matter",
            source=str(path),
        )
    try:
        meta = yaml.safe_load(m.group(1))
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" (line {mark.line + 2})"  # +1 for 1-based, +1 for the opening '---'
        problem = getattr(exc, "problem", None) or str(exc)
        raise SkillSpecError(
            f"YAML does not parse{where}: {problem}", field="front matter", source=str(path)
        ) from exc
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise SkillSpecError(
            f"must be a YAML mapping, not {type(meta).__name__}",
            field="front matter",
            source=str(path),
        )
    body = text[m.end() :].strip()
    return meta, body


# --------------------------------------------------------------------------- JSON schema → pydantic

_JSON_TYPES: dict[str, Any] = {
    "string": str,
    "str": str,
    "number": float,
    "float": float,
    "integer": int,
    "int": int,
    "boolean": bool,
    "bool": bool,
    "null": type(None),
    "any": Any,
}


def schema_to_model(
    schema: Mapping[str, Any], model_name: str, *, source: str | None = None, field: str = "input"
) -> type[BaseModel]:
    """Build a pydantic model from a JSON-schema object (``type: object`` + ``properties``).

    Supports the common subset: ``string``/``number``/``integer``/``boolean``/``array``/
    ``object``/``null`` (and their Python spellings ``str``/``float``/``int``/``bool``/
    ``list``/``dict``), ``enum``, ``items``, nested objects, ``default``, ``description``,
    ``required`` and ``additionalProperties``.  A bad schema raises :class:`SkillSpecError`
    naming the dotted path of the bad part.
    """
    if not isinstance(schema, Mapping):
        raise SkillSpecError(
            f"must be a JSON-schema mapping, not {type(schema).__name__}",
            field=field,
            source=source,
        )
    kind = schema.get("type", "object")
    if kind != "object":
        raise SkillSpecError(
            f"top-level type must be 'object', not {kind!r}", field=f"{field}.type", source=source
        )
    props = schema.get("properties", {}) or {}
    if not isinstance(props, Mapping):
        raise SkillSpecError(
            "must be a mapping of field name to schema", field=f"{field}.properties", source=source
        )
    required = schema.get("required", []) or []
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise SkillSpecError(
            "must be a list of field names", field=f"{field}.required", source=source
        )
    unknown = [r for r in required if r not in props]
    if unknown:
        raise SkillSpecError(
            f"names fields that 'properties' does not declare: {', '.join(unknown)}",
            field=f"{field}.required",
            source=source,
        )
    fields: dict[str, Any] = {}
    for prop, sub in props.items():
        if not isinstance(prop, str) or not prop.isidentifier() or prop.startswith("_"):
            raise SkillSpecError(
                "field names must be Python identifiers not starting with '_'",
                field=f"{field}.properties.{prop}",
                source=source,
            )
        path = f"{field}.properties.{prop}"
        if sub is None:
            sub = {}
        if not isinstance(sub, Mapping):
            raise SkillSpecError("must be a schema mapping", field=path, source=source)
        ann = _schema_type(sub, f"{model_name}_{prop}", source=source, path=path)
        desc = sub.get("description")
        if prop in required:
            default: Any = ...
        elif "default" in sub:
            default = sub["default"]
        else:
            ann = ann | None
            default = None
        fields[prop] = (ann, Field(default, description=str(desc) if desc is not None else None))
    extra: Literal["allow", "ignore", "forbid"] = (
        "forbid"
        if schema.get("additionalProperties") is False
        else "allow"
        if not props
        else "ignore"
    )
    try:
        model: type[BaseModel] = create_model(  # type: ignore[call-overload]
            model_name, __config__=ConfigDict(extra=extra), **fields
        )
    except (TypeError, ValueError) as exc:
        raise SkillSpecError(f"cannot build a model: {exc}", field=field, source=source) from exc
    return model


def _schema_type(sub: Mapping[str, Any], name: str, *, source: str | None, path: str) -> Any:
    if "enum" in sub:
        values = sub["enum"]
        if not isinstance(values, list) or not values:
            raise SkillSpecError("must be a non-empty list", field=f"{path}.enum", source=source)
        return Literal[tuple(values)]
    kind = sub.get("type", "any")
    if isinstance(kind, list):  # e.g. ["string", "null"]
        parts = [_schema_type({**sub, "type": k}, name, source=source, path=path) for k in kind]
        out = parts[0]
        for p in parts[1:]:
            out = out | p
        return out
    if not isinstance(kind, str):
        raise SkillSpecError(f"unsupported type {kind!r}", field=f"{path}.type", source=source)
    if kind in _JSON_TYPES:
        return _JSON_TYPES[kind]
    if kind in ("array", "list"):
        items = sub.get("items")
        if items is None:
            return list[Any]
        if not isinstance(items, Mapping):
            raise SkillSpecError("must be a schema mapping", field=f"{path}.items", source=source)
        return list[_schema_type(items, name, source=source, path=f"{path}.items")]  # type: ignore[misc]
    if kind in ("object", "dict"):
        if sub.get("properties"):
            return schema_to_model(sub, _camel(name), source=source, field=path)
        return dict[str, Any]
    raise SkillSpecError(f"unsupported type {kind!r}", field=f"{path}.type", source=source)


def _camel(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[^A-Za-z0-9]+", name) if p)


# --------------------------------------------------------------------------- one skill folder


def load_skill_dir(folder: Path, *, trusted: Sequence[Path] | None = None) -> Skill:
    """Load the skill in ``folder`` (its ``SKILL.md`` and, when present, its implementation).

    With ``trusted``, an implementation file that resolves outside those folders is refused
    (:class:`~orchestra.errors.UntrustedPathError`) instead of imported.
    """
    md = folder / "SKILL.md"
    src = str(md)
    meta, body = parse_skill_md(md)
    _check_keys(meta, src)

    name = _required_str(meta, "name", src)
    if not _NAME_RE.match(name):
        raise SkillSpecError(
            "must start with a letter or digit and hold only letters, digits, '_', '-' or '.'",
            field="name",
            source=src,
        )
    description = _required_str(meta, "description", src)

    input_model = _schema_field(meta, ("input", "input_schema"), f"{_camel(name)}Input", src)
    output_model = _schema_field(meta, ("output", "output_schema"), f"{_camel(name)}Output", src)

    tags = meta.get("tags", [])
    if isinstance(tags, str):
        tags = [tags]
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise SkillSpecError("must be a list of strings", field="tags", source=src)

    fn = _load_implementation(folder, meta, src, trusted)
    if fn is None and INSTRUCTIONS_ONLY not in tags:
        tags = [*tags, INSTRUCTIONS_ONLY]

    numbers: dict[str, Any] = {}
    for key in ("cost", "latency_ms", "reliability", "timeout_s"):
        if key in meta:
            value = meta[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise SkillSpecError(f"must be a number, not {value!r}", field=key, source=src)
            numbers[key] = float(value)
    flags: dict[str, bool] = {}
    for key in ("idempotent", "milestone"):
        if key in meta:
            if not isinstance(meta[key], bool):
                raise SkillSpecError(
                    f"must be true or false, not {meta[key]!r}", field=key, source=src
                )
            flags[key] = meta[key]
    capability = meta.get("capability", "")
    if not isinstance(capability, str):
        raise SkillSpecError("must be a string", field="capability", source=src)
    compensate = meta.get("compensate")
    if compensate is not None and (
        not isinstance(compensate, str) or not _NAME_RE.match(compensate) or compensate == name
    ):
        raise SkillSpecError(
            f"must name another skill of the catalog, not {compensate!r}",
            field="compensate",
            source=src,
        )

    if fn is not None and input_model is None:
        # No schema in the front matter: the function's signature is the input model.
        derived = skill(name=name)(fn)
        input_model = derived.input_model
        if output_model is None:
            output_model = derived.output_model

    try:
        return Skill(
            name=name,
            description=description,
            capability=capability,
            compensate=compensate,
            tags=tuple(tags),
            body=body,
            source=src,
            input_model=input_model or AnyInput,
            output_model=output_model or AnyOutput,
            fn=fn,
            **numbers,
            **flags,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        raise SkillSpecError(err["msg"], field=".".join(map(str, err["loc"])), source=src) from exc


def _check_keys(meta: Mapping[str, Any], src: str) -> None:
    for key in meta:
        if not isinstance(key, str):
            raise SkillSpecError("front matter keys must be strings", field=str(key), source=src)
        if key in _KNOWN_KEYS:
            continue
        close = [k for k in sorted(_ORCHESTRA_KEYS) if _distance(k, key) <= 2]
        if close:
            raise SkillSpecError(f"unknown key (did you mean {close[0]!r}?)", field=key, source=src)
        log.debug("skill front matter key kept but unused", key=key, source=src)


def _required_str(meta: Mapping[str, Any], key: str, src: str) -> str:
    if key not in meta or meta[key] is None:
        raise SkillSpecError("is required", field=key, source=src)
    value = meta[key]
    if not isinstance(value, str) or not value.strip():
        raise SkillSpecError(f"must be a non-empty string, not {value!r}", field=key, source=src)
    return value.strip()


def _schema_field(
    meta: Mapping[str, Any], keys: tuple[str, ...], model_name: str, src: str
) -> type[BaseModel] | None:
    present = [k for k in keys if k in meta]
    if not present:
        return None
    if len(present) > 1:
        raise SkillSpecError(f"give only one of {', '.join(present)}", field=present[1], source=src)
    key = present[0]
    if meta[key] is None:
        return None
    return schema_to_model(meta[key], model_name, source=src, field=key)


def _load_implementation(
    folder: Path, meta: Mapping[str, Any], src: str, trusted: Sequence[Path] | None = None
) -> Callable[..., Any] | None:
    entry = meta.get("entrypoint")
    if entry is not None and (not isinstance(entry, str) or not entry.isidentifier()):
        raise SkillSpecError(
            f"must be a Python function name, not {entry!r}", field="entrypoint", source=src
        )
    impl = next((folder / f for f in IMPL_FILES if (folder / f).is_file()), None)
    if impl is None:
        if entry is not None:
            raise SkillSpecError(
                f"names {entry!r} but the folder has no {' or '.join(IMPL_FILES)}",
                field="entrypoint",
                source=src,
            )
        return None
    module = _import_file(impl, trusted)
    attr = entry or "run"
    fn = getattr(module, attr, None)
    if isinstance(fn, Skill):  # a @skill-decorated entry point
        fn = fn.fn
    if not callable(fn):
        raise SkillSpecError(
            f"{impl.name} defines no function {attr!r}"
            + ("" if entry else " (name another with 'entrypoint:')"),
            field="entrypoint",
            source=src,
        )
    return fn  # type: ignore[no-any-return]


def _import_file(path: Path, trusted: Sequence[Path] | None = None) -> ModuleType:
    """Import a Python file by path under a private, collision-free module name."""
    if trusted is not None:
        from orchestra.trust import check_trusted

        check_trusted(path, trusted, field="implementation", source=str(path))
    resolved = path.resolve()
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:12]
    mod_name = (
        f"_orchestra_catalog_{digest}_{re.sub(r'[^0-9A-Za-z_]', '_', path.parent.name)}_{path.stem}"
    )
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, resolved)
    if spec is None or spec.loader is None:
        raise SkillSpecError("cannot be imported", field="implementation", source=str(path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[mod_name]
        raise SkillSpecError(
            f"importing it raised {type(exc).__name__}: {exc}",
            field="implementation",
            source=str(path),
        ) from exc
    return module


# --------------------------------------------------------------------------- whole catalogs


def discover_skill_files(root: Path) -> Iterator[Path]:
    """Every ``SKILL.md`` under ``root`` (hidden folders skipped), in a stable order.

    A skill folder's own sub-folders are resources of that skill and are not searched.
    """
    if (root / "SKILL.md").is_file():
        yield root / "SKILL.md"
        return
    for child in sorted(
        p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))
    ):
        yield from discover_skill_files(child)


def load_catalog(
    paths: Path | str | Iterable[Path | str], *, trusted: Sequence[Path] | None = None
) -> list[Skill]:
    """Load every skill of one or more catalog folders, sorted by name.

    A path may also be a single skill folder or a Python file of ``@skill`` functions.
    Two skills with one name raise :class:`SkillSpecError` naming both files.  With
    ``trusted`` (see :mod:`orchestra.trust`), every Python file is checked to resolve inside
    those folders before it is imported.
    """
    roots = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    found: dict[str, Skill] = {}
    for root in roots:
        if not root.exists():
            raise SkillSpecError("no such catalog folder", source=str(root))
        for s in _load_root(root, trusted):
            if s.name in found:
                raise SkillSpecError(
                    f"two skills share this name: {found[s.name].source} and {s.source}",
                    field="name",
                    source=s.source,
                )
            found[s.name] = s
    for s in found.values():
        if s.compensate is not None and s.compensate not in found:
            raise SkillSpecError(
                f"names {s.compensate!r}, which is no skill of the catalog",
                field="compensate",
                source=s.source,
            )
    return [found[n] for n in sorted(found)]


def _load_root(root: Path, trusted: Sequence[Path] | None = None) -> Iterator[Skill]:
    if root.is_file():
        if root.suffix != ".py":
            raise SkillSpecError(
                "a catalog is a folder or a Python file of @skill functions", source=str(root)
            )
        yield from _skills_in_module(root, trusted)
        return
    for md in discover_skill_files(root):
        yield load_skill_dir(md.parent, trusted=trusted)
    if not (root / "SKILL.md").is_file():
        for py in sorted(root.glob("*.py")):
            if not py.name.startswith("_"):
                yield from _skills_in_module(py, trusted)


def _skills_in_module(path: Path, trusted: Sequence[Path] | None = None) -> Iterator[Skill]:
    module = _import_file(path, trusted)
    for value in vars(module).values():
        if isinstance(value, Skill):
            yield value
