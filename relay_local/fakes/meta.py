"""A fake Meta Conversions API: POST /{version}/{pixel_id}/events with Meta's documented batch rules.

What it enforces, as Meta does, for the WHOLE request (one bad event rejects every event in it):
the access token (body or query), `data` holding 1..1,000 events, event_name / event_time /
action_source present, no event_time older than 7 days (code 100 / 2804003), Purchase with value and
currency (2804009), website events with event_source_url and client_user_agent, a non-empty user_data,
and every hashed user_data field (em, ph, fn, ln, ge, db, ct, st, zp, country, external_id) given as
64 lowercase hex characters (a string or a list of them). Accepted events land in `.events`.

Errors use the Graph envelope `{"error": {"message", "type", "code", "error_subcode",
"error_user_title", "error_user_msg", "fbtrace_id"}}` with HTTP 400, which is what Graph sends for
these codes. Physical-store events may be 62 days old. With `app_secret` set, every request must carry
the matching `appsecret_proof` (HMAC-SHA256 of the token), as an app with "Require App Secret" does.
Knobs: `throttle_next(n)` (code 17 or 80004 with X-Business-Use-Case-Usage), `auth_error_next(n)`
(code 190 / subcode 463, an expired token), `transient_next(n)` (code 2, is_transient, HTTP 500) and
the base `fail_next`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from relay_local.fakes.base import FakeServer, Request, Response

HASHED_FIELDS = ("em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country", "external_id")
ACTION_SOURCES = frozenset(
    {
        "email",
        "website",
        "app",
        "phone_call",
        "chat",
        "physical_store",
        "system_generated",
        "business_messaging",
        "other",
    }
)
MAX_EVENTS = 1000
MAX_AGE_SECONDS = 7 * 24 * 3600
MAX_PHYSICAL_STORE_AGE_SECONDS = 62 * 24 * 3600
_PATH = re.compile(r"^/(v\d+\.\d+)/(\d+)/events$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class _Invalid(Exception):
    """One event breaks a rule; carries the Graph error fields."""

    def __init__(self, title: str, message: str, subcode: int | None = None) -> None:
        super().__init__(title)
        self.title = title
        self.message = message
        self.subcode = subcode


class FakeMeta(FakeServer):
    name = "meta"

    def __init__(
        self,
        port: int = 0,
        *,
        access_token: str = "test-meta-token",
        pixel_id: str | None = None,
        clock: Callable[[], datetime] | None = None,
        app_secret: str | None = None,
    ) -> None:
        super().__init__(port)
        self.access_token = access_token
        self.app_secret = app_secret  # None: appsecret_proof not required
        self.pixel_id = pixel_id  # None: any numeric pixel id
        self.clock = clock or (lambda: datetime.now(UTC))
        self.events: list[dict[str, Any]] = []  # every accepted server event, in arrival order
        self.test_event_codes: list[str] = []  # test_event_code of each accepted request that had one
        self._throttles: list[tuple[int, int]] = []
        self._scripted: list[Response] = []

    # -- knobs ---------------------------------------------------------------------------------------
    def throttle_next(self, count: int = 1, *, code: int = 17, regain_minutes: int = 1) -> None:
        """Answer the next `count` requests with a rate-limit error (17 or 80004) and the usage header."""
        with self._lock:
            self._throttles.extend((code, regain_minutes) for _ in range(count))

    def auth_error_next(self, count: int = 1, *, code: int = 190, subcode: int | None = 463) -> None:
        """Answer the next `count` requests as Graph does for an expired (463) or invalid token."""
        message = "Error validating access token: Session has expired." if code == 190 else "Permission error"
        with self._lock:
            self._scripted.extend(_error(400, code, message, subcode=subcode) for _ in range(count))

    def transient_next(self, count: int = 1, *, code: int = 2) -> None:
        """Answer the next `count` requests with a temporary service error (is_transient true)."""
        response = _error(500, code, "An unexpected error has occurred. Please retry your request later.")
        response.body["error"]["is_transient"] = True
        with self._lock:
            self._scripted.extend(response for _ in range(count))

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.events.clear()
            self.test_event_codes.clear()
            self._throttles.clear()
            self._scripted.clear()

    # -- the API -------------------------------------------------------------------------------------
    def summarize(self, event: dict[str, Any]) -> dict[str, Any]:
        return summarize_server_event(event)

    def respond(self, request: Request) -> Response:
        match = _PATH.match(request.path)
        if request.method != "POST" or match is None:
            return _error(400, 2500, "Unknown path components", "GraphMethodException")
        if self.pixel_id is not None and match.group(2) != self.pixel_id:
            return _error(
                400,
                100,
                "Unsupported post request. Object does not exist.",
                "GraphMethodException",
                subcode=33,
            )
        throttle = self._next_throttle()
        if throttle is not None:
            return self._throttled(*throttle)
        with self._lock:
            scripted = self._scripted.pop(0) if self._scripted else None
        if scripted is not None:
            return scripted
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return _error(400, 100, "Invalid parameter", title="Invalid JSON", user_msg="Body is not JSON.")
        if not isinstance(body, dict):
            return _error(
                400, 100, "Invalid parameter", title="Invalid JSON", user_msg="Body is not an object."
            )
        token = body.get("access_token") or (request.query.get("access_token") or [None])[0]
        if not token:
            return _error(400, 104, "An access token is required to request this resource.")
        if token != self.access_token:
            return _error(400, 190, "Invalid OAuth access token - Cannot parse access token")
        if self.app_secret is not None:
            expected = hmac.new(self.app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()
            proof = body.get("appsecret_proof")
            if not proof:
                return _error(400, 100, "API calls from the server require an appsecret_proof argument")
            if not hmac.compare_digest(str(proof), expected):
                return _error(400, 100, "Invalid appsecret_proof provided in the API argument")
        data = body.get("data")
        if not isinstance(data, list) or not 1 <= len(data) <= MAX_EVENTS:
            return _error(
                400,
                100,
                "(#100) param data must be an array of 1 to 1000 events",
                title="Invalid data",
                user_msg=f"data must hold between 1 and {MAX_EVENTS} events.",
            )
        now = self.clock().timestamp()
        for index, event in enumerate(data):
            try:
                _check_event(event, now)
            except _Invalid as invalid:
                return _error(
                    400,
                    100,
                    "Invalid parameter",
                    subcode=invalid.subcode,
                    title=invalid.title,
                    user_msg=f"{invalid.message} (event {index} of {len(data)})",
                )
        with self._lock:
            self.events.extend(data)
            if body.get("test_event_code"):
                self.test_event_codes.append(str(body["test_event_code"]))
        return Response(200, {"events_received": len(data), "messages": [], "fbtrace_id": _trace_id()})

    def _next_throttle(self) -> tuple[int, int] | None:
        with self._lock:
            if not self._throttles:
                return None
            return self._throttles.pop(0)

    def _throttled(self, code: int, regain_minutes: int) -> Response:
        usage = {
            "1234567890": [
                {
                    "type": "ads_management",
                    "call_count": 100,
                    "total_cputime": 25,
                    "total_time": 25,
                    "estimated_time_to_regain_access": regain_minutes,
                }
            ]
        }
        subcode = 2446079 if code == 17 else None
        message = (
            "User request limit reached"
            if code == 17
            else "There have been too many calls to this ad-account."
        )
        response = _error(400, code, message, subcode=subcode)
        return Response(response.status, response.body, {"X-Business-Use-Case-Usage": json.dumps(usage)})


def _check_event(event: Any, now: float) -> None:
    if not isinstance(event, dict):
        raise _Invalid("Invalid event", "Each entry of data must be an object.")
    if not isinstance(event.get("event_name"), str) or not event["event_name"]:
        raise _Invalid("Missing Event Name", "The parameter event_name is required.")
    event_time = event.get("event_time")
    if isinstance(event_time, bool) or not isinstance(event_time, int):
        raise _Invalid("Invalid Event Time", "The parameter event_time must be a Unix timestamp in seconds.")
    max_age = (
        MAX_PHYSICAL_STORE_AGE_SECONDS if event.get("action_source") == "physical_store" else MAX_AGE_SECONDS
    )
    if now - event_time > max_age:
        raise _Invalid(
            "Event Timestamp Too Old",
            "The timestamp for this event is too far in the past. Events need to be sent from your server "
            "within 7 days of when they occurred.",
            subcode=2804003,
        )
    action_source = event.get("action_source")
    if action_source not in ACTION_SOURCES:
        raise _Invalid("Invalid Action Source", "action_source is missing or not a known value.")
    user_data = event.get("user_data")
    if not isinstance(user_data, dict) or not user_data:
        raise _Invalid("Missing User Data", "The parameter user_data needs at least one customer parameter.")
    if action_source == "website":
        if not event.get("event_source_url"):
            raise _Invalid("Missing Event Source URL", "Website events require event_source_url.")
        if not user_data.get("client_user_agent"):
            raise _Invalid("Missing User Agent", "Website events require client_user_agent.")
    for key in HASHED_FIELDS:
        if key not in user_data:
            continue
        values = user_data[key] if isinstance(user_data[key], list) else [user_data[key]]
        if not values or not all(isinstance(value, str) and _SHA256.match(value) for value in values):
            raise _Invalid(
                "Invalid Customer Information Parameter",
                f"The parameter user_data.{key} must be a SHA-256 hash (64 lowercase hex characters).",
            )
    if event["event_name"] == "Purchase":
        custom_data = event.get("custom_data")
        if (
            not isinstance(custom_data, dict)
            or not isinstance(custom_data.get("value"), int | float)
            or not custom_data.get("currency")
        ):
            raise _Invalid(
                "Missing Value for Purchase Event",
                "Purchase events require custom_data.value and custom_data.currency.",
                subcode=2804009,
            )


def _trace_id() -> str:
    return secrets.token_urlsafe(16)


def _error(
    status: int,
    code: int,
    message: str,
    error_type: str = "OAuthException",
    *,
    subcode: int | None = None,
    title: str | None = None,
    user_msg: str | None = None,
) -> Response:
    error: dict[str, Any] = {"message": message, "type": error_type, "code": code, "is_transient": False}
    if subcode is not None:
        error["error_subcode"] = subcode
    if title is not None:
        error["error_user_title"] = title
    if user_msg is not None:
        error["error_user_msg"] = user_msg
    error["fbtrace_id"] = _trace_id()
    return Response(status, {"error": error})


def summarize_server_event(event: dict[str, Any]) -> dict[str, Any]:
    """Name, id, value and currency of a Meta server event (no user data), for GET /_received."""
    custom = event.get("custom_data") or {}
    return {
        "event": event.get("event_name"),
        "id": event.get("event_id"),
        "value": custom.get("value"),
        "currency": custom.get("currency"),
    }
