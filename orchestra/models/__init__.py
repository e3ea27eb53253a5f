"""LLM access: one chat interface, and the budget-aware model router around it.

* :mod:`~orchestra.models.base` — :class:`ChatModel`, the one interface every LLM call uses;
* :mod:`~orchestra.models.backends` — :class:`Backend` specs and :class:`LiteLLMChatModel`
  (the only module that imports litellm);
* :mod:`~orchestra.models.budget` — the run's hard budget: :class:`InMemoryLedger`,
  :class:`RedisLedger`, and :func:`current_ledger` (the ledger of the run that calls);
* :mod:`~orchestra.models.policy` — difficulty features, :class:`SuccessPredictor`,
  :class:`RoutingPolicy` and its ``quality`` knob;
* :mod:`~orchestra.models.router` — :class:`ModelRouter`, a ChatModel that picks a backend
  per call under the budget and routes around failing backends;
* :mod:`~orchestra.models.serve` — :class:`VLLMServer`, the local vLLM server;
* :mod:`~orchestra.models.settings` — :class:`ModelSettings` (``ORCHESTRA_MODELS_*``) and
  :func:`build_router`.
"""

from orchestra.models.backends import Backend, BackendError, LiteLLMChatModel, Prices
from orchestra.models.base import ChatMessage, ChatModel, ChatResponse, Usage
from orchestra.models.budget import (
    BudgetRefusal,
    BudgetSnapshot,
    CallMeter,
    InMemoryLedger,
    Ledger,
    RedisLedger,
    Reservation,
    current_ledger,
    use_ledger,
)
from orchestra.models.policy import RoutingPolicy, RoutingRow, SuccessPredictor, load_rows
from orchestra.models.router import (
    AllBackendsFailed,
    AnswerCheck,
    BackendHealth,
    ModelRouter,
    RouteDecision,
    RoutedResponse,
)
from orchestra.models.serve import VLLMServer
from orchestra.models.settings import ModelSettings, build_router

__all__ = [
    "AllBackendsFailed",
    "AnswerCheck",
    "Backend",
    "BackendError",
    "BackendHealth",
    "BudgetRefusal",
    "BudgetSnapshot",
    "CallMeter",
    "ChatMessage",
    "ChatModel",
    "ChatResponse",
    "InMemoryLedger",
    "Ledger",
    "LiteLLMChatModel",
    "ModelRouter",
    "ModelSettings",
    "Prices",
    "RedisLedger",
    "Reservation",
    "RouteDecision",
    "RoutedResponse",
    "RoutingPolicy",
    "RoutingRow",
    "SuccessPredictor",
    "Usage",
    "VLLMServer",
    "build_router",
    "current_ledger",
    "load_rows",
    "use_ledger",
]
