"""The HTTP API of runs as a service (FastAPI; ``orchestra serve-api``).

==========================  =====================================================
``GET  /graphs``            graph names runs may be submitted for
``POST /runs``              ``{"graph", "input", "budget"}`` → 202 ``{"run_id", "status"}``
``GET  /runs?status=``      recent runs (newest first)
``GET  /runs/{id}``         the run's state: status, steps done, decision log
``GET  /runs/{id}/result``  ``?timeout=S``: its result once it ended (408 if not by then)
``POST /runs/{id}/cancel``  ask it to stop (202)
``GET  /runs/{id}/events``  the decision log, live, as server-sent events
``GET  /ui/``               the web view: recent runs, a page per run (:mod:`orchestra.ui`)
==========================  =====================================================

This module imports FastAPI: import it only where the API is served.  Graphs are named,
never given as code or paths: a name must be registered (by a driver,
or in the registry file ``ORCHESTRA_GRAPHS``).  Errors are JSON ``{"error", "type"}``:
400 bad input, 404 unknown run or graph, 503 the fleet's Redis or broker unreachable.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from orchestra.errors import ConfigError, ExecutorError, RunInputError, SpecError
from orchestra.service.client import RunService
from orchestra.service.registry import GraphRegistry, UnknownGraphError

if TYPE_CHECKING:
    from orchestra.config import Settings

__all__ = ["SubmitRequest", "create_api"]


class SubmitRequest(BaseModel):
    """The body of ``POST /runs``."""

    graph: str = Field(min_length=1, description="a registered graph name")
    input: dict[str, Any] = Field(default_factory=dict)
    budget: float | None = Field(default=None, ge=0, description="hard budget in USD")
    run_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[\w.-]+$")


def _summary(state: Any, driver: str | None = None) -> dict[str, Any]:
    return {
        "run_id": state.run_id,
        "graph": state.graph,
        "status": state.status,
        "goal": state.goal,
        "reason": state.reason,
        "steps_done": sorted(state.completed),
        "spent_usd": state.spent_usd,
        "submitted_at": state.origin.get("submitted_at"),
        "driver": driver,
    }


def create_api(settings: Settings | None = None, *, registry: GraphRegistry | None = None) -> Any:
    """The FastAPI app; with a ``registry``, a run's input is checked before it is queued."""
    import contextlib

    service = RunService(settings, registry=registry)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await service.aclose()

    app = FastAPI(title="Orchestra runs", version="1", lifespan=lifespan)
    # the web view of the same runs (list, run pages with the route picture, live updates)
    from orchestra.ui import ui_router

    app.include_router(ui_router(service.checkpointer(), root="/ui"), prefix="/ui")

    def error(status: int, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": str(exc), "type": type(exc).__name__}, status_code=status)

    @app.exception_handler(UnknownGraphError)
    async def _unknown_graph(_r: Request, exc: UnknownGraphError) -> JSONResponse:
        return error(404, exc)

    @app.exception_handler(RunInputError)
    async def _bad_input(_r: Request, exc: RunInputError) -> JSONResponse:
        return error(404 if str(exc).startswith("no run ") else 400, exc)

    @app.exception_handler(ConfigError)
    async def _config(_r: Request, exc: ConfigError) -> JSONResponse:
        return error(400, exc)

    @app.exception_handler(SpecError)
    async def _spec(_r: Request, exc: SpecError) -> JSONResponse:
        return error(400, exc)

    @app.exception_handler(ExecutorError)
    async def _fleet(_r: Request, exc: ExecutorError) -> JSONResponse:
        return error(503, exc)

    @app.get("/graphs")
    async def graphs() -> dict[str, list[str]]:
        return {"graphs": await service.graphs()}

    @app.post("/runs", status_code=202)
    async def submit(req: SubmitRequest) -> dict[str, Any]:
        handle = await service.submit(req.graph, req.input, budget=req.budget, run_id=req.run_id)
        return {"run_id": handle.run_id, "status": "queued"}

    @app.get("/runs")
    async def list_runs(status: str | None = None, limit: int = 50) -> dict[str, Any]:
        runs = await service.list_runs(status, min(max(limit, 1), 1000))
        drivers = await service.drivers()
        return {"runs": [_summary(r, drivers.get(r.run_id)) for r in runs]}

    @app.get("/runs/{run_id}")
    async def get_run(run_id: str) -> dict[str, Any]:
        state = await service.state(run_id)
        drivers = await service.drivers()
        out = _summary(state, drivers.get(run_id))
        out["decisions"] = [d.model_dump(mode="json") for d in state.decisions]
        return out

    @app.get("/runs/{run_id}/result", response_model=None)
    async def result(run_id: str, timeout: float = 0.0) -> Any:
        try:
            res = await service.handle(run_id).result(timeout=max(0.0, min(timeout, 300.0)))
        except TimeoutError as exc:
            return error(408, exc)
        return res.model_dump(mode="json")

    @app.post("/runs/{run_id}/cancel", status_code=202)
    async def cancel(run_id: str, reason: str = "cancelled through the API") -> dict[str, str]:
        return {"run_id": run_id, "detail": await service.handle(run_id).cancel(reason)}

    @app.get("/runs/{run_id}/events")
    async def events(run_id: str, request: Request) -> StreamingResponse:
        await service.state(run_id)  # 404 before the stream starts
        after = request.headers.get("last-event-id", "0")

        async def stream() -> AsyncIterator[str]:
            # a watcher has its own connections: one slow client holds nothing of others
            async with RunService(service.settings) as own:
                async for ev in own.handle(run_id).events(after=after):
                    if await request.is_disconnected():
                        return
                    data = json.dumps(ev.model_dump(mode="json", exclude={"id"}))
                    yield f"id: {ev.id}\nevent: {ev.type}\ndata: {data}\n\n"

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return app
