"""Fake AppsFlyer Web S2S (PBA) endpoint: `POST /v1/{bundleId}/event` and `/v1/{bundleId}/setcuid`.

Rules follow destinations.md §3.1 (the API reference and the help-center article). Where AppsFlyer
does not document the order of its checks we pick: route, bundle id, size, JSON, webDevKey, body.
The fake measures sizes itself rather than importing the destination module, so it stays an
independent check of what the destination sends.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any

from relay_local.fakes.base import FakeServer, Request, Response

MAX_BODY_BYTES = 1024
MAX_EVENT_VALUE_CHARS = 1000
EVENT_OK_MESSAGE = "Customer user ID or AF user ID was set successfully for the specified bundle ID."


def _error(status: int, error: str, message: str) -> Response:
    return Response(status, {"error": error, "message": message, "status": status})


def _bad_request(error: str) -> Response:
    return _error(400, error, "Bad Request")


class FakeAppsflyer(FakeServer):
    name = "appsflyer"

    def __init__(
        self,
        bundle_id: str = "test-bundle",
        web_dev_key: str = "test-web-dev-key",
        port: int = 0,
        *,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        # Set before FakeServer.__init__, which builds the handler class that uses them.
        self._flight_lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0  # high-water mark of concurrent requests, for concurrency-bound tests
        super().__init__(port)
        self.bundle_id = bundle_id
        self.web_dev_key = web_dev_key
        # Documented as 1 KB. Raising it is the only way to reach the eventValue truncation rule: 1,000
        # characters of eventValue plus the mandatory fields never fit in 1,024 bytes.
        self.max_body_bytes = max_body_bytes
        self.events: list[dict[str, Any]] = []  # accepted /event bodies, in arrival order
        self.truncated: list[dict[str, Any]] = []  # accepted bodies whose eventValue AppsFlyer would truncate
        self.cuid_links: list[dict[str, Any]] = []  # accepted /setcuid bodies

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.events.clear()
            self.truncated.clear()
            self.cuid_links.clear()
        with self._flight_lock:
            self.max_in_flight = self.in_flight

    # -- rules ---------------------------------------------------------------------------------------
    def summarize(self, event: dict[str, Any]) -> dict[str, Any]:
        values = event.get("eventValue") or {}
        return {
            "event": event.get("eventName"),
            "id": values.get("af_order_id") if isinstance(values, dict) else None,
            "value": event.get("eventRevenue"),
            "currency": event.get("eventRevenueCurrency"),
        }

    def respond(self, request: Request) -> Response:
        parts = request.path.strip("/").split("/")
        if (
            request.method != "POST"
            or len(parts) != 3
            or parts[0] != "v1"
            or parts[2].lower()
            not in {
                "event",
                "setcuid",
            }
        ):
            return _error(404, f"no route for {request.method} {request.path}", "Not Found")
        if parts[1] != self.bundle_id:
            return _error(404, "bundle ID not found", "Not Found")
        if len(request.body) > self.max_body_bytes:
            return _bad_request(f"payload is {len(request.body)} bytes; the limit is {self.max_body_bytes}")
        try:
            body = request.json()
        except ValueError:
            return _bad_request("request body cannot be parsed as JSON")
        if not isinstance(body, dict):
            return _bad_request("request body must be a JSON object")
        if not body.get("webDevKey") or body["webDevKey"] != self.web_dev_key:
            return _error(401, "webDevKey is missing or invalid", "Unauthorized")
        if parts[2].lower() == "setcuid":
            return self._setcuid(body)
        return self._event(body)

    def _setcuid(self, body: dict[str, Any]) -> Response:
        if not _text(body.get("customerUserId")) or not _text(body.get("afUserId")):
            return _bad_request(
                "SetCUID event cannot be parsed without both user ids - customerUserId and afUserID"
            )
        with self._lock:
            self.cuid_links.append(body)
        return Response(200, {"status": "Success", "message": EVENT_OK_MESSAGE})

    def _event(self, body: dict[str, Any]) -> Response:
        if not _text(body.get("customerUserId")) and not _text(body.get("afUserId")):
            return _bad_request("event cannot be parsed without a user id - customerUserId or afUserId")
        if body.get("eventType") != "EVENT":
            return _bad_request("eventType must be EVENT")
        if not _text(body.get("eventName")):
            return _bad_request("eventName is required")
        if "timestamp" in body and (
            isinstance(body["timestamp"], bool) or not isinstance(body["timestamp"], int)
        ):
            return _bad_request("timestamp must be an integer (epoch milliseconds)")
        has_revenue, has_currency = "eventRevenue" in body, "eventRevenueCurrency" in body
        if has_revenue != has_currency:
            return _bad_request("eventRevenue and eventRevenueCurrency must be sent together")
        if has_revenue and (
            isinstance(body["eventRevenue"], bool) or not isinstance(body["eventRevenue"], int | float)
        ):
            return _bad_request("eventRevenue must be a number")
        event_value = body.get("eventValue")
        if event_value is not None and (
            not isinstance(event_value, dict) or not all(isinstance(v, str) for v in event_value.values())
        ):
            return _bad_request("eventValue must be a map of string values")
        with self._lock:
            self.events.append(body)
            if event_value is not None and len(_compact(event_value)) > MAX_EVENT_VALUE_CHARS:
                self.truncated.append(body)  # AppsFlyer accepts and truncates rather than refusing
        return Response(200, {"status": "OK", "message": EVENT_OK_MESSAGE})

    # -- concurrency high-water mark -----------------------------------------------------------------
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        return counting_handler(self, super()._handler_class())


def counting_handler(fake: Any, base: type[BaseHTTPRequestHandler]) -> type[BaseHTTPRequestHandler]:
    """`base` plus a high-water mark of concurrent requests in `fake.max_in_flight`."""

    class CountingHandler(base):  # type: ignore[valid-type, misc]
        # The window opens before the base class's latency sleep and closes just before the status
        # line is written: a client cannot see the answer (and start its next request) while this
        # request still counts, so the high-water mark never over-reports.
        _counted = False

        def _serve(self) -> None:
            with fake._flight_lock:
                fake.in_flight += 1
                fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
            self._counted = True
            try:
                super()._serve()
            finally:
                self._leave()

        def send_response(self, code: int, message: str | None = None) -> None:
            self._leave()
            super().send_response(code, message)

        def _leave(self) -> None:
            if self._counted:
                self._counted = False
                with fake._flight_lock:
                    fake.in_flight -= 1

        do_POST = _serve
        do_GET = _serve

    return CountingHandler


def _text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
