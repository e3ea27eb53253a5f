"""The web view of runs: a list of recent runs and a page per run, served by FastAPI.

* ``/`` lists recent runs: status, graph, steps, reroutes, cost and duration;
* ``/runs/{id}`` shows one run: the route graph drawn with what happened on it
  (:mod:`orchestra.viz`), the decision log alongside, the spend, and a link to the run's trace
  in Jaeger; while the run is going, the page updates itself every second;
* ``/runs/{id}.svg`` and ``/api/runs/{id}`` give the picture and the state alone.

Pages are rendered on the server; the only script is a few lines inline that refresh the
live part of a running run's page. Nothing is fetched from another host, so the view works
offline. Mount :func:`ui_router` into another FastAPI app (the runs API does), or serve it
alone with ``orchestra ui``.
"""

from __future__ import annotations

import html
import json
import os
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from orchestra.redact import redact, redact_text

if TYPE_CHECKING:
    from fastapi import APIRouter, FastAPI

    from orchestra.checkpoint import Checkpointer
    from orchestra.results import RunState

__all__ = ["create_app", "jaeger_link", "ui_router"]

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;
color:#1f2328;background:#f6f8fa}
header{background:#24292f;color:#fff;padding:10px 20px;font-weight:600}
header a{color:#fff;text-decoration:none}
main{padding:16px 20px}
table{border-collapse:collapse;background:#fff;width:100%;font-size:14px}
th,td{border-bottom:1px solid #d0d7de;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}
.status{font-weight:600;padding:1px 6px;border-radius:10px;font-size:12px}
.completed{background:#d9f2d9;color:#1a7f37}.demoted{background:#fff8c5;color:#7d4e00}
.escalated{background:#fde2e1;color:#cf222e}.running{background:#ddf4ff;color:#0969da}
.queued{background:#eaeef2;color:#57606a}.cancelled{background:#eaeef2;color:#6e7781}
.layout{display:flex;gap:16px;align-items:flex-start;flex-wrap:wrap}
.picture{background:#fff;border:1px solid #d0d7de;padding:8px;flex:3 1 640px;overflow:auto}
.picture svg{max-width:100%;height:auto}
.log{flex:2 1 420px;max-height:80vh;overflow:auto}
.kind-fail td.kind,.kind-escalate td.kind{color:#cf222e;font-weight:600}
.kind-reroute td.kind,.kind-demote td.kind{color:#9a6700;font-weight:600}
.kind-succeed td.kind,.kind-complete td.kind{color:#1a7f37}
.kind-compensate td.kind{color:#8250df;font-weight:600}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px;margin:0 0 12px}
dt{color:#59636e}dd{margin:0}
.reason{background:#fff8c5;border:1px solid #d4a72c;padding:6px 10px;margin:8px 0}
pre{white-space:pre-wrap}
"""

_LIVE_SCRIPT = """
<script>
(function(){
  const live = document.getElementById("live");
  async function tick(){
    try {
      const r = await fetch(live.dataset.src, {cache: "no-store"});
      if (r.ok) {
        const data = await r.json();
        live.innerHTML = data.html;
        document.getElementById("run-status").outerHTML = data.status_html;
        if (data.status !== "running" && data.status !== "queued") { return; }
      }
    } catch (e) {}
    setTimeout(tick, 1000);
  }
  setTimeout(tick, 1000);
})();
</script>
"""


def jaeger_link(state: RunState) -> str:
    """Where the run's trace is in Jaeger: by trace id when the run stored one, else a search.

    ``ORCHESTRA_JAEGER_URL`` (default ``http://localhost:16686``) is the Jaeger UI.
    """
    base = os.environ.get("ORCHESTRA_JAEGER_URL", "http://localhost:16686").rstrip("/")
    trace_id = getattr(state, "trace_id", None) or (state.origin or {}).get("trace_id")
    if trace_id:
        return f"{base}/trace/{trace_id}"
    service = (state.origin or {}).get("service") or os.environ.get(
        "OTEL_SERVICE_NAME", "orchestra"
    )
    tags = json.dumps({"orchestra.run_id": state.run_id})
    return f"{base}/search?" + urllib.parse.urlencode({"service": service, "tags": tags})


def _e(v: object) -> str:
    return html.escape(str(v), quote=True)


def _duration_ms(state: RunState) -> float:
    return max((d.at_ms for d in state.decisions), default=0.0)


def _status(state: RunState) -> str:
    return f'<span id="run-status" class="status {_e(state.status)}">{_e(state.status)}</span>'


def _page(title: str, body: str, root: str = "") -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>"
        f'<header><a href="{_e(root)}/">Orchestra runs</a></header>'
        f"<main>{body}</main></body></html>"
    )


def _runs_table(states: list[RunState], root: str = "") -> str:
    rows = []
    for s in states:
        rows.append(
            "<tr>"
            f'<td><a href="{_e(root)}/runs/{_e(s.run_id)}">{_e(s.run_id)}</a></td>'
            f"<td>{_e(s.graph)}</td>"
            f'<td><span class="status {_e(s.status)}">{_e(s.status)}</span></td>'
            f"<td>{len(s.completed)}</td>"
            f"<td>{sum(1 for d in s.decisions if d.kind == 'reroute')}</td>"
            f"<td>${s.spent_usd:.4f}</td>"
            f"<td>{_duration_ms(s):,.0f} ms</td>"
            "</tr>"
        )
    if not rows:
        return "<p>No runs yet. Start one: <code>orchestra run graphs/support_triage.py</code></p>"
    return (
        '<table id="runs"><thead><tr><th>run</th><th>graph</th><th>status</th><th>steps</th>'
        "<th>reroutes</th><th>cost</th><th>duration</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _picture_html(state: RunState) -> str:
    from orchestra import viz

    try:
        pic = viz.run_picture(state, viz.graph_of_run(state))
    except Exception as exc:  # a damaged log still gets its page
        return f"<p>cannot draw this run: {_e(exc)}</p>"
    if viz.renderer() is None:
        return (
            "<p>Install Graphviz to see the picture here (apt-get install graphviz); "
            f"Mermaid text:</p><pre>{_e(viz.to_mermaid(pic))}</pre>"
        )
    try:
        svg = viz.render(pic, "svg").decode()
    except viz.RenderError as exc:
        return f"<p>{_e(exc)}</p><pre>{_e(viz.to_mermaid(pic))}</pre>"
    return svg[svg.find("<svg") :]  # drop the XML prolog and doctype: inline SVG


def _log_html(state: RunState) -> str:
    rows = []
    for d in state.decisions:
        where = "/".join(x for x in (d.step, d.skill) if x)
        rows.append(
            f'<tr class="kind-{_e(d.kind)}"><td>{d.at_ms:,.1f}</td>'
            f'<td class="kind">{_e(d.kind)}</td><td>{_e(where)}</td>'
            f"<td>{_e(redact_text(d.reason))}</td></tr>"
        )
    return (
        '<table id="decisions"><thead><tr><th>ms</th><th>decision</th><th>step/skill</th>'
        "<th>reason</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _summary_html(state: RunState) -> str:
    items = [
        ("graph", _e(state.graph)),
        ("goal", _e(state.goal)),
        ("steps done", str(len(state.completed))),
        ("spent", f"${state.spent_usd:.4f}"),
    ]
    if state.budget_usd is not None:
        items.append(("budget", f"${state.budget_usd:.4f}"))
    items += [
        ("LLM calls", str(state.llm_calls)),
        ("duration", f"{_duration_ms(state):,.0f} ms"),
        (
            "trace",
            f'<a id="jaeger" href="{_e(jaeger_link(state))}">open the trace in Jaeger</a>',
        ),
    ]
    dl = "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"
    if state.reason and state.status in ("demoted", "escalated"):
        dl += f'<div class="reason">{_e(redact_text(state.reason))}</div>'
    return dl


def _live_html(state: RunState) -> str:
    return (
        _summary_html(state)
        + f'<div class="layout"><div class="picture" id="picture">{_picture_html(state)}</div>'
        f'<div class="log">{_log_html(state)}</div></div>'
    )


def _run_page(state: RunState, root: str = "") -> str:
    live = state.status in ("running", "queued")
    body = (
        f"<h2>run {_e(state.run_id)} {_status(state)}</h2>"
        f'<div id="live" data-src="{_e(root)}/runs/{_e(state.run_id)}/live">'
        f"{_live_html(state)}</div>" + (_LIVE_SCRIPT if live else "")
    )
    return _page(f"run {state.run_id} — Orchestra", body, root)


def ui_router(checkpointer: Checkpointer, *, root: str = "") -> APIRouter:
    """The web view's routes over a checkpoint store. Mount it into any FastAPI app with
    ``app.include_router(ui_router(cp, root="/ui"), prefix="/ui")`` (``root``: the prefix its
    pages link under; the runs API serves it at ``/ui``)."""
    from fastapi import APIRouter, HTTPException
    from fastapi.responses import HTMLResponse, JSONResponse, Response

    router = APIRouter()

    async def load(run_id: str) -> RunState:
        state = await checkpointer.load(run_id)
        if state is None:
            raise HTTPException(404, f"no run {run_id!r} in the checkpoint store")
        return state

    @router.get("/", response_class=HTMLResponse)
    async def runs(limit: int = 50) -> str:
        states = await checkpointer.list_runs(limit)
        return _page("Orchestra runs", "<h2>Recent runs</h2>" + _runs_table(states, root), root)

    @router.get("/runs/{run_id}.svg")
    async def run_svg(run_id: str) -> Response:
        from orchestra import viz

        state = await load(run_id)
        try:
            data = viz.render(viz.run_picture(state, viz.graph_of_run(state)), "svg")
        except viz.RenderError as exc:
            raise HTTPException(503, str(exc)) from exc
        return Response(data, media_type="image/svg+xml")

    @router.get("/runs/{run_id}/live")
    async def run_live(run_id: str) -> JSONResponse:
        state = await load(run_id)
        return JSONResponse(
            {"status": state.status, "html": _live_html(state), "status_html": _status(state)},
            headers={"Cache-Control": "no-store"},
        )

    @router.get("/runs/{run_id}", response_class=HTMLResponse)
    async def run_page(run_id: str) -> str:
        return _run_page(await load(run_id), root)

    @router.get("/api/runs/{run_id}")
    async def run_json(run_id: str) -> dict[str, Any]:
        state = await load(run_id)
        return {**redact(state.model_dump(mode="json")), "jaeger": jaeger_link(state)}

    return router


def create_app(checkpoint_url: str | None = None) -> FastAPI:
    """A FastAPI app serving the web view over the checkpoint store at ``checkpoint_url``."""
    from fastapi import FastAPI

    from orchestra.checkpoint import open_checkpointer
    from orchestra.errors import ConfigError

    checkpointer = open_checkpointer(checkpoint_url)
    if checkpointer is None:
        raise ConfigError(
            "the web view reads runs from the checkpoint store, and checkpointing is off "
            "(ORCHESTRA_CHECKPOINT_URL=none)",
            field="checkpoint_url",
        )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await checkpointer.aclose()

    app = FastAPI(title="Orchestra runs", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.include_router(ui_router(checkpointer))
    return app
