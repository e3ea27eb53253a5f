"""Which catalog skill may stand in for a stuck step: the fit test, checked before choosing.

When every candidate of a step has failed, the runtime asks a retriever for skills that
match the step's description.  A match in words is not a fit.  A substitute must:

1. **share the step's capability** when the step's candidates declare one (a refund step is
   served by ``payments.refund`` skills, never by a ticket classifier that happens to take
   the same inputs);
2. **take only inputs the step can hand over** (the run's input and earlier outputs);
3. **return every field that later steps take from this step**: for every later step not yet
   done, its explicit ``inputs`` mappings from this step name fields the substitute returns,
   and at least one of its candidates finds every required parameter in the run's input, in
   the other earlier outputs, or in what the substitute returns.  An output model that
   declares no fields promises nothing and fits only a step nothing later depends on.

Everything here is pure: a function of the compiled graph, the run's input and the outputs
of the completed steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestra.graph import CompiledGraph
from orchestra.skills import Skill

__all__ = ["capabilities", "misfit", "provided_fields"]


def capabilities(c: CompiledGraph, step: str) -> set[str]:
    """The capabilities the candidates of ``step`` declare (empty: the step declares none)."""
    return {c.skill(k).capability for k in c.candidates[step] if c.skill(k).capability}


def provided_fields(sk: Skill) -> tuple[set[str], bool]:
    """The fields ``sk`` promises to return, and whether its output is open (undeclared)."""
    fields = set(sk.output_model.model_fields)
    return fields, (sk.output_model.model_config.get("extra") == "allow" and not fields)


def _required(sk: Skill) -> set[str]:
    return {n for n, f in sk.input_model.model_fields.items() if f.is_required()}


def misfit(
    c: CompiledGraph,
    step: str,
    sub: Skill,
    *,
    run_input: Mapping[str, Any],
    outputs: Mapping[str, Mapping[str, Any]],
) -> str | None:
    """Why ``sub`` cannot stand in for ``step``, or ``None`` when it fits.

    ``outputs`` are the outputs of the completed steps (step id → output).
    """
    caps = capabilities(c, step)
    if caps and sub.capability not in caps:
        want = " or ".join(sorted(caps))
        return f"{sub.name} has capability {sub.capability or 'none'!r}, the step needs {want}"
    available = set(run_input)
    for a in c.ancestors[step]:
        if a in outputs:
            available |= set(outputs[a])
    missing = sorted(_required(sub) - available)
    if missing:
        return f"{sub.name} needs {', '.join(missing)}, which the step cannot hand over"
    gives, open_ = provided_fields(sub)
    for d in c.order:
        if step not in c.ancestors[d] or d in outputs:
            continue
        why = _starved(c, d, step, gives, open_, run_input, outputs)
        if why is not None:
            return f"{sub.name} returns no {why}"
    return None


def _starved(
    c: CompiledGraph,
    d: str,
    step: str,
    gives: set[str],
    open_: bool,
    run_input: Mapping[str, Any],
    outputs: Mapping[str, Mapping[str, Any]],
) -> str | None:
    """What later step ``d`` would lack if ``step`` returned ``gives``; ``None`` if nothing."""
    st = c.steps[d]
    for param, ref in st.inputs.items():
        src, _, fld = ref.partition(".")
        if src == step and fld not in gives:
            return f"{fld!r}, which step {d!r} takes from it (as {param!r})"
    # What the other earlier steps of d hand over: actual outputs when done, else the
    # fields every candidate of theirs promises (an open output model promises anything).
    others: set[str] = set(run_input)
    anything = False
    for a in c.ancestors[d]:
        if a == step:
            continue
        if a in outputs:
            others |= set(outputs[a])
            continue
        common: set[str] | None = None
        for k in c.candidates[a]:
            fields, is_open = provided_fields(c.skill(k))
            anything |= is_open
            common = fields if common is None else common & fields
        others |= common or set()
    if anything:
        return None
    lacking: list[str] = []
    for k in c.candidates[d]:
        need = {p for p in _required(c.skill(k)) if p not in st.inputs} - others
        if not need - gives:
            return None
        lacking.append(", ".join(repr(p) for p in sorted(need - gives)))
    return f"{lacking[0]}, which step {d!r} needs from it" if lacking else None
