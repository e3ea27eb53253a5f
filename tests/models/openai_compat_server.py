"""A small, real OpenAI-compatible HTTP server for the router's integration tests.

Run as a process: ``python openai_compat_server.py PORT [MODEL ...]``.  It speaks
``GET /v1/models`` and ``POST /v1/chat/completions`` (with ``usage``), answers
deterministically (``"<model> says: <first words of the last user message>"``) and lets a
test steer it per model name prefix:

* ``fail-...``   answers HTTP 500;
* ``limit-...``  answers HTTP 429 (rate limited);
* ``slow-...``   sleeps 5 s before answering (for timeouts);
* ``bad-...``    answers HTTP 400;
* ``echo-...``   answers with the last user message itself (a faithful "summary");
* ``garbage-...`` answers with a small model's drift (invented date, address and codes).

``GET /stats`` returns how many completions each model served.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_served: dict[str, int] = {}

# What SmolLM2-135M wrote as a case note on the CPU vLLM server (issue 13).
GARBAGE = (
    "Last updated: March 21, 2024: babyyourguy@gmail.com ... B.G.H.A.D. BOUNDER dbnBkbf "
    "kkBGHAD 7719 refund"
)
_lock = threading.Lock()


def _tokens(text: str) -> int:
    return max(1, len(text.encode("utf-8")) // 4)


class Handler(BaseHTTPRequestHandler):
    server_version = "openai-compat-test/1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            names = self.server.models  # type: ignore[attr-defined]
            self._send(
                200, {"object": "list", "data": [{"id": m, "object": "model"} for m in names]}
            )
        elif self.path == "/stats":
            with _lock:
                self._send(200, dict(_served))
        else:
            self._send(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, {"error": {"message": "not found"}})
            return
        req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        model = str(req.get("model", ""))
        if model.startswith("fail-"):
            self._send(
                500, {"error": {"message": "internal error (scripted)", "type": "server_error"}}
            )
            return
        if model.startswith("limit-"):
            self._send(429, {"error": {"message": "rate limited (scripted)", "type": "rate_limit"}})
            return
        if model.startswith("bad-"):
            self._send(
                400,
                {"error": {"message": "bad request (scripted)", "type": "invalid_request_error"}},
            )
            return
        if model.startswith("slow-"):
            time.sleep(5)
        messages = req.get("messages", [])
        last = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        if model.startswith("echo-"):
            text = " ".join(str(last).split())
        elif model.startswith("garbage-"):
            text = GARBAGE
        else:
            text = f"{model} says: " + " ".join(str(last).split()[:8])
        max_tokens = int(req.get("max_tokens") or 10_000)
        words = text.split()
        while _tokens(" ".join(words)) > max_tokens and len(words) > 1:
            words.pop()
        text = " ".join(words)
        prompt_tokens = sum(_tokens(str(m.get("content", ""))) + 4 for m in messages)
        completion_tokens = min(_tokens(text), max_tokens)
        with _lock:
            _served[model] = _served.get(model, 0) + 1
        self._send(
            200,
            {
                "id": f"chatcmpl-{time.time_ns()}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
        )


def main() -> None:
    port = int(sys.argv[1])
    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    srv.models = sys.argv[2:] or ["remote-model"]  # type: ignore[attr-defined]
    print(f"listening on {port}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
