"""A tiny OpenAI-compatible chat server for tests: fixed answer, fixed usage, records requests."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakeLLM:
    answer: str = "refund approved"
    prompt_tokens: int = 21
    completion_tokens: int = 4
    status: int = 200
    requests: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)

    def start(self) -> FakeLLM:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                fake.requests.append(
                    (self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                if fake.status != 200:
                    out = json.dumps(
                        {"error": {"message": "invalid api key", "type": "auth"}}
                    ).encode()
                else:
                    out = json.dumps(
                        {
                            "id": "chatcmpl-1",
                            "object": "chat.completion",
                            "created": 1,
                            "model": body.get("model", "tiny"),
                            "choices": [
                                {
                                    "index": 0,
                                    "message": {"role": "assistant", "content": fake.answer},
                                    "finish_reason": "stop",
                                }
                            ],
                            "usage": {
                                "prompt_tokens": fake.prompt_tokens,
                                "completion_tokens": fake.completion_tokens,
                                "total_tokens": fake.prompt_tokens + fake.completion_tokens,
                            },
                        }
                    ).encode()
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_port}/v1"
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
