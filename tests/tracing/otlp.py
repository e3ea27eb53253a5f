"""A real OTLP receiver for tests: HTTP (``/v1/traces``, protobuf) and gRPC, decoded with
``opentelemetry-proto`` into plain :class:`ReceivedSpan` records.

Jaeger cannot run on the test machines; this receiver speaks the same protocol Jaeger's
OTLP endpoints speak, so the exporters are tested end to end over real sockets.
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue


def any_value(v: AnyValue) -> Any:
    """The Python value of an OTLP ``AnyValue``."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return attributes(v.kvlist_value.values)
    return getattr(v, kind)


def attributes(kvs: Iterable[KeyValue]) -> dict[str, Any]:
    """OTLP key-values as a dict."""
    return {kv.key: any_value(kv.value) for kv in kvs}


@dataclass
class ReceivedEvent:
    name: str
    attributes: dict[str, Any]
    time_ns: int


@dataclass
class ReceivedLink:
    trace_id: str
    span_id: str
    attributes: dict[str, Any]


@dataclass
class ReceivedSpan:
    """One span as a receiver got it."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    attributes: dict[str, Any]
    events: list[ReceivedEvent]
    status_code: int
    status_message: str
    resource: dict[str, Any]
    start_ns: int
    end_ns: int
    links: list[ReceivedLink] = field(default_factory=list)

    @property
    def service(self) -> str:
        return str(self.resource.get("service.name", ""))

    def event(self, name: str) -> list[ReceivedEvent]:
        return [e for e in self.events if e.name == name]


@dataclass
class Receiver:
    """What arrived: decoded spans and the raw request bodies."""

    url: str = ""
    spans: list[ReceivedSpan] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ingest(self, body: bytes, headers: dict[str, str]) -> None:
        req = trace_service_pb2.ExportTraceServiceRequest()
        req.ParseFromString(body)
        out: list[ReceivedSpan] = []
        for rs in req.resource_spans:
            res = attributes(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    out.append(
                        ReceivedSpan(
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            name=s.name,
                            kind=s.kind,
                            attributes=attributes(s.attributes),
                            events=[
                                ReceivedEvent(e.name, attributes(e.attributes), e.time_unix_nano)
                                for e in s.events
                            ],
                            status_code=s.status.code,
                            status_message=s.status.message,
                            resource=res,
                            start_ns=s.start_time_unix_nano,
                            end_ns=s.end_time_unix_nano,
                            links=[
                                ReceivedLink(
                                    ln.trace_id.hex(), ln.span_id.hex(), attributes(ln.attributes)
                                )
                                for ln in s.links
                            ],
                        )
                    )
        with self.lock:
            self.bodies.append(body)
            self.headers.append(headers)
            self.spans.extend(out)

    def snapshot(self) -> list[ReceivedSpan]:
        with self.lock:
            return list(self.spans)

    def wait_for(
        self, predicate: Callable[[list[ReceivedSpan]], bool], timeout: float = 20.0
    ) -> list[ReceivedSpan]:
        """Poll until ``predicate(spans)`` holds; fail the test with what arrived otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.snapshot()
            if predicate(spans):
                return spans
            if time.monotonic() > deadline:
                names = sorted({f"{s.service}:{s.name}" for s in spans})
                raise AssertionError(f"spans never matched within {timeout}s; got {names}")
            time.sleep(0.05)

    def named(self, prefix: str) -> list[ReceivedSpan]:
        return [s for s in self.snapshot() if s.name.startswith(prefix)]


class _Handler(BaseHTTPRequestHandler):
    receiver: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        enc = (self.headers.get("Content-Encoding") or "").lower()
        if enc == "gzip":
            body = gzip.decompress(body)
        elif enc == "deflate":
            body = zlib.decompress(body)
        if self.path != "/v1/traces":
            self.send_response(404)
            self.end_headers()
            return
        self.receiver.ingest(body, {k.lower(): v for k, v in self.headers.items()})
        out = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, format: str, *args: Any) -> None:
        return None


class HttpReceiver(Receiver):
    """OTLP/HTTP (protobuf) on 127.0.0.1, a free port; ``url`` is the traces endpoint."""

    def start(self) -> HttpReceiver:
        handler = type("Handler", (_Handler,), {"receiver": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_port}"
        self.url = self.base_url + "/v1/traces"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class GrpcReceiver(Receiver):
    """OTLP/gRPC on 127.0.0.1, a free port; ``url`` is ``http://127.0.0.1:PORT``."""

    def start(self) -> GrpcReceiver:
        import grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

        receiver = self

        class Servicer(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
            def Export(self, request: Any, context: Any) -> Any:
                md = {k: v for k, v in context.invocation_metadata()}
                receiver.ingest(request.SerializeToString(), md)
                return trace_service_pb2.ExportTraceServiceResponse()

        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Servicer(), self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        self._server.stop(grace=None)
