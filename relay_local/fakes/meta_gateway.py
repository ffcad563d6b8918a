"""A fake Meta Conversions API Gateway (CAPIG) ingress: POST /capi/{pixel_id}/events.

The body is what the Business SDK's CAPIGatewayIngressRequest sends, `{"accessKey": "...", "data": [...]}`,
and success is HTTP 202 with no per-event result (the SDK treats anything else as a failure). It
checks the access key (401 otherwise), that `data` holds 1..1,000 events with event_name, event_time,
action_source and a non-empty user_data (400 otherwise), and that hashed user_data fields are
64 lowercase hex. Accepted events land in `.events` and their pixel ids in `.pixel_ids`.
Errors and timeouts come from the base `fail_next(n, status, body, delay_seconds)`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from relay_local.fakes.base import FakeServer, Request, Response
from relay_local.fakes.meta import HASHED_FIELDS, MAX_EVENTS, summarize_server_event

_PATH = re.compile(r"^/capi/(\d+)/events$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class FakeMetaGateway(FakeServer):
    name = "meta_gateway"

    def __init__(self, port: int = 0, *, access_key: str = "test-capig-access-key") -> None:
        super().__init__(port)
        self.access_key = access_key
        self.events: list[dict[str, Any]] = []
        self.pixel_ids: list[str] = []  # one per accepted request

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.events.clear()
            self.pixel_ids.clear()

    def summarize(self, event: dict[str, Any]) -> dict[str, Any]:
        return summarize_server_event(event)

    def respond(self, request: Request) -> Response:
        match = _PATH.match(request.path)
        if request.method != "POST" or match is None:
            return Response(404, {"error": "not found"})
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return Response(400, {"error": "body is not JSON"})
        if not isinstance(body, dict):
            return Response(400, {"error": "body is not an object"})
        if body.get("accessKey") != self.access_key:
            return Response(401, {"error": "invalid access key"})
        data = body.get("data")
        if not isinstance(data, list) or not 1 <= len(data) <= MAX_EVENTS:
            return Response(400, {"error": f"data must hold 1 to {MAX_EVENTS} events"})
        for index, event in enumerate(data):
            problem = _problem(event)
            if problem:
                return Response(400, {"error": f"event {index}: {problem}"})
        with self._lock:
            self.events.extend(data)
            self.pixel_ids.append(match.group(1))
        return Response(202, None)


def _problem(event: Any) -> str | None:
    if not isinstance(event, dict):
        return "not an object"
    for key in ("event_name", "event_time", "action_source"):
        if key not in event:
            return f"{key} is required"
    user_data = event.get("user_data")
    if not isinstance(user_data, dict) or not user_data:
        return "user_data needs at least one customer parameter"
    for key in HASHED_FIELDS:
        if key in user_data:
            values = user_data[key] if isinstance(user_data[key], list) else [user_data[key]]
            if not all(isinstance(value, str) and _SHA256.match(value) for value in values):
                return f"user_data.{key} must be SHA-256 hex"
    return None
