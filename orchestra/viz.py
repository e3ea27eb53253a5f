"""Pictures of graphs and runs: Mermaid, Graphviz DOT, SVG and PNG.

A declared graph is drawn as its steps in dependency order, each a box holding its candidate
skills with their static weights (cost per call, expected latency), the main goal and the
declared fallback goals marked::

    ┌ classify ┐   ┌ refund ──────────────┐   ┌ notify ────┐
    │ classify │ ─►│ stripe_refund  $0.003│ ─►│ send_email │ ─► ◎ goal
    └──────────┘   │ paypal_refund  $0.004│   │ send_sms   │
                   └──────────────────────┘   └────────────┘  (fallback: notify)

A run is the same picture with what happened on it, read from its decision log: the path
taken (green, bold), failed attempts with their kind (red, ``✗ timeout ×2``), reroutes
(dashed arrows from the failed skill to the one that replaced it), catalog substitutes,
compensations, the demotion target or the escalation point, the cost of each step and the
worker that served it.

Layout and rendering are Graphviz's (``dot``, Debian's ``graphviz`` package); when ``dot`` is
not installed, the ``graphviz-pure`` executable (a self-contained port on PyPI) is used if
present. Mermaid text needs no renderer (GitHub, mermaid.live and most Markdown viewers draw
it).  :func:`graph_picture` and :func:`run_picture` build the model; :func:`to_dot`,
:func:`to_mermaid` and :func:`render` turn it into text or bytes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from orchestra.errors import OrchestraError
from orchestra.redact import redact_text

if TYPE_CHECKING:
    from orchestra.graph import Graph
    from orchestra.results import RunState

__all__ = [
    "FORMATS",
    "GraphPicture",
    "RenderError",
    "SkillNode",
    "StepNode",
    "format_for",
    "graph_of_run",
    "graph_picture",
    "render",
    "renderer",
    "run_picture",
    "to_dot",
    "to_mermaid",
]

Format = Literal["mermaid", "dot", "svg", "png"]
FORMATS: tuple[str, ...] = ("mermaid", "dot", "svg", "png")

SkillState = Literal["idle", "chosen", "failed", "blocked", "succeeded_then_undone", "in_flight"]


class RenderError(OrchestraError):
    """A picture could not be rendered (no Graphviz, or Graphviz refused the input)."""


@dataclass
class SkillNode:
    """One candidate skill of one step, and what happened to it on a run."""

    name: str
    cost: float = 0.0
    latency_ms: float = 0.0
    milestone: bool = False
    idempotent: bool = True
    substitute: bool = False  # came from the catalog during the run, not declared
    state: SkillState = "idle"
    failures: list[str] = field(default_factory=list)  # error kinds, in order
    duration_ms: float | None = None
    worker: str | None = None
    compensated_by: str | None = None
    blocked: str | None = None  # why the router did not try it (down, circuit open, ...)


@dataclass
class StepNode:
    """A step: its candidates, dependencies and, on a run, its outcome."""

    id: str
    after: list[str]
    skills: list[SkillNode]
    cost_usd: float | None = None  # spent on this step in a run
    stuck: str | None = None  # why the run could not get past it (escalation point)
    abandoned: bool = False  # work beyond a demoted goal, or undone by backtracking

    def skill(self, name: str) -> SkillNode:
        for s in self.skills:
            if s.name == name:
                return s
        node = SkillNode(name=name, substitute=True)
        self.skills.append(node)
        return node


@dataclass
class Reroute:
    """A reroute within a step: from the skill that failed to the one tried next."""

    step: str
    from_skill: str
    to_skill: str
    reason: str


@dataclass
class GraphPicture:
    """What a picture shows, independent of the output format."""

    name: str
    steps: list[StepNode]
    goal_steps: list[str]  # the steps the main goal requires (drawn into the goal node)
    fallback_goals: list[str] = field(default_factory=list)
    # run overlay
    run_id: str | None = None
    status: str | None = None
    goal: str | None = None  # the goal the run ended on (differs from "goal" when demoted)
    reason: str = ""
    spent_usd: float | None = None
    reroutes: list[Reroute] = field(default_factory=list)
    compensations: list[tuple[str, str]] = field(default_factory=list)  # (step, skill)

    def step(self, step_id: str) -> StepNode:
        for s in self.steps:
            if s.id == step_id:
                return s
        node = StepNode(id=step_id, after=[], skills=[])
        self.steps.append(node)
        return node

    @property
    def path(self) -> list[tuple[str, str]]:
        """The (step, skill) pairs that served the run, in step order."""
        return [(s.id, k.name) for s in self.steps for k in s.skills if k.state == "chosen"]


# ---------------------------------------------------------------------- building the model


def graph_picture(graph: Graph) -> GraphPicture:
    """The picture of a declared graph (validated and compiled first)."""
    compiled = graph.compile()
    steps: list[StepNode] = []
    for sid in compiled.order:
        skills = []
        for name in compiled.candidates[sid]:
            sk = compiled.skill(name)
            skills.append(
                SkillNode(
                    name=name,
                    cost=sk.cost,
                    latency_ms=sk.latency_ms,
                    milestone=sk.milestone,
                    idempotent=sk.idempotent,
                )
            )
        steps.append(StepNode(id=sid, after=list(compiled.preds[sid]), skills=skills))
    main = compiled.goals.get("goal")
    required = main.required if main else frozenset(compiled.order)
    # the goal's last steps: those of its steps that no other of its steps waits for
    sinks = [s for s in compiled.order if s in required and not required & set(compiled.succs[s])]
    return GraphPicture(
        name=graph.name, steps=steps, goal_steps=sinks, fallback_goals=list(graph.fallback_goals)
    )


def run_picture(state: RunState, graph: Graph | None = None) -> GraphPicture:
    """The picture of a run: its graph (when given) with what happened on it.

    Without the graph (its file moved or no longer loads), the steps and skills are read
    from the decision log alone: everything that ran is still drawn.
    """
    from orchestra.runlog import Attempt, step_views

    pic = (
        graph_picture(graph)
        if graph is not None
        else GraphPicture(name=state.graph, steps=[], goal_steps=[])
    )
    pic.run_id = state.run_id
    pic.status = state.status
    pic.goal = state.goal
    pic.reason = state.reason
    pic.spent_usd = state.spent_usd
    views, run_level = step_views(state)
    for v in views:
        node = pic.step(v.step)
        last_failed: str | None = None
        for item in v.items:
            if isinstance(item, Attempt):
                sk = node.skill(item.skill)
                if item.ok is None:
                    sk.state = "in_flight"
                elif item.ok:
                    sk.state = "chosen"
                    if last_failed and last_failed != item.skill:
                        pic.reroutes.append(Reroute(v.step, last_failed, item.skill, ""))
                    last_failed = None
                else:
                    sk.failures.append(item.error_kind or "failed")
                    if sk.state != "chosen":
                        sk.state = "failed"
                    if last_failed and last_failed != item.skill:
                        pic.reroutes.append(Reroute(v.step, last_failed, item.skill, ""))
                    last_failed = item.skill
            elif item.kind == "reroute" and item.skill:
                # "X is down (...); routed to Y": X was routed around before any call
                first = item.reason.split(" ", 1)[0]
                known = {k.name: k for k in node.skills}
                if first in known and first != item.skill and known[first].state == "idle":
                    known[first].state = "blocked"
                    known[first].blocked = item.reason.split(";", 1)[0]
                    pic.reroutes.append(Reroute(v.step, first, item.skill, "routed around"))
            elif _is_compensation(item.kind) and item.skill:
                pic.compensations.append((v.step, item.skill))
        if v.record is not None:
            sk = node.skill(v.record.skill)
            sk.state = "chosen"
            sk.duration_ms = v.record.duration_ms or sk.duration_ms
            sk.worker = v.record.worker
            cost = v.record.output.get("cost_usd") if isinstance(v.record.output, dict) else None
            if isinstance(cost, (int, float)):
                node.cost_usd = float(cost)
            if node.cost_usd is None and graph is not None:
                node.cost_usd = sk.cost
        for a in v.attempts:  # durations and workers of the successful call
            if a.ok and v.record is not None and a.skill == v.record.skill:
                node.skill(a.skill).duration_ms = a.elapsed_ms
                node.skill(a.skill).worker = a.worker or node.skill(a.skill).worker
    # a compensated step no longer counts as done; its skill is marked undone
    for step_id, skill_name in pic.compensations:
        target = _compensated_target(pic, step_id, skill_name)
        if target is not None:
            target.state = "succeeded_then_undone"
            target.compensated_by = skill_name
    if state.status == "escalated":
        stuck_steps = dict(state.escalation.steps) if state.escalation is not None else {}
        if not stuck_steps:  # a result file: the reason names them ("Step 'refund' cannot ...")
            stuck_steps = {
                s.id: state.reason
                for s in pic.steps
                if s.id not in state.completed
                and (f"Step '{s.id}'" in state.reason or f"{s.id}:" in state.reason)
            }
        for sid, why in stuck_steps.items():
            node = pic.step(sid)
            node.stuck = why
            for sk in node.skills:
                if sk.state == "idle" and f"{sk.name} is down" in state.reason:
                    sk.state, sk.blocked = "blocked", f"{sk.name} is down"
    if state.status == "demoted":
        done = set(state.completed)
        for s in pic.steps:
            if s.id not in done and not s.stuck:
                s.abandoned = True
    for d in run_level:
        if _is_compensation(d.kind) and d.skill:
            pic.compensations.append((d.step or "", d.skill))
    return pic


def _is_compensation(kind: str) -> bool:
    """A ``compensate`` decision (a completed step undone by its declared compensation)."""
    return kind == "compensate"


def _compensated_target(pic: GraphPicture, step_id: str, comp: str) -> SkillNode | None:
    step = next((s for s in pic.steps if s.id == step_id), None)
    if step is None:
        return None
    for sk in step.skills:
        if sk.state == "chosen" and sk.name != comp:
            return sk
    return None


# ---------------------------------------------------------------------- DOT


_COLOURS = {
    "chosen": ("#d9f2d9", "#1a7f37"),
    "failed": ("#fde2e1", "#cf222e"),
    "in_flight": ("#ddf4ff", "#0969da"),
    "blocked": ("#f6f8fa", "#8c959f"),
    "succeeded_then_undone": ("#efe2fa", "#8250df"),
    "idle": ("#ffffff", "#57606a"),
}


def _node_id(step: str, skill: str) -> str:
    return f"{step}/{skill}"


def _money(v: float) -> str:
    return f"${v:.4f}".rstrip("0").rstrip(".") if v else "$0"


def _skill_label(sk: SkillNode) -> str:
    lines = [sk.name]
    weights = []
    if sk.cost:
        weights.append(_money(sk.cost))
    if sk.latency_ms:
        weights.append(f"{sk.latency_ms:g} ms")
    if weights and sk.state == "idle":
        lines.append(" · ".join(weights))
    if sk.state == "chosen":
        bits = ["✓"]
        if sk.duration_ms:
            bits.append(f"{sk.duration_ms:,.0f} ms")
        if sk.worker:
            bits.append(f"worker {sk.worker}")
        lines.append(" ".join(bits))
    if sk.failures:
        kinds: dict[str, int] = {}
        for k in sk.failures:
            kinds[k] = kinds.get(k, 0) + 1
        lines.append("✗ " + ", ".join(f"{k} ×{n}" if n > 1 else k for k, n in kinds.items()))
    if sk.state == "in_flight":
        lines.append("… running")
    if sk.blocked:
        lines.append("⊘ " + _shorten(redact_text(sk.blocked.removeprefix(sk.name).strip()), 40))
    if sk.substitute:
        lines.append("substitute from the catalog")
    if sk.compensated_by:
        lines.append(f"↩ undone by {sk.compensated_by}")
    if not sk.idempotent and sk.state == "idle":
        lines.append("side effect")
    return "\n".join(lines)


def _step_label(step: StepNode) -> str:
    label = step.id
    if step.cost_usd:
        label += f"  ({_money(step.cost_usd)})"
    if step.stuck:
        label += "\nstuck: " + _shorten(redact_text(step.stuck), 70)
    elif step.abandoned:
        label += "\nnot run (demoted)"
    return label


def _shorten(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _title(pic: GraphPicture) -> str:
    if pic.run_id is None:
        return f"graph {pic.name}"
    head = f"run {pic.run_id} of {pic.name}: {str(pic.status).upper()}"
    if pic.goal and pic.goal != "goal":
        head += f" (goal {pic.goal})"
    if pic.spent_usd is not None:
        head += f", spent {_money(pic.spent_usd)}"
    if pic.reason and pic.status in ("demoted", "escalated"):
        head += "\n" + _shorten(redact_text(pic.reason), 110)
    return head


def to_dot(pic: GraphPicture) -> str:
    """Graphviz DOT source of a picture."""
    import graphviz

    g = graphviz.Digraph(pic.name)
    g.attr(rankdir="LR", compound="true", fontname="Helvetica", labelloc="t")
    g.attr(label=_title(pic), fontsize="14")
    g.attr("node", shape="box", style="rounded,filled", fontname="Helvetica", fontsize="11")
    g.attr("edge", color="#8c959f", arrowsize="0.7")
    anchors: dict[str, str] = {}
    for step in pic.steps:
        with g.subgraph(name=f"cluster_{step.id}") as c:
            colour = "#cf222e" if step.stuck else ("#8c959f" if step.abandoned else "#57606a")
            c.attr(
                label=_step_label(step),
                style="rounded,dashed" if step.abandoned else "rounded",
                color=colour,
                penwidth="2" if step.stuck else "1",
                fontname="Helvetica-Bold",
                fontsize="12",
            )
            if not step.skills:
                nid = _node_id(step.id, "·")
                c.node(nid, label="(no candidates)", shape="plaintext", style="")
                anchors[step.id] = nid
            for sk in step.skills:
                fill, line = _COLOURS[sk.state]
                nid = _node_id(step.id, sk.name)
                anchors.setdefault(step.id, nid)
                attrs = {
                    "label": _skill_label(sk),
                    "fillcolor": fill,
                    "color": line,
                    "penwidth": "2.5" if sk.state == "chosen" else "1",
                    "class": f"skill {sk.state}",
                    "id": f"skill:{nid}",
                }
                if sk.milestone:
                    attrs.update(shape="ellipse", fontsize="9")
                if sk.substitute:
                    attrs["style"] = "rounded,filled,dashed"
                c.node(nid, **attrs)
    chosen = {s.id: k.name for s in pic.steps for k in s.skills if k.state == "chosen"}
    by_id = {s.id: s for s in pic.steps}
    for step in pic.steps:
        for parent in step.after:
            if parent not in anchors or step.id not in anchors:
                continue
            if parent in chosen and step.id in chosen:
                g.edge(
                    _node_id(parent, chosen[parent]),
                    _node_id(step.id, chosen[step.id]),
                    color="#1a7f37",
                    penwidth="2.5",
                    id=f"path:{parent}->{step.id}",
                )
            else:
                g.edge(
                    anchors[parent],
                    anchors[step.id],
                    ltail=f"cluster_{parent}",
                    lhead=f"cluster_{step.id}",
                    style="dashed" if by_id[step.id].abandoned else "solid",
                )
    for r in pic.reroutes:
        g.edge(
            _node_id(r.step, r.from_skill),
            _node_id(r.step, r.to_skill),
            label="reroute",
            style="dashed",
            color="#bf8700",
            fontcolor="#bf8700",
            fontsize="10",
            constraint="false",
            id=f"reroute:{r.step}:{r.from_skill}->{r.to_skill}",
        )
    for step_id, comp in pic.compensations:
        target = (
            next((k for k in by_id[step_id].skills if k.compensated_by == comp), None)
            if step_id in by_id
            else None
        )
        cid = f"compensate:{step_id}:{comp}"
        g.node(cid, label=f"↩ {comp}", shape="note", fillcolor="#efe2fa", color="#8250df")
        if target is not None:
            g.edge(_node_id(step_id, target.name), cid, style="dotted", color="#8250df")
    # goals
    goal_label = "goal"
    goal_fill = "#ffffff"
    if pic.status == "completed":
        goal_label, goal_fill = "goal ✓", "#d9f2d9"
    elif pic.status == "escalated":
        goal_label, goal_fill = "goal ✗ escalated", "#fde2e1"
    elif pic.status == "demoted":
        goal_label = "goal (abandoned)"
    g.node("GOAL", label=goal_label, shape="doublecircle", style="filled", fillcolor=goal_fill)
    for sid in pic.goal_steps:
        if sid in anchors:
            if sid in chosen:
                ok = pic.status == "completed"
                g.edge(
                    _node_id(sid, chosen[sid]),
                    "GOAL",
                    color="#1a7f37" if ok else "#8c959f",
                    penwidth="2.5" if ok else "1",
                )
            else:
                g.edge(anchors[sid], "GOAL", ltail=f"cluster_{sid}")
    for i, fb in enumerate(pic.fallback_goals):
        step_id = fb.split(":", 1)[0]
        reached = pic.status == "demoted" and pic.goal == fb
        fid = f"FALLBACK{i}"
        g.node(
            fid,
            label=f"fallback {i + 1}: {fb}" + ("\n▼ demoted here" if reached else ""),
            shape="octagon",
            style="filled,dashed" if not reached else "filled",
            fillcolor="#fff8c5" if reached else "#ffffff",
            fontsize="10",
        )
        if step_id in anchors:
            src = _node_id(step_id, chosen[step_id]) if step_id in chosen else anchors[step_id]
            extra = {} if step_id in chosen else {"ltail": f"cluster_{step_id}"}
            g.edge(src, fid, style="dashed", color="#bf8700" if reached else "#8c959f", **extra)
    return str(g.source)


# ---------------------------------------------------------------------- Mermaid

_MERMAID_ID = re.compile(r"[^A-Za-z0-9_]")


def _mid(*parts: str) -> str:
    return "_".join(_MERMAID_ID.sub("_", p) for p in parts)


def _mtext(text: str) -> str:
    return text.replace('"', "#quot;").replace("\n", "<br/>")


def to_mermaid(pic: GraphPicture) -> str:
    """Mermaid ``flowchart`` text of a picture (GitHub and most Markdown viewers draw it)."""
    out = [
        "---",
        f"title: {_title(pic).splitlines()[0]}",
        "---",
        "flowchart LR",
        "  classDef chosen fill:#d9f2d9,stroke:#1a7f37,stroke-width:2px",
        "  classDef failed fill:#fde2e1,stroke:#cf222e",
        "  classDef in_flight fill:#ddf4ff,stroke:#0969da",
        "  classDef succeeded_then_undone fill:#efe2fa,stroke:#8250df",
        "  classDef idle fill:#ffffff,stroke:#57606a",
        "  classDef blocked fill:#f6f8fa,stroke:#8c959f,stroke-dasharray:3 3",
    ]
    chosen = {s.id: k.name for s in pic.steps for k in s.skills if k.state == "chosen"}
    for step in pic.steps:
        out.append(f'  subgraph {_mid("s", step.id)}["{_mtext(_step_label(step))}"]')
        for sk in step.skills:
            out.append(f'    {_mid(step.id, sk.name)}["{_mtext(_skill_label(sk))}"]:::{sk.state}')
        out.append("  end")
    for step in pic.steps:
        for parent in step.after:
            if parent in chosen and step.id in chosen:
                out.append(f"  {_mid(parent, chosen[parent])} ==> {_mid(step.id, chosen[step.id])}")
            else:
                out.append(f"  {_mid('s', parent)} --> {_mid('s', step.id)}")
    for r in pic.reroutes:
        out.append(f"  {_mid(r.step, r.from_skill)} -. reroute .-> {_mid(r.step, r.to_skill)}")
    out.append('  GOAL(("goal"))')
    for sid in pic.goal_steps:
        src = _mid(sid, chosen[sid]) if sid in chosen else _mid("s", sid)
        out.append(f"  {src} --> GOAL")
    for i, fb in enumerate(pic.fallback_goals):
        step_id = fb.split(":", 1)[0]
        reached = pic.status == "demoted" and pic.goal == fb
        label = f"fallback {i + 1}: {fb}" + (" (demoted here)" if reached else "")
        out.append(f'  FALLBACK{i}{{{{"{_mtext(label)}"}}}}')
        out.append(f"  {_mid('s', step_id)} -.-> FALLBACK{i}")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------- rendering


def renderer() -> list[str] | None:
    """The Graphviz command that renders here, or ``None`` when there is none."""
    for exe in ("dot", "graphviz-pure"):
        path = shutil.which(exe)
        if path:
            return [path]
    return None


def render(pic: GraphPicture, fmt: str) -> bytes:
    """The picture in ``fmt`` (``mermaid``, ``dot``, ``svg`` or ``png``) as bytes."""
    if fmt not in FORMATS:
        raise RenderError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "mermaid":
        return to_mermaid(pic).encode()
    source = to_dot(pic)
    if fmt == "dot":
        return source.encode()
    cmd = renderer()
    if cmd is None:
        raise RenderError(
            f"drawing {fmt.upper()} needs Graphviz: install it (apt-get install graphviz, "
            "brew install graphviz) or pip install graphviz-pure; "
            "--format mermaid and --format dot need nothing"
        )
    try:
        done = subprocess.run(
            [*cmd, f"-T{fmt}"], input=source.encode(), capture_output=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RenderError(f"Graphviz ({cmd[0]}) failed: {exc}") from exc
    if done.returncode != 0:
        raise RenderError(
            f"Graphviz ({cmd[0]}) failed: {done.stderr.decode(errors='replace').strip()[:500]}"
        )
    return done.stdout


def format_for(path: str | None, fmt: str | None, default: str = "mermaid") -> str:
    """The format to write: ``fmt`` if given, else the output file's suffix, else ``default``."""
    if fmt:
        return fmt
    if path:
        suffix = path.rsplit(".", 1)[-1].lower() if "." in path else ""
        aliases = {"mmd": "mermaid", "gv": "dot"}
        suffix = aliases.get(suffix, suffix)
        if suffix in FORMATS:
            return suffix
    return default


def graph_of_run(state: RunState) -> Graph | None:
    """The graph a run was started from (its file, as recorded), or ``None`` if unavailable.

    Python graph files are code: this imports the file the run names, as ``orchestra resume``
    does. A file that moved, or no longer loads, gives ``None`` (draw from the log alone).
    """
    from pathlib import Path

    from orchestra.loaders import load_any_graph

    path = state.origin.get("graph") if isinstance(state.origin, dict) else None
    if not path or not Path(path).is_file():
        return None
    try:
        graph, _ = load_any_graph(Path(path), scenario=state.origin.get("scenario"))
    except Exception:  # a graph that no longer loads still has a run to show
        return None
    return graph
