"""A small threaded HTTP server on 127.0.0.1 that fake destinations build on.

Each fake implements `respond(request)` with the real API's documented rules, records every
request it received (what `make local` shows and what tests assert), and can be told to
misbehave: answer a status for the next N requests, or add latency.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Response:
    status: int
    body: Any = None  # dict/list -> JSON; str -> text; None -> empty
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> tuple[bytes, str]:
        if self.body is None:
            return b"", "text/plain"
        if isinstance(self.body, str):
            return self.body.encode(), "text/plain; charset=utf-8"
        return json.dumps(self.body).encode(), "application/json"


@dataclass(frozen=True)
class Fault:
    """What the next matching requests get instead of the real answer."""

    status: int | None = None  # None: no HTTP answer at all (connection dropped)
    body: Any = None
    delay_seconds: float = 0.0
    # False: the request never reaches the API (a proxy's 5xx, a refused or dropped connection).
    # True: the API handles it (records and accepts it), then the answer is lost: after delay_seconds
    # the fake sends `status` or, when None, drops the connection. With a delay beyond the client's
    # read timeout this is the ambiguous timeout that can double-count at a destination without dedup.
    processed: bool = False


FaultPlan = Callable[[Request], Fault | None]


RECEIVED_PATH = "/_received"


class FakeServer:
    """Subclasses keep `self.events` (what they accepted) and implement `respond` and `summarize`."""

    name = "fake"

    def __init__(self, port: int = 0) -> None:
        self._lock = threading.Lock()
        self._faults: deque[Fault] = deque()
        self.latency_seconds = 0.0
        # Consulted for each request once the fail_next queue is empty (e.g. random faults in `make chaos`).
        self.fault_plan: FaultPlan | None = None
        self.received: list[Request] = []  # every request, including faulted ones
        self.accepted: list[Request] = []  # requests the fake accepted (a processed fault's too)
        self.faulted: list[tuple[Request, Fault]] = []  # every request that met a fault, with the fault
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- control -------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail_next(self, count: int, status: int | None, body: Any = None, delay_seconds: float = 0.0) -> None:
        with self._lock:
            self._faults.extend(Fault(status, body, delay_seconds) for _ in range(count))

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self.received.clear()
            self.accepted.clear()
            self.faulted.clear()
            self.latency_seconds = 0.0
            self.fault_plan = None

    def summary(self) -> list[dict[str, Any]]:
        """What the fake accepted, one PII-free line per event (served at GET /_received)."""
        with self._lock:
            events = list(getattr(self, "events", []))
        return [self.summarize(event) for event in events]

    # -- to implement --------------------------------------------------------------------------------
    def respond(self, request: Request) -> Response:
        raise NotImplementedError

    def summarize(self, event: dict[str, Any]) -> dict[str, Any]:
        """Event name, id, value and currency of one accepted event; never user data or credentials."""
        raise NotImplementedError

    # -- plumbing ------------------------------------------------------------------------------------
    def _next_fault(self, request: Request) -> Fault | None:
        with self._lock:
            if self._faults:
                return self._faults.popleft()
            plan = self.fault_plan
        return plan(request) if plan is not None else None

    def _respond_safely(self, request: Request) -> Response:
        try:
            return self.respond(request)
        except Exception as error:  # a bug in a fake must show, not hang the client
            return Response(500, {"fake_error": repr(error)})

    def _record(self, request: Request, response: Response | None) -> None:
        with self._lock:
            self.received.append(request)
            if response is not None and 200 <= response.status < 300:
                self.accepted.append(request)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return  # keep test and `make local` output clean; fakes show what they got elsewhere

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                if self.command == "GET" and parts.path == RECEIVED_PATH:
                    # Inspection, not traffic: answered before faults and never recorded.
                    events = fake.summary()
                    self._write(
                        Response(200, {"destination": fake.name, "count": len(events), "events": events})
                    )
                    return
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                if fake.latency_seconds:
                    time.sleep(fake.latency_seconds)
                fault = fake._next_fault(request)
                if fault is not None:
                    with fake._lock:
                        fake.faulted.append((request, fault))
                    if fault.processed:
                        fake._record(request, fake._respond_safely(request))
                    if fault.delay_seconds:
                        time.sleep(fault.delay_seconds)
                    if fault.status is None:
                        if not fault.processed:
                            fake._record(request, None)
                        self.close_connection = True
                        self.connection.close()
                        return
                    response = Response(fault.status, fault.body)
                    if fault.processed:
                        self._write_late(response)
                        return
                else:
                    response = fake._respond_safely(request)
                fake._record(request, response)
                self._write(response)

            def _write_late(self, response: Response) -> None:
                # The client may have given up (read timeout) and closed the connection meanwhile.
                try:
                    self._write(response)
                except OSError:
                    self.close_connection = True

            def _write(self, response: Response) -> None:
                payload, content_type = response.encode()
                self.send_response(response.status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_POST = _serve
            do_GET = _serve

        return Handler
