"""Orchestra: agent workflows as cost-weighted tool graphs that heal around failing tools.

Declare a :class:`Graph` of :class:`Step` served by interchangeable :class:`Skill`; a
:class:`Runner` routes each step with Dijkstra over health-weighted costs, reroutes around
failures without an LLM, demotes to a lesser goal (one LLM call) when nothing is left, and
escalates to a human when even that fails.
"""

from orchestra.building import build_runner
from orchestra.config import Settings
from orchestra.errors import (
    BudgetExceeded,
    ConfigError,
    ControlSignal,
    Escalation,
    ExecutorError,
    GraphSpecError,
    MalformedOutput,
    ModelError,
    OrchestraError,
    RunError,
    RunInputError,
    SkillSpecError,
    SpecError,
    StepFailed,
    ToolRaised,
    ToolTimeout,
    UnknownSkillError,
)
from orchestra.executors import Executor, LocalExecutor, StepOutcome, StepTask
from orchestra.graph import CompiledGraph, Graph, Step
from orchestra.loaders import graph_from_scenario, load_graph
from orchestra.logs import _default as _default_logging
from orchestra.logs import configure_logging
from orchestra.models import ChatMessage, ChatModel, ChatResponse
from orchestra.monitors import HealthBoard, Monitor, MonitorContext, Signal
from orchestra.results import Decision, RunResult, RunState
from orchestra.runtime import Runner, run, run_sync
from orchestra.service.client import RunHandle, submit
from orchestra.skills import Skill, SkillRegistry, skill

__all__ = [
    "BudgetExceeded",
    "ChatMessage",
    "ChatModel",
    "ChatResponse",
    "CompiledGraph",
    "ConfigError",
    "ControlSignal",
    "Decision",
    "Escalation",
    "Executor",
    "ExecutorError",
    "Graph",
    "GraphSpecError",
    "HealthBoard",
    "LocalExecutor",
    "MalformedOutput",
    "ModelError",
    "Monitor",
    "MonitorContext",
    "OrchestraError",
    "RunError",
    "RunHandle",
    "RunInputError",
    "RunResult",
    "RunState",
    "Runner",
    "Settings",
    "Signal",
    "Skill",
    "SkillRegistry",
    "SkillSpecError",
    "SpecError",
    "Step",
    "StepFailed",
    "StepOutcome",
    "StepTask",
    "ToolRaised",
    "ToolTimeout",
    "UnknownSkillError",
    "build_runner",
    "configure_logging",
    "graph_from_scenario",
    "load_graph",
    "run",
    "run_sync",
    "skill",
    "submit",
]

_default_logging()
