"""Orchestra: agent workflows as cost-weighted tool graphs that heal around failing tools.

Declare a :class:`Graph` of :class:`Step` served by interchangeable :class:`Skill`; a
:class:`Runner` routes each step with Dijkstra over health-weighted costs, reroutes around
failures without an LLM, demotes to a lesser goal (one LLM call) when nothing is left, and
escalates to a human when even that fails.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
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

# ``import orchestra`` stays light: each public name is imported from its module on first use.
_EXPORTS: dict[str, str] = {
    "BudgetExceeded": "orchestra.errors",
    "ChatMessage": "orchestra.models",
    "ChatModel": "orchestra.models",
    "ChatResponse": "orchestra.models",
    "CompiledGraph": "orchestra.graph",
    "ConfigError": "orchestra.errors",
    "ControlSignal": "orchestra.errors",
    "Decision": "orchestra.results",
    "Escalation": "orchestra.errors",
    "Executor": "orchestra.executors",
    "ExecutorError": "orchestra.errors",
    "Graph": "orchestra.graph",
    "GraphSpecError": "orchestra.errors",
    "HealthBoard": "orchestra.monitors",
    "LocalExecutor": "orchestra.executors",
    "MalformedOutput": "orchestra.errors",
    "ModelError": "orchestra.errors",
    "Monitor": "orchestra.monitors",
    "MonitorContext": "orchestra.monitors",
    "OrchestraError": "orchestra.errors",
    "RunError": "orchestra.errors",
    "RunHandle": "orchestra.service.client",
    "RunInputError": "orchestra.errors",
    "RunResult": "orchestra.results",
    "RunState": "orchestra.results",
    "Runner": "orchestra.runtime",
    "Settings": "orchestra.config",
    "Signal": "orchestra.monitors",
    "Skill": "orchestra.skills",
    "SkillRegistry": "orchestra.skills",
    "SkillSpecError": "orchestra.errors",
    "SpecError": "orchestra.errors",
    "Step": "orchestra.graph",
    "StepFailed": "orchestra.errors",
    "StepOutcome": "orchestra.executors",
    "StepTask": "orchestra.executors",
    "ToolRaised": "orchestra.errors",
    "ToolTimeout": "orchestra.errors",
    "UnknownSkillError": "orchestra.errors",
    "build_runner": "orchestra.building",
    "configure_logging": "orchestra.logs",
    "graph_from_scenario": "orchestra.loaders",
    "load_graph": "orchestra.loaders",
    "run": "orchestra.runtime",
    "run_sync": "orchestra.runtime",
    "skill": "orchestra.skills",
    "submit": "orchestra.service.client",
}


def __getattr__(name: str) -> _typing.Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestra' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
