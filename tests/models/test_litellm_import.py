"""litellm's import (seconds) happens before a model call's clock starts, never inside it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    import orchestra
    from orchestra import Graph, Runner, tracing
    from orchestra.agents import AgentProfile, agent_skill
    from orchestra.models import Backend, ModelRouter

    print("imported at start:", "litellm" in sys.modules)
    seen = []
    chat_span = tracing.chat_span

    def spy(*args, **kwargs):
        mod = sys.modules.get("litellm")
        seen.append(mod is not None and hasattr(mod, "acompletion"))
        return chat_span(*args, **kwargs)

    tracing.chat_span = spy
    backend = Backend(model="openai/remote-model", name="remote", api_base=sys.argv[1],
                      api_key="k", tier=1, input_cost_per_token=1e-6, output_cost_per_token=1e-6)
    profile = AgentProfile(name="w", role="a writer", prompt="{text}", max_tokens=20)
    g = Graph("one")
    g.step("write", [agent_skill(profile, ModelRouter([backend]))])
    r = asyncio.run(Runner().run(g, {"text": "hello"}))
    print("status:", r.status, "llm_calls:", r.llm_calls)
    print("litellm ready when each chat span started:", seen)
    """
)


@pytest.mark.slow
def test_litellm_is_imported_before_the_first_chat_span(endpoint_factory) -> None:  # type: ignore[no-untyped-def]
    """In a fresh process: ``import orchestra`` does not import litellm; the run imports it
    at its start, and it is ready when the first ``chat`` span (the call's clock) starts."""
    ep = endpoint_factory("remote-model")
    p = subprocess.run(
        [sys.executable, "-c", SCRIPT, ep.base_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "imported at start: False" in p.stdout
    assert "status: completed llm_calls: 1" in p.stdout, p.stdout
    assert "litellm ready when each chat span started: [True]" in p.stdout, p.stdout
