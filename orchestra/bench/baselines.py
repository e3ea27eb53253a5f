"""The two baselines of the self-healing benchmark: a ReAct agent and a static workflow.

Both run on the same stand-in tools as the Orchestra router (:mod:`orchestra.bench.standins`)
and report a :class:`SystemRun`; the harness (:mod:`orchestra.bench.selfheal`) then judges
that report against the stand-ins' call log, so neither baseline grades itself.

**ReAct** (:func:`run_react`) is LangChain's agent loop (``langchain.agents.create_agent``,
the successor of ``langgraph.prebuilt.create_react_agent``) over LangChain tools that wrap
the stand-ins.  Its chat model, :class:`ScriptedReActModel`, is a deterministic policy that
plays an ideal LLM which knows the tool graph from its prompt: one model call per
decision, reading only the message history.  Each decision picks the cheapest untried
tool that can still lead to the goal; a failed tool is retried (up to ``max_attempts``
calls in all, the same budget as the static workflow's ``RetryPolicy``) only when no
untried option is left; when the current position is a dead end it backs up to an
earlier one; when the goal cannot be reached it heads for a declared fallback goal; when
nothing is left it answers that it cannot complete (an explicit escalation).

**Static** (:func:`run_static`) is a LangGraph ``StateGraph`` as a careful engineer would
wire it: the cheapest start-to-goal path as fixed edges, one node per hop, a
``RetryPolicy`` on every node, and a one-step fallback per hop (see :func:`static_plan`).
Every tool call has a timeout and its output is validated against the tool's schema.
When a hop's primary and fallback both fail on every attempt, the workflow stops and
escalates to a human; it never skips a step.  It knows no fallback goals.

Both baselines call tools through :func:`call_tool`, which turns a raised exception, a
timeout and a malformed output alike into :class:`ToolCallFailed`.  Every system gets the same
pre-run health information, each the way it would use it: the ReAct agent as a note in its
prompt (it never calls a tool reported down), the static workflow as a health check that
skips a down tool.  Tools with side effects (the scenario's ``side_effects``) are named in
the ReAct prompt with their undo tools; the policy undoes an abandoned call before backing
up, never backs up past one that cannot be undone, and lists such calls left beyond a
fallback goal in ``extra_steps``.

Reroutes are counted per system as it understands them: for ReAct, a decision that right
after a failed call picks another tool; for the static workflow, a hop served by its
fallback.  ``wall_ms`` covers building the agent or graph and running it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import operator
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, Any, Literal, TypedDict

import networkx as nx
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestra.scenario import ScenarioGraph
from orchestra.skills import Skill

__all__ = [
    "ReActPolicy",
    "RunStatus",
    "ScriptedReActModel",
    "StaticHop",
    "SystemRun",
    "ToolCallFailed",
    "ToolGraph",
    "call_tool",
    "run_react",
    "run_static",
    "static_plan",
]

RunStatus = Literal["completed", "demoted", "escalated", "failed"]


class SystemRun(BaseModel):
    """What one system reports about one scenario run.

    ``path`` lists the tools whose outputs the run used, in order (milestones excluded),
    and ``tokens`` the output token of each of them; ``target`` is the milestone the run
    claims to have reached (the goal, or a fallback goal when ``demoted``).  ``extra_steps``
    lists tools with side effects the run did beyond its path and could not undo.
    """

    model_config = ConfigDict(extra="forbid")

    system: str
    status: RunStatus
    claimed_success: bool
    target: str | None = None
    path: list[str] = Field(default_factory=list)
    tokens: list[str] = Field(default_factory=list)
    llm_calls: int = 0
    reroutes: int = 0
    escalations: int = 0
    wall_ms: float = 0.0
    detail: str = ""
    extra_steps: list[str] = Field(default_factory=list)


# --------------------------------------------------------------------------- the tool graph


@dataclass(frozen=True)
class ToolGraph:
    """A scenario graph as the baselines and the oracle read it.

    Milestones (start, goal, fallback goals) call no tool: moving through one is free of
    tool calls, so a *hop* from a node reaches the next tools (or milestones) through
    milestone-only stretches.
    """

    graph: ScenarioGraph
    g: nx.DiGraph = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        g = nx.DiGraph()
        for e in self.graph.edges:
            if g.has_edge(e.source, e.target):
                g[e.source][e.target]["cost"] = min(g[e.source][e.target]["cost"], e.cost)
            else:
                g.add_edge(e.source, e.target, cost=e.cost)
        object.__setattr__(self, "g", g)

    @cached_property
    def tools(self) -> frozenset[str]:
        """Nodes that are tools (every node but the milestones)."""
        return frozenset(self.graph.tools)

    @cached_property
    def milestones(self) -> frozenset[str]:
        """Start, goal and fallback goals."""
        return frozenset(self.graph.milestones)

    def hops(self, node: str) -> dict[str, float]:
        """Tools and milestones one hop from ``node``, with the cheapest cost to each.

        A milestone is both a hop itself and passed through (except the start) to the
        nodes beyond it.
        """
        best: dict[str, float] = {}
        frontier: list[tuple[str, float]] = [(node, 0.0)]
        seen_ms: set[str] = set()
        while frontier:
            here, acc = frontier.pop()
            for nxt in self.g.successors(here):
                c = acc + float(self.g[here][nxt]["cost"])
                if nxt in best and best[nxt] <= c:
                    continue
                best[nxt] = c
                if nxt in self.milestones and nxt != self.graph.start and nxt not in seen_ms:
                    seen_ms.add(nxt)
                    frontier.append((nxt, c))
        best.pop(node, None)
        return best

    def reaches(
        self, source: str, target: str, *, avoid: frozenset[str] | set[str] = frozenset()
    ) -> bool:
        """Whether ``target`` is reachable from ``source`` without entering ``avoid``."""
        if source in avoid:
            return False
        if source == target:
            return True
        allowed = [n for n in self.g.nodes if n not in avoid or n in (source, target)]
        return bool(nx.has_path(self.g.subgraph(allowed), source, target))

    def is_walk(self, path: Sequence[str], target: str) -> bool:
        """Whether start → ``path`` → ``target`` is a walk of the graph, hop by hop.

        Consecutive tools must be one hop apart (see :meth:`hops`); ``path`` holds tools
        only.
        """
        if any(t not in self.tools for t in path):
            return False
        seq = [self.graph.start, *path, target]
        return all(b in self.hops(a) for a, b in itertools.pairwise(seq))

    def cheapest_path(self, source: str, target: str) -> list[str] | None:
        """The cheapest node sequence from ``source`` to ``target`` (edge costs), if any."""
        try:
            path: list[str] = nx.dijkstra_path(self.g, source, target, weight="cost")
        except (nx.NetworkXNoPath, nx.NodeNotFound):
            return None
        return path


# --------------------------------------------------------------------------- calling a tool


class ToolCallFailed(Exception):
    """One call of a tool failed: it raised, timed out, or returned malformed output."""

    def __init__(self, tool: str, kind: Literal["exception", "timeout", "malformed"], message: str):
        self.tool = tool
        self.kind = kind
        super().__init__(f"{tool}: {kind}: {message}")


async def call_tool(tool: Skill, upstream: str | None) -> dict[str, Any]:
    """Call ``tool`` with the previous step's token, enforce its timeout, validate its output."""
    try:
        raw = await asyncio.wait_for(tool.acall({"token": upstream}), timeout=tool.timeout_s)
    except TimeoutError as exc:
        raise ToolCallFailed(tool.name, "timeout", f"no answer within {tool.timeout_s}s") from exc
    except Exception as exc:
        raise ToolCallFailed(tool.name, "exception", f"{type(exc).__name__}: {exc}") from exc
    try:
        return tool.parse_output(raw)
    except (ValidationError, TypeError) as exc:
        raise ToolCallFailed(tool.name, "malformed", "output fails the tool's schema") from exc


# --------------------------------------------------------------------------- ReAct


#: The line of the ReAct prompt that carries the pre-run health probe's findings.
PROBE_NOTE = "Unavailable before the run (health probe): "


@dataclass
class _History:
    """What a ReAct message history says happened so far."""

    fails: Counter[str]
    parent: dict[str, tuple[str, str | None]]  # token -> (tool, upstream token)
    explored: set[tuple[str | None, str]]  # (upstream token, tool) that succeeded
    current: str | None  # token of the last successful call
    decisions: int
    down: set[str] = field(default_factory=set)  # reported down by the pre-run probe
    undone: set[str] = field(default_factory=set)  # tokens whose call was compensated


@dataclass(frozen=True)
class ReActPolicy:
    """The decision rule of an ideal ReAct LLM that knows the tool graph.

    Pure: every decision is a function of the message history alone.  See the module
    docstring for the rule.
    """

    tg: ToolGraph
    max_attempts: int = 3
    max_decisions: int = 200

    def read(self, messages: Sequence[BaseMessage]) -> _History:
        """Rebuild the run's state from its messages (the prompt's probe note included)."""
        pending: dict[str, tuple[str, str | None]] = {}
        h = _History(fails=Counter(), parent={}, explored=set(), current=None, decisions=0)
        undo = self.tg.graph.compensations
        for m in messages:
            if isinstance(m, SystemMessage):
                for line in str(m.content).splitlines():
                    if line.startswith(PROBE_NOTE):
                        h.down |= {t.strip() for t in line[len(PROBE_NOTE) :].split(",")}
            elif isinstance(m, AIMessage):
                h.decisions += 1
                for tc in m.tool_calls:
                    up = tc["args"].get("upstream")
                    pending[str(tc["id"])] = (tc["name"], up if isinstance(up, str) else None)
            elif isinstance(m, ToolMessage):
                tool, up = pending.pop(m.tool_call_id, ("?", None))
                if m.status == "error":
                    h.fails[tool] += 1
                    continue
                if tool in undo:
                    if up is not None:
                        h.undone.add(up)
                    continue
                token = str(json.loads(str(m.content))["token"])
                h.parent[token] = (tool, up)
                h.explored.add((up, tool))
                h.current = token
        return h

    def chain(self, h: _History) -> list[tuple[str, str]]:
        """(tool, token) pairs from the start to the current position."""
        out: list[tuple[str, str]] = []
        tok = h.current
        while tok is not None:
            tool, up = h.parent[tok]
            out.append((tool, tok))
            tok = up
        return out[::-1]

    def decide(self, messages: Sequence[BaseMessage]) -> AIMessage:
        """The next message: one tool call, or a final answer (JSON)."""
        h = self.read(messages)
        if h.decisions >= self.max_decisions:
            return self._final("escalated", None, [], "decision budget exhausted")
        exhausted = {t for t, n in h.fails.items() if n >= self.max_attempts} | h.down
        chain = self.chain(h)
        g = self.tg.graph
        for target in (g.goal, *g.fallback_goals):
            for depth in range(len(chain), -1, -1):
                pos, pos_tok = chain[depth - 1] if depth else (g.start, None)
                hops = self.tg.hops(pos)
                # calls with side effects this depth would leave behind
                left = [(t, tok) for t, tok in chain[depth:] if not g.idempotent(t)]
                undo = [(t, tok) for t, tok in left if g.compensation(t) and tok not in h.undone]
                stuck = [t for t, _ in left if not g.compensation(t)]
                if target in hops:
                    if undo:  # undo the last one first (reverse order), then answer
                        return self._call(str(g.compensation(undo[-1][0])), undo[-1][1], h)
                    status = "completed" if target == g.goal else "demoted"
                    return self._final(
                        status, target, chain[:depth], f"reached {target}", extra=stuck
                    )
                if stuck:
                    continue  # backing up past a side effect that cannot be undone: never
                on_chain = {t for t, _ in chain[:depth]}
                avoid = frozenset(exhausted | on_chain | {pos})
                options = [
                    t
                    for t in hops
                    if t in self.tg.tools
                    and t not in avoid
                    and (pos_tok, t) not in h.explored
                    and self.tg.reaches(t, target, avoid=avoid)
                ]
                if options:
                    if undo:  # backing up: undo what is abandoned first
                        return self._call(str(g.compensation(undo[-1][0])), undo[-1][1], h)
                    best = min(options, key=lambda t: (h.fails[t] > 0, hops[t], t))
                    return self._call(best, pos_tok, h)
        return self._final(
            "escalated", None, [], "no untried option can reach the goal or a fallback goal"
        )

    @staticmethod
    def _call(tool: str, upstream: str | None, h: _History) -> AIMessage:
        return AIMessage(
            content="",
            tool_calls=[
                {
                    "name": tool,
                    "args": {"upstream": upstream},
                    "id": f"call_{h.decisions + 1}",
                    "type": "tool_call",
                }
            ],
        )

    @staticmethod
    def _final(
        status: str,
        target: str | None,
        chain: Sequence[tuple[str, str]],
        reason: str,
        *,
        extra: Sequence[str] = (),
    ) -> AIMessage:
        answer = {
            "status": status,
            "target": target,
            "path": [t for t, _ in chain],
            "tokens": [tok for _, tok in chain],
            "reason": reason,
            "extra_steps": list(extra),
        }
        return AIMessage(content=json.dumps(answer))


class _CallCounter:
    """A mutable count shared by a model and its tool-bound copies."""

    def __init__(self) -> None:
        self.n = 0


class ScriptedReActModel(BaseChatModel):
    """A deterministic chat model that plays :class:`ReActPolicy`; counts its calls.

    ``bind_tools`` is supported (the agent loop requires it); the tools are taken from the
    graph the policy knows, as a real model takes them from its prompt.
    """

    policy: ReActPolicy
    counter: _CallCounter = Field(default_factory=_CallCounter)

    model_config = ConfigDict(arbitrary_types_allowed=True)

    @property
    def _llm_type(self) -> str:
        return "orchestra-scripted-react"

    @property
    def calls(self) -> int:
        """Model calls made so far."""
        return self.counter.n

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.counter.n += 1
        return ChatResult(generations=[ChatGeneration(message=self.policy.decide(messages))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._generate(messages, stop, None, **kwargs)

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Any | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Accept the agent's tools; the policy already knows them from the graph."""
        return self


class _UpstreamArgs(BaseModel):
    upstream: str | None = Field(default=None, description="token of the previous step's output")


def langchain_tool(tool: Skill, note: str = "") -> StructuredTool:
    """Wrap a stand-in as a LangChain tool; every failure comes back as an error message.

    ``note`` is appended to the tool's description (the pre-run probe's finding)."""

    async def run(upstream: str | None = None) -> str:
        try:
            out = await call_tool(tool, upstream)
        except ToolCallFailed as exc:
            raise ToolException(str(exc)) from exc
        return json.dumps(out)

    return StructuredTool.from_function(
        coroutine=run,
        name=tool.name,
        description=(tool.description or tool.name) + (f" ({note})" if note else ""),
        args_schema=_UpstreamArgs,
        handle_tool_error=True,
    )


def _react_prompt(graph: ScenarioGraph, down: Sequence[str] = ()) -> str:
    edges = "; ".join(f"{e.source}->{e.target} ({e.cost})" for e in graph.edges)
    fallbacks = ", ".join(graph.fallback_goals) or "none"
    effects = "; ".join(
        f"{t} (undo a call with {se.compensate})" if se.compensate else f"{t} (cannot be undone)"
        for t, se in graph.side_effects.items()
    )
    lines = [
        f"Run the workflow from {graph.start} to {graph.goal} along the graph {edges}. "
        f"Pass each tool the token of the previous tool's output as `upstream`. "
        f"If {graph.goal} cannot be reached, reach a fallback goal ({fallbacks}); "
        "if none can be reached, say that you cannot complete."
    ]
    if effects:
        lines.append(
            f"Tools with side effects: {effects}. Before abandoning one of their calls, undo it "
            "(pass its token as `upstream`); never abandon one that cannot be undone to redo it, "
            "and list in extra_steps those left done beyond your answer."
        )
    if down:
        lines.append(PROBE_NOTE + ", ".join(down))
    return "\n".join(lines)


async def run_react(
    graph: ScenarioGraph,
    tools: Mapping[str, Skill],
    *,
    max_attempts: int = 3,
    system: str = "react",
    down: Sequence[str] = (),
    compensations: Mapping[str, Skill] | None = None,
) -> SystemRun:
    """Run the ReAct baseline on one scenario (its stand-ins in ``tools``).

    ``down`` is the pre-run health probe's finding, given to the agent as a note of its
    prompt; ``compensations`` are the tools that undo calls of tools with side effects.
    """
    from langchain.agents import create_agent

    t0 = time.perf_counter()
    tg = ToolGraph(graph)
    model = ScriptedReActModel(policy=ReActPolicy(tg, max_attempts=max_attempts))
    every = [*tools.values(), *(compensations or {}).values()]
    down_note = "unavailable before the run: health probe"
    agent = create_agent(
        model,
        [langchain_tool(t, down_note if t.name in down else "") for t in every],
        system_prompt=_react_prompt(graph, down),
    )
    limit = 4 * model.policy.max_decisions + 10
    try:
        state = await agent.ainvoke(
            {"messages": [HumanMessage(f"Complete the {graph.goal} workflow.")]},
            config={"recursion_limit": limit},
        )
    except Exception as exc:
        return SystemRun(
            system=system,
            status="failed",
            claimed_success=False,
            llm_calls=model.calls,
            wall_ms=(time.perf_counter() - t0) * 1000.0,
            detail=f"agent raised {type(exc).__name__}: {exc}",
        )
    wall_ms = (time.perf_counter() - t0) * 1000.0
    messages: list[BaseMessage] = list(state["messages"])
    answer = json.loads(str(messages[-1].content))
    status: RunStatus = answer["status"]
    return SystemRun(
        system=system,
        status=status,
        claimed_success=status in ("completed", "demoted"),
        target=answer["target"],
        path=answer["path"],
        tokens=answer["tokens"],
        llm_calls=model.calls,
        reroutes=_react_reroutes(messages),
        escalations=int(status == "escalated"),
        wall_ms=wall_ms,
        detail=answer["reason"],
        extra_steps=list(answer.get("extra_steps", [])),
    )


def _react_reroutes(messages: Sequence[BaseMessage]) -> int:
    """Decisions that, right after a failed call, chose a different tool."""
    n = 0
    failed: str | None = None
    for m in messages:
        if isinstance(m, ToolMessage):
            failed = m.name if m.status == "error" else None
        elif isinstance(m, AIMessage):
            if failed is not None and any(tc["name"] != failed for tc in m.tool_calls):
                n += 1
            failed = None
    return n


# --------------------------------------------------------------------------- static


@dataclass(frozen=True)
class StaticHop:
    """One hop of the static workflow: its primary tool and its one-step fallback."""

    primary: str
    fallback: str | None
    after: str  # the node the hop leads to on the primary path


def static_plan(tg: ToolGraph) -> list[StaticHop] | None:
    """The fixed wiring a careful engineer derives from the graph, or None if no path.

    The primary path is the cheapest start-to-goal path (edge costs).  The fallback of a
    hop is the cheapest other tool that is one hop from the primary's predecessor and one
    hop from the primary's successor, so that swapping it in keeps the path valid; a hop
    with no such tool has no fallback.
    """
    g = tg.graph
    nodes = tg.cheapest_path(g.start, g.goal)
    if nodes is None:
        return None
    seq = [n for n in nodes if n in tg.tools]
    anchors = [g.start, *seq, g.goal]
    plan: list[StaticHop] = []
    for i, primary in enumerate(seq):
        before, after = anchors[i], anchors[i + 2]
        hops = tg.hops(before)
        alts = [t for t in hops if t in tg.tools and t != primary and after in tg.hops(t)]
        fallback = min(alts, key=lambda t: (hops[t] + tg.hops(t)[after], t)) if alts else None
        plan.append(StaticHop(primary=primary, fallback=fallback, after=after))
    return plan


class HopFailed(Exception):
    """Every tool a static hop may use failed on this attempt."""


class _StaticState(TypedDict):
    last: str
    upstream: str | None
    path: Annotated[list[str], operator.add]
    tokens: Annotated[list[str], operator.add]
    reroutes: Annotated[int, operator.add]


async def run_static(
    graph: ScenarioGraph,
    tools: Mapping[str, Skill],
    *,
    max_attempts: int = 3,
    retry_interval_s: float = 0.005,
    system: str = "static",
    down: Sequence[str] = (),
) -> SystemRun:
    """Run the static LangGraph workflow on one scenario (its stand-ins in ``tools``).

    Each hop node tries its primary, then its fallback (only a tool one hop from the tool
    actually used before it); if both fail it raises :class:`HopFailed` and the node's
    ``RetryPolicy`` runs it again, up to ``max_attempts`` times.  A hop that still fails
    ends the run as an explicit escalation with the partial path; the workflow never
    continues past a failed hop.  A tool the pre-run health probe reports ``down`` is
    skipped (a careful engineer's health check before a call), never called.
    """
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import RetryPolicy

    tg = ToolGraph(graph)
    t0 = time.perf_counter()
    skipped = set(down)
    plan = static_plan(tg)
    if plan is None:
        return SystemRun(
            system=system,
            status="escalated",
            claimed_success=False,
            escalations=1,
            detail=f"no path from {graph.start} to {graph.goal} to wire",
        )
    retry = RetryPolicy(
        initial_interval=retry_interval_s,
        backoff_factor=2.0,
        max_interval=retry_interval_s * 8,
        max_attempts=max_attempts,
        jitter=False,
        retry_on=HopFailed,
    )

    def make_hop(hop: StaticHop) -> Any:
        async def run_hop(state: _StaticState) -> dict[str, Any]:
            reachable = tg.hops(state["last"])
            errors: list[str] = []
            for name in (hop.primary, hop.fallback):
                if name is None:
                    continue
                if name not in reachable:
                    errors.append(f"{name}: not reachable from {state['last']}")
                    continue
                if name in skipped:
                    errors.append(f"{name}: down (health probe)")
                    continue
                try:
                    out = await call_tool(tools[name], state["upstream"])
                except ToolCallFailed as exc:
                    errors.append(str(exc))
                    continue
                return {
                    "last": name,
                    "upstream": out["token"],
                    "path": [name],
                    "tokens": [out["token"]],
                    "reroutes": int(name != hop.primary),
                }
            raise HopFailed(f"hop {hop.primary}: " + "; ".join(errors))

        return run_hop

    builder = StateGraph(_StaticState)
    previous = START
    for i, hop in enumerate(plan):
        node = f"hop{i}_{hop.primary}"
        builder.add_node(node, make_hop(hop), retry_policy=retry)
        builder.add_edge(previous, node)
        previous = node
    builder.add_edge(previous, END)
    app = builder.compile()

    last_state: dict[str, Any] = {"path": [], "tokens": [], "reroutes": 0}
    init: _StaticState = {
        "last": graph.start,
        "upstream": None,
        "path": [],
        "tokens": [],
        "reroutes": 0,
    }
    try:
        async for snapshot in app.astream(init, stream_mode="values"):
            last_state = dict(snapshot)
    except HopFailed as exc:
        return SystemRun(
            system=system,
            status="escalated",
            claimed_success=False,
            path=list(last_state["path"]),
            tokens=list(last_state["tokens"]),
            reroutes=int(last_state["reroutes"]),
            escalations=1,
            wall_ms=(time.perf_counter() - t0) * 1000.0,
            detail=f"escalated to a human: {exc}",
        )
    except Exception as exc:
        return SystemRun(
            system=system,
            status="failed",
            claimed_success=False,
            path=list(last_state["path"]),
            tokens=list(last_state["tokens"]),
            wall_ms=(time.perf_counter() - t0) * 1000.0,
            detail=f"workflow raised {type(exc).__name__}: {exc}",
        )
    return SystemRun(
        system=system,
        status="completed",
        claimed_success=True,
        target=graph.goal,
        path=list(last_state["path"]),
        tokens=list(last_state["tokens"]),
        reroutes=int(last_state["reroutes"]),
        wall_ms=(time.perf_counter() - t0) * 1000.0,
        detail="fixed path" if not last_state["reroutes"] else "fixed path with fallbacks",
    )
