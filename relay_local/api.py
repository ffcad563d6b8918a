"""A local stand-in for the HTTP API: each request becomes an API Gateway HTTP API payload v2 event.

The ingest handler runs in-process (through the one-at-a-time LambdaInvoker) and its answer
(statusCode, headers, cookies, body, isBase64Encoded) is written back. Requests that match no
template route still reach the handler with routeKey "$default", so the handler's own 404 answers
them. `GET /health` is answered here: 200 once the whole stack is up, 503 before; so are the
`local_routes` the stack adds (GET /_local/...: what the fakes accepted, what is in the DLQs).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from relay_local.lambda_context import Handler, LambdaInvoker
from relay_local.template_settings import LOCAL_ACCOUNT_ID, FunctionSettings, Route

log = logging.getLogger("relay_local")

HEALTH_PATH = "/health"
# API Gateway's own payload limit: larger requests never reach the function.
API_GATEWAY_MAX_BODY_BYTES = 10 * 1024 * 1024
API_ID = "local"


class LocalHttpApi:
    def __init__(
        self,
        function: FunctionSettings,
        handler: Handler,
        routes: Sequence[Route],
        invoker: LambdaInvoker,
        *,
        port: int = 0,
        is_ready: Callable[[], bool] = lambda: True,
        local_routes: Mapping[str, Callable[[], Any]] | None = None,
    ) -> None:
        """`local_routes`: GET path -> callable returning JSON, served here (not by the handler)."""
        self.function = function
        self.handler = handler
        self.routes = tuple(routes)
        self._invoker = invoker
        self._is_ready = is_ready
        self.local_routes = dict(local_routes or {})
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-http-api", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)

    # -- event building ---------------------------------------------------------------------------------
    def build_event(
        self, method: str, target: str, headers: Sequence[tuple[str, str]], body: bytes, source_ip: str
    ) -> dict[str, Any]:
        parts = urlsplit(target)
        path = parts.path or "/"
        merged: dict[str, str] = {}
        cookies: list[str] = []
        for name, value in headers:
            lowered = name.lower()
            if lowered == "cookie":
                cookies.extend(c.strip() for c in value.split(";") if c.strip())
                continue
            # API Gateway v2 joins repeated headers with commas.
            merged[lowered] = f"{merged[lowered]},{value}" if lowered in merged else value
        route, path_parameters = self._route(method, path)
        now = datetime.now(UTC)
        request_id = str(uuid.uuid4())
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": route.route_key if route else "$default",
            "rawPath": path,
            "rawQueryString": parts.query,
            "headers": merged,
            "requestContext": {
                "accountId": LOCAL_ACCOUNT_ID,
                "apiId": API_ID,
                "domainName": merged.get("host", "127.0.0.1"),
                "domainPrefix": merged.get("host", "127.0.0.1").split(".")[0],
                "http": {
                    "method": method,
                    "path": path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": source_ip,
                    "userAgent": merged.get("user-agent", ""),
                },
                "requestId": request_id,
                "routeKey": route.route_key if route else "$default",
                "stage": "$default",
                "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "timeEpoch": int(now.timestamp() * 1000),
            },
            "isBase64Encoded": False,
        }
        if cookies:
            event["cookies"] = cookies
        if parts.query:
            query: dict[str, str] = {}
            for key, value in parse_qsl(parts.query, keep_blank_values=True):
                query[key] = f"{query[key]},{value}" if key in query else value
            event["queryStringParameters"] = query
        if path_parameters:
            event["pathParameters"] = path_parameters
        if body:
            try:
                event["body"] = body.decode("utf-8")
            except UnicodeDecodeError:
                event["body"] = base64.b64encode(body).decode("ascii")
                event["isBase64Encoded"] = True
        return event

    def _route(self, method: str, path: str) -> tuple[Route | None, dict[str, str]]:
        for route in self.routes:
            parameters = route.match(method, path)
            if parameters is not None:
                return route, parameters
        return None, {}

    # -- HTTP plumbing ----------------------------------------------------------------------------------
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "conversion-relay-local"

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("%s %s", self.address_string(), format % args)

            def _reply(
                self, status: int, body: bytes, headers: dict[str, str], cookies: Sequence[str] = ()
            ) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(name, value)
                for cookie in cookies:
                    self.send_header("Set-Cookie", cookie)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                self._reply(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > API_GATEWAY_MAX_BODY_BYTES:
                    self.close_connection = True
                    self._json(413, {"message": "Request Entity Too Large"})
                    return
                body = self.rfile.read(length) if length else b""
                if self.command == "GET" and urlsplit(self.path).path == HEALTH_PATH:
                    if api._is_ready():
                        self._json(200, {"status": "ok"})
                    else:
                        self._json(503, {"status": "starting"})
                    return
                local = api.local_routes.get(urlsplit(self.path).path) if self.command == "GET" else None
                if local is not None:
                    try:
                        self._json(200, local())
                    except Exception as error:
                        log.exception("local route %s failed", self.path)
                        self._json(500, {"error": error.__class__.__name__})
                    return
                event = api.build_event(
                    self.command, self.path, list(self.headers.items()), body, self.client_address[0]
                )
                started = time.monotonic()
                try:
                    result = api._invoker.invoke(api.function, api.handler, event)
                except Exception:
                    # API Gateway answers 500 {"message": "Internal Server Error"} when the function fails.
                    log.exception("%s raised", api.function.logical_id)
                    self._json(500, {"message": "Internal Server Error"})
                    return
                status, headers, cookies, payload = _http_answer(result)
                log.debug(
                    "%s %s -> %d in %.0f ms",
                    self.command,
                    self.path,
                    status,
                    (time.monotonic() - started) * 1000,
                )
                self._reply(status, payload, headers, cookies)

            do_GET = _serve
            do_POST = _serve
            do_PUT = _serve
            do_PATCH = _serve
            do_DELETE = _serve
            do_HEAD = _serve
            do_OPTIONS = _serve

        return Handler


def _http_answer(result: Any) -> tuple[int, dict[str, str], list[str], bytes]:
    """Turn a v2 handler result into (status, headers, cookies, body), as API Gateway does."""
    if not isinstance(result, dict) or "statusCode" not in result:
        # Payload v2: a result without statusCode is taken as a JSON body with status 200.
        return 200, {"Content-Type": "application/json"}, [], json.dumps(result).encode()
    headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers[str(name)] = ",".join(str(v) for v in values)
    body = result.get("body") or ""
    if result.get("isBase64Encoded"):
        payload = base64.b64decode(body)
    else:
        payload = body.encode("utf-8") if isinstance(body, str) else json.dumps(body).encode()
    return int(result["statusCode"]), headers, list(result.get("cookies") or []), payload
