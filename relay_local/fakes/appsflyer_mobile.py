"""Fake AppsFlyer mobile S2S endpoint: `POST /inappevent/{app_id}` with the `authentication` header.

Rules and answers follow destinations.md §3.2 (AppsFlyer's api3 reference): plain-text bodies, 200 "OK"
even when little was validated, and the one trap the destination must avoid: an iOS app id sent without
its `id` prefix is answered 200 "OK" and recorded nowhere (kept in `.unrecorded` so tests can see it).
Where AppsFlyer does not document the order of its checks we pick: route, app id, authentication, size,
JSON, body. Like the Web S2S fake it measures sizes itself, independently of the destination module.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

from relay_local.fakes.appsflyer import counting_handler
from relay_local.fakes.base import FakeServer, Request, Response

MAX_BODY_BYTES = 1024
APPSFLYER_ID = re.compile(r"\d{13}-(\d{19}|\d{7})")
EVENT_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
_EVENT_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}")

OK = Response(200, "OK")
FAILED_TO_AUTHENTICATE = Response(400, "Failed to Authenticate")
MANDATORY_ID = Response(400, "appsflyer_id is a mandatory field")
BAD_REQUEST = Response(400, "Bad request")
UNPARSABLE = Response(400, "Payload is missing or failed to parse")
UNAUTHORIZED = Response(401, "Unauthorized")
FORBIDDEN = Response(403, "Forbidden")
# The reference's advice for a 500: "Verify that the JSON is stringified() and formatted correctly".
NOT_STRINGIFIED = Response(500, "Internal Server Error")


class FakeAppsflyerMobile(FakeServer):
    name = "appsflyer_mobile"

    def __init__(
        self,
        app_id: str = "com.example.shop",
        s2s_key: str = "test-s2s-key",
        port: int = 0,
        *,
        zero_package: bool = False,
    ) -> None:
        self._flight_lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        super().__init__(port)
        self.app_id = app_id
        self.s2s_key = s2s_key
        self.zero_package = zero_package  # "Zero Package" apps answer 403 to attribution events
        self.events: list[dict[str, Any]] = []  # accepted and recorded bodies, in arrival order
        self.unrecorded: list[dict[str, Any]] = []  # answered 200 but recorded nowhere (bare iOS app id)

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.events.clear()
            self.unrecorded.clear()
        with self._flight_lock:
            self.max_in_flight = self.in_flight

    def summarize(self, event: dict[str, Any]) -> dict[str, Any]:
        try:
            values = json.loads(event.get("eventValue") or "{}")
        except ValueError:
            values = {}
        return {
            "event": event.get("eventName"),
            "id": values.get("af_order_id"),
            "value": values.get("af_revenue"),
            "currency": event.get("eventCurrency"),
        }

    # -- rules ---------------------------------------------------------------------------------------
    def respond(self, request: Request) -> Response:
        parts = request.path.strip("/").split("/")
        if request.method != "POST" or len(parts) != 2 or parts[0] != "inappevent":
            return Response(404, "Not Found")
        silently_dropped = self.app_id.startswith("id") and parts[1] == self.app_id[2:]
        if parts[1] != self.app_id and not silently_dropped:
            return BAD_REQUEST  # the reference lists an app_id mismatch among the 400 causes
        key = request.headers.get("authentication")
        if not key:
            return FAILED_TO_AUTHENTICATE
        if key != self.s2s_key:
            return UNAUTHORIZED
        if self.zero_package:
            return FORBIDDEN
        if len(request.body) > MAX_BODY_BYTES:
            return BAD_REQUEST
        try:
            body = request.json()
        except ValueError:
            return UNPARSABLE
        if not isinstance(body, dict):
            return UNPARSABLE
        problem = _check(body)
        if problem is not None:
            return problem
        with self._lock:
            (self.unrecorded if silently_dropped else self.events).append(body)
        return OK

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        return counting_handler(self, super()._handler_class())


def _check(body: dict[str, Any]) -> Response | None:
    appsflyer_id = body.get("appsflyer_id")
    if not appsflyer_id:
        return MANDATORY_ID
    if not isinstance(appsflyer_id, str) or not APPSFLYER_ID.fullmatch(appsflyer_id):
        return BAD_REQUEST
    if not isinstance(body.get("eventName"), str) or not body["eventName"]:
        return BAD_REQUEST
    if "eventValue" not in body:
        return BAD_REQUEST
    event_value = body["eventValue"]
    if not isinstance(event_value, str):
        return NOT_STRINGIFIED
    if event_value:
        try:
            decoded = json.loads(event_value)
        except ValueError:
            return NOT_STRINGIFIED
        if not isinstance(decoded, dict):
            return NOT_STRINGIFIED
        if "af_revenue" in decoded and not _is_number(decoded["af_revenue"]):
            return BAD_REQUEST
        if "af_revenue" in decoded and not body.get("eventCurrency"):
            return BAD_REQUEST
    if "eventTime" in body and not _valid_event_time(body["eventTime"]):
        return BAD_REQUEST
    if "eventCurrency" in body and not (
        isinstance(body["eventCurrency"], str) and re.fullmatch(r"[A-Z]{3}", body["eventCurrency"])
    ):
        return BAD_REQUEST
    if "att" in body and (isinstance(body["att"], bool) or body["att"] not in (0, 1, 2, 3)):
        return BAD_REQUEST
    if "os" in body and not isinstance(body["os"], str):
        return BAD_REQUEST
    return None


def _valid_event_time(value: Any) -> bool:
    if not isinstance(value, str) or not _EVENT_TIME.fullmatch(value):
        return False
    try:
        datetime.strptime(value, EVENT_TIME_FORMAT)
    except ValueError:
        return False
    return True


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    return isinstance(value, str) and re.fullmatch(r"-?\d+(\.\d+)?", value) is not None
