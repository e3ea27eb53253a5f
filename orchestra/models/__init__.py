"""LLM access: one chat interface, and (later) the budget-aware model router around it."""

from orchestra.models.base import ChatMessage, ChatModel, ChatResponse, Usage

__all__ = ["ChatMessage", "ChatModel", "ChatResponse", "Usage"]
