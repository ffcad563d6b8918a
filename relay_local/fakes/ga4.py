"""A fake GA4 Measurement Protocol endpoint that answers like Google and judges like its validation server.

`/mp/collect` answers 204 to anything, as Google does even for what it then silently drops. So the
fake also runs the validation-server rules on every request and records the messages Google's
`/debug/mp/collect` would have given: tests assert that what we send draws none.

The rules here are written out independently of conversion_relay.destinations.ga4 on purpose (a
second opinion, re-read from Google's docs): do not import the destination's validation or its rules file.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from relay_local.fakes.base import FakeServer, Request, Response

DEFAULT_MEASUREMENT_ID = "G-FAKE000001"
DEFAULT_API_SECRET = "fake-ga4-api-secret"

# Google's "Limitations" and "Reserved names" for the Measurement Protocol (GA4, standard property).
MAX_EVENTS = 25
MAX_PARAMS = 25
MAX_NAME = 40
MAX_VALUE = 100
MAX_VALUE_360 = 500  # GA4 360 properties
MAX_ITEM_CUSTOM_PARAMS = 10
MAX_USER_PROPERTIES = 25
MAX_USER_PROPERTY_NAME = 24
MAX_USER_PROPERTY_VALUE = 36
MAX_BODY_BYTES = 130_000  # "smaller than 130kB"; the decimal reading is the stricter one
MAX_USER_ID = 256
BACKDATE_LIMIT = timedelta(hours=72)
FUTURE_SLACK = timedelta(seconds=60)
CLIENT_ID = re.compile(r"[0-9]+\.[0-9]+")
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
RESERVED_EVENTS = frozenset(
    [
        "ad_activeview",
        "ad_click",
        "ad_exposure",
        "ad_query",
        "ad_reward",
        "adunit_exposure",
        "app_clear_data",
        "app_exception",
        "app_install",
        "app_remove",
        "app_store_refund",
        "app_update",
        "app_upgrade",
        "dynamic_link_app_open",
        "dynamic_link_app_update",
        "dynamic_link_first_open",
        "error",
        "firebase_campaign",
        "firebase_in_app_message_action",
        "firebase_in_app_message_dismiss",
        "firebase_in_app_message_impression",
        "first_open",
        "first_visit",
        "notification_dismiss",
        "notification_foreground",
        "notification_open",
        "notification_receive",
        "notification_send",
        "os_update",
        "session_start",
        "user_engagement",
    ]
)
APP_ONLY_EVENTS = frozenset({"ad_impression", "in_app_purchase", "screen_view"})
# Tag-side reserved names (support answer 13316687), stricter than the MP list on purpose: a server event
# under these names would be mixed up with Google's own app-store subscription events.
RESERVED_EVENT_PREFIXES = ("app_store_subscription_",)
RESERVED_PARAMS = frozenset({"firebase_conversion"})
RESERVED_PARAM_PREFIXES = ("_", "firebase_", "ga_", "google_", "gtag.")
RESERVED_USER_PROPERTIES = frozenset(
    {"first_open_time", "first_visit_time", "last_deep_link_referrer", "user_id", "first_open_after_install"}
)
RESERVED_USER_PROPERTY_PREFIXES = ("_", "firebase_", "ga_", "google_")
NEEDS_TRANSACTION_ID = frozenset({"purchase", "refund"})
STANDARD_ITEM_PARAMS = frozenset(
    [
        "item_id",
        "item_name",
        "affiliation",
        "coupon",
        "discount",
        "index",
        "item_brand",
        "item_category",
        "item_category2",
        "item_category3",
        "item_category4",
        "item_category5",
        "item_list_id",
        "item_list_name",
        "item_variant",
        "location_id",
        "price",
        "quantity",
    ]
)
TOP_LEVEL_KEYS = frozenset(
    [
        "client_id",
        "app_instance_id",
        "user_id",
        "timestamp_micros",
        "user_properties",
        "user_data",
        "consent",
        "non_personalized_ads",
        "user_location",
        "ip_override",
        "device",
        "user_agent",
        "validation_behavior",
        "events",
    ]
)
EVENT_KEYS = frozenset({"name", "params", "timestamp_micros"})
USER_DATA_LIMITS = {"sha256_email_address": 3, "sha256_phone_number": 3, "address": 2}
ADDRESS_KEYS = frozenset(
    ["sha256_first_name", "sha256_last_name", "sha256_street", "city", "region", "postal_code", "country"]
)
LOCATION_PATTERNS = {
    "city": re.compile(r".+", re.DOTALL),
    "region_id": re.compile(r"[A-Z]{2}-[A-Z0-9]{1,3}"),
    "country_id": re.compile(r"[A-Z]{2}"),
    "subcontinent_id": re.compile(r"[0-9]{3}"),
    "continent_id": re.compile(r"[0-9]{3}"),
}
DEVICE_KEYS = frozenset(
    [
        "category",
        "language",
        "screen_resolution",
        "operating_system",
        "operating_system_version",
        "model",
        "brand",
        "browser",
        "browser_version",
    ]
)
DEVICE_CATEGORIES = frozenset({"desktop", "tablet", "mobile", "smart TV"})
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
CONSENT_VALUES = frozenset({"GRANTED", "DENIED"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class Ga4Request:
    """What one POST carried and what Google's validation server would have said about it."""

    path: str
    debug: bool
    measurement_id: str | None
    body: Any  # parsed JSON, None when it was not JSON
    validation_messages: list[dict[str, str]] = field(default_factory=list)


class _Messages:
    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, path: str, code: str, description: str) -> None:
        self.items.append({"fieldPath": path, "description": description, "validationCode": code})


class FakeGa4(FakeServer):
    name = "ga4"

    def __init__(
        self,
        port: int = 0,
        *,
        credentials: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] | None = None,
        max_value_length: int = MAX_VALUE,
    ) -> None:
        """max_value_length: 100 for a standard property, 500 (MAX_VALUE_360) for GA4 360."""
        super().__init__(port)
        self.max_value_length = max_value_length
        # measurement_id -> api_secret pairs this "property" knows.
        self.credentials = dict(credentials or {DEFAULT_MEASUREMENT_ID: DEFAULT_API_SECRET})
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.requests: list[Ga4Request] = []
        self.events: list[dict[str, Any]] = []  # events Google would have recorded, each with its client_id

    @classmethod
    def from_secret(cls, secret: Mapping[str, Any], port: int = 0, **kwargs: Any) -> FakeGa4:
        """A fake knowing every stream of a GA4 secret: the single-stream or the multi-stream shape."""
        streams = secret.get("streams")
        if isinstance(streams, list):
            credentials = {
                str(s["measurement_id"]): str(s["api_secret"]) for s in streams if isinstance(s, dict)
            }
        else:
            credentials = {str(secret["measurement_id"]): str(secret["api_secret"])}
        return cls(port, credentials=credentials, **kwargs)

    @property
    def validation_messages(self) -> list[dict[str, str]]:
        """Every message over every request, for `assert fake.validation_messages == []`."""
        with self._lock:
            return [message for request in self.requests for message in request.validation_messages]

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.requests.clear()
            self.events.clear()

    def summarize(self, event: dict[str, Any]) -> dict[str, Any]:
        params = event.get("params") or {}
        return {
            "event": event.get("name"),
            "id": params.get("transaction_id"),
            "value": params.get("value"),
            "currency": params.get("currency"),
        }

    def respond(self, request: Request) -> Response:
        if request.method != "POST":
            return Response(405, "POST only")
        if request.path not in ("/mp/collect", "/debug/mp/collect"):
            return Response(404, "not found")
        debug = request.path == "/debug/mp/collect"
        messages = _Messages()
        measurement_id = _first(request.query, "measurement_id")
        if not debug:
            # Google's validation server skips these, but production drops the hit when they are wrong.
            self._check_credentials(request, measurement_id, messages)
        body = validate(request.body, self.clock(), messages, max_value_length=self.max_value_length)
        recorded = Ga4Request(request.path, debug, measurement_id, body, messages.items)
        with self._lock:
            self.requests.append(recorded)
            if not debug and not messages.items:
                self.events.extend(_flatten(body, measurement_id))
        if debug:
            return Response(200, {"validationMessages": messages.items})
        return Response(204)

    def _check_credentials(self, request: Request, measurement_id: str | None, messages: _Messages) -> None:
        api_secret = _first(request.query, "api_secret")
        if not measurement_id:
            messages.add("measurement_id", "VALUE_REQUIRED", "query parameter measurement_id is missing")
        elif measurement_id not in self.credentials:
            messages.add(
                "measurement_id", "VALUE_INVALID", "unknown measurement_id: the hit would be dropped"
            )
        if not api_secret:
            messages.add("api_secret", "VALUE_REQUIRED", "query parameter api_secret is missing")
        elif measurement_id in self.credentials and self.credentials[measurement_id] != api_secret:
            messages.add(
                "api_secret",
                "VALUE_INVALID",
                "api_secret does not match the stream: the hit would be dropped",
            )


def _first(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[0] if values else None


def _flatten(body: dict[str, Any], measurement_id: str | None) -> list[dict[str, Any]]:
    shared_time = body.get("timestamp_micros")
    return [
        {
            "measurement_id": measurement_id,
            "client_id": body.get("client_id"),
            "user_id": body.get("user_id"),
            "consent": body.get("consent"),
            "user_properties": body.get("user_properties"),
            "has_user_data": "user_data" in body,
            "name": event.get("name"),
            "params": event.get("params", {}),
            "timestamp_micros": event.get("timestamp_micros", shared_time),
        }
        for event in body.get("events", [])
    ]


# -- the validation server's rules ---------------------------------------------------------------------
def validate(
    raw: bytes, now: datetime, messages: _Messages | None = None, *, max_value_length: int = MAX_VALUE
) -> Any:
    """Parse a request body and add every rule it breaks to `messages`; returns the parsed body (or None)."""
    out = messages if messages is not None else _Messages()
    if len(raw) >= MAX_BODY_BYTES:
        out.add(
            "", "VALUE_OUT_OF_BOUNDS", f"Request body is {len(raw)} bytes; it must be under {MAX_BODY_BYTES}."
        )
    duplicates: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in items:
            if key in seen:
                duplicates.append(key)
            seen[key] = value
        return seen

    def non_finite(constant: str) -> float:
        # Python's json accepts NaN and Infinity; JSON (and Google) does not.
        out.add("", "VALUE_INVALID", f"[{constant}] is not a JSON number.")
        return math.nan

    try:
        body = json.loads(raw, object_pairs_hook=pairs, parse_constant=non_finite)
    except (ValueError, UnicodeDecodeError):
        out.add("", "VALUE_INVALID", "Unable to parse the request body as JSON.")
        return None
    for key in duplicates:
        out.add(key, "NAME_DUPLICATED", f"Field [{key}] appears more than once.")
    if not isinstance(body, dict):
        out.add("", "VALUE_INVALID", "The request body must be a JSON object.")
        return None
    for key in body:
        if key not in TOP_LEVEL_KEYS:
            out.add(key, "VALUE_INVALID", f"Unknown field [{key}].")
    _client(body, out)
    if "user_id" in body and (not isinstance(body["user_id"], str) or not body["user_id"]):
        out.add("user_id", "VALUE_INVALID", "user_id must be a non-empty string.")
    elif isinstance(body.get("user_id"), str) and len(body["user_id"]) > MAX_USER_ID:
        out.add("user_id", "VALUE_OUT_OF_BOUNDS", f"user_id is over {MAX_USER_ID} characters.")
    if "user_data" in body:
        _user_data(body["user_data"], out)
        if not body.get("user_id"):
            out.add("user_id", "VALUE_REQUIRED", "user_id is required when user_data is sent.")
    _location(body.get("user_location"), out)
    if "ip_override" in body and not _is_ip(body["ip_override"]):
        out.add("ip_override", "VALUE_INVALID", "ip_override must be an IP address.")
    _device(body.get("device"), out)
    if "user_agent" in body and not isinstance(body["user_agent"], str):
        out.add("user_agent", "VALUE_INVALID", "user_agent must be a string.")
    if body.get("validation_behavior", "RELAXED") not in ("RELAXED", "ENFORCE_RECOMMENDATIONS"):
        out.add("validation_behavior", "VALUE_INVALID", "Unknown validation_behavior.")
    if "timestamp_micros" in body:
        _time("timestamp_micros", body["timestamp_micros"], now, out)
    _consent(body.get("consent"), out)
    _user_properties(body.get("user_properties"), out)
    events = body.get("events")
    if events is None:
        if "user_data" not in body:
            out.add("events", "VALUE_REQUIRED", "At least one event is required.")
    elif not isinstance(events, list):
        out.add("events", "VALUE_INVALID", "events must be a list.")
    else:
        if not events and "user_data" not in body:
            out.add("events", "VALUE_REQUIRED", "At least one event is required.")
        if len(events) > MAX_EVENTS:
            out.add("events", "EXCEEDED_MAX_ENTITIES", f"A request may carry at most {MAX_EVENTS} events.")
        for index, event in enumerate(events):
            _event(f"events[{index}]", index, event, now, out, max_value_length)
    return body


def _is_ip(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _user_data(user_data: Any, out: _Messages) -> None:
    if not isinstance(user_data, dict):
        out.add("user_data", "VALUE_INVALID", "user_data must be an object.")
        return
    for key, value in user_data.items():
        path = f"user_data.{key}"
        if key not in USER_DATA_LIMITS:
            out.add(path, "VALUE_INVALID", f"Unknown user_data field [{key}].")
            continue
        entries = value if isinstance(value, list) else [value]
        if len(entries) > USER_DATA_LIMITS[key]:
            out.add(path, "EXCEEDED_MAX_ENTITIES", f"At most {USER_DATA_LIMITS[key]} values for [{key}].")
        for index, entry in enumerate(entries):
            entry_path = f"{path}[{index}]" if isinstance(value, list) else path
            if key != "address":
                if not (isinstance(entry, str) and SHA256_HEX.fullmatch(entry)):
                    out.add(entry_path, "VALUE_INVALID", "Must be a hex-encoded SHA-256 hash.")
                continue
            if not isinstance(entry, dict):
                out.add(entry_path, "VALUE_INVALID", "An address must be an object.")
                continue
            for field_name, field_value in entry.items():
                field_path = f"{entry_path}.{field_name}"
                if field_name not in ADDRESS_KEYS:
                    out.add(field_path, "VALUE_INVALID", f"Unknown address field [{field_name}].")
                elif field_name.startswith("sha256_"):
                    if not (isinstance(field_value, str) and SHA256_HEX.fullmatch(field_value)):
                        out.add(field_path, "VALUE_INVALID", "Must be a hex-encoded SHA-256 hash.")
                elif not isinstance(field_value, str) or not field_value:
                    out.add(field_path, "VALUE_INVALID", "Must be a non-empty string.")
                elif field_name == "country" and not re.fullmatch(r"[A-Z]{2}", field_value):
                    out.add(field_path, "VALUE_INVALID", "country must be ISO 3166-1 alpha-2.")


def _location(location: Any, out: _Messages) -> None:
    if location is None:
        return
    if not isinstance(location, dict):
        out.add("user_location", "VALUE_INVALID", "user_location must be an object.")
        return
    for key, value in location.items():
        pattern = LOCATION_PATTERNS.get(key)
        if pattern is None:
            out.add(f"user_location.{key}", "VALUE_INVALID", f"Unknown user_location field [{key}].")
        elif not isinstance(value, str) or not pattern.fullmatch(value):
            out.add(f"user_location.{key}", "VALUE_INVALID", f"Invalid value for [{key}].")


def _device(device: Any, out: _Messages) -> None:
    if device is None:
        return
    if not isinstance(device, dict):
        out.add("device", "VALUE_INVALID", "device must be an object.")
        return
    for key, value in device.items():
        if key not in DEVICE_KEYS:
            out.add(f"device.{key}", "VALUE_INVALID", f"Unknown device field [{key}].")
        elif not isinstance(value, str) or not value:
            out.add(f"device.{key}", "VALUE_INVALID", f"[{key}] must be a non-empty string.")
        elif key == "category" and value not in DEVICE_CATEGORIES:
            out.add(
                "device.category", "VALUE_INVALID", "category must be desktop, tablet, mobile or smart TV."
            )


def _client(body: dict[str, Any], out: _Messages) -> None:
    if "app_instance_id" in body:
        return  # an app stream; we only ever send web events
    client_id = body.get("client_id")
    if client_id is None:
        out.add("client_id", "VALUE_REQUIRED", "client_id is required for a web stream.")
    elif not isinstance(client_id, str) or not CLIENT_ID.fullmatch(client_id):
        out.add("client_id", "VALUE_INVALID", "client_id must be two positive numbers joined by a period.")


def _time(path: str, value: Any, now: datetime, out: _Messages) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        out.add(path, "VALUE_INVALID", "timestamp_micros must be an integer.")
        return
    moment = _EPOCH + timedelta(microseconds=value)
    if moment < now - BACKDATE_LIMIT:
        out.add(path, "VALUE_OUT_OF_BOUNDS", "timestamp_micros is more than 72 hours in the past.")
    elif moment > now + FUTURE_SLACK:
        out.add(path, "VALUE_OUT_OF_BOUNDS", "timestamp_micros is in the future.")


def _consent(consent: Any, out: _Messages) -> None:
    if consent is None:
        return
    if not isinstance(consent, dict):
        out.add("consent", "VALUE_INVALID", "consent must be an object.")
        return
    for key, value in consent.items():
        if key not in ("ad_user_data", "ad_personalization"):
            out.add(f"consent.{key}", "VALUE_INVALID", f"Unknown consent field [{key}].")
        elif value not in CONSENT_VALUES:
            out.add(f"consent.{key}", "VALUE_INVALID", "Consent values must be GRANTED or DENIED.")


def _user_properties(properties: Any, out: _Messages) -> None:
    if properties is None:
        return
    if not isinstance(properties, dict):
        out.add("user_properties", "VALUE_INVALID", "user_properties must be an object.")
        return
    if len(properties) > MAX_USER_PROPERTIES:
        out.add("user_properties", "EXCEEDED_MAX_ENTITIES", f"At most {MAX_USER_PROPERTIES} user properties.")
    for key, holder in properties.items():
        path = f"user_properties.{key}"
        if key in RESERVED_USER_PROPERTIES or key.startswith(RESERVED_USER_PROPERTY_PREFIXES):
            out.add(path, "NAME_RESERVED", f"User property name [{key}] is reserved.")
        elif len(key) > MAX_USER_PROPERTY_NAME:
            out.add(
                path, "VALUE_OUT_OF_BOUNDS", f"User property name is over {MAX_USER_PROPERTY_NAME} chars."
            )
        elif not NAME.fullmatch(key):
            out.add(path, "NAME_INVALID", f"User property name [{key}] is invalid.")
        value = holder.get("value") if isinstance(holder, dict) else None
        if isinstance(value, str):
            if len(value) > MAX_USER_PROPERTY_VALUE:
                out.add(
                    f"{path}.value", "VALUE_OUT_OF_BOUNDS", f"At most {MAX_USER_PROPERTY_VALUE} characters."
                )
        elif isinstance(value, bool) or not isinstance(value, int | float):
            out.add(f"{path}.value", "VALUE_INVALID", "A user property value must be a string or a number.")


def _event(path: str, index: int, event: Any, now: datetime, out: _Messages, max_value: int) -> None:
    if not isinstance(event, dict):
        out.add(path, "VALUE_INVALID", f"Event at index: [{index}] must be an object.")
        return
    for key in event:
        if key not in EVENT_KEYS:
            out.add(f"{path}.{key}", "VALUE_INVALID", f"Unknown field [{key}] in event at index: [{index}].")
    name = event.get("name")
    if not isinstance(name, str) or not name:
        out.add(f"{path}.name", "VALUE_REQUIRED", f"Event at index: [{index}] has no name.")
    elif len(name) > MAX_NAME:
        out.add(
            f"{path}.name",
            "VALUE_OUT_OF_BOUNDS",
            f"Event at index: [{index}] has a name over {MAX_NAME} chars.",
        )
    elif not NAME.fullmatch(name):
        out.add(
            f"{path}.name",
            "NAME_INVALID",
            f"Event at index: [{index}] has invalid name [{name}]. Names must start with an alphabetic "
            "character and contain only alphanumerics and underscores.",
        )
    elif name in RESERVED_EVENTS or name in APP_ONLY_EVENTS or name.startswith(RESERVED_EVENT_PREFIXES):
        out.add(f"{path}.name", "NAME_RESERVED", f"Event at index: [{index}] has reserved name [{name}].")
    if "timestamp_micros" in event:
        _time(f"{path}.timestamp_micros", event["timestamp_micros"], now, out)
    params = event.get("params", {})
    if not isinstance(params, dict):
        out.add(f"{path}.params", "VALUE_INVALID", "params must be an object.")
        return
    if len(params) > MAX_PARAMS:
        out.add(f"{path}.params", "EXCEEDED_MAX_ENTITIES", f"An event may carry at most {MAX_PARAMS} params.")
    for key, value in params.items():
        param_path = f"{path}.params.{key}"
        _param_name(param_path, key, out)
        if key == "items":
            _items(param_path, value, out, max_value)
        elif key == "session_id":
            if isinstance(value, bool) or not (
                isinstance(value, int | float) or (isinstance(value, str) and value.isdigit())
            ):
                out.add(param_path, "VALUE_INVALID", "session_id must be a number.")
        elif key in ("value", "tax", "shipping", "engagement_time_msec"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                out.add(param_path, "VALUE_INVALID", f"[{key}] must be a number.")
        else:
            _scalar(param_path, value, out, max_value)
    if "value" in params and not params.get("currency"):
        out.add(f"{path}.params.currency", "VALUE_REQUIRED", "Currency is required when value is set.")
    currency = params.get("currency")
    if currency is not None and not (isinstance(currency, str) and re.fullmatch(r"[A-Z]{3}", currency)):
        out.add(f"{path}.params.currency", "VALUE_INVALID", "Currency must be a 3-letter ISO 4217 code.")
    if name in NEEDS_TRANSACTION_ID and not params.get("transaction_id"):
        out.add(f"{path}.params.transaction_id", "VALUE_REQUIRED", f"[{name}] requires a transaction_id.")


def _param_name(path: str, key: str, out: _Messages) -> None:
    if key in RESERVED_PARAMS or key.startswith(RESERVED_PARAM_PREFIXES):
        out.add(path, "NAME_RESERVED", f"Parameter name [{key}] is reserved.")
    elif len(key) > MAX_NAME:
        out.add(path, "VALUE_OUT_OF_BOUNDS", f"Parameter name [{key}] is over {MAX_NAME} characters.")
    elif not NAME.fullmatch(key):
        out.add(path, "NAME_INVALID", f"Parameter name [{key}] is invalid.")


def _scalar(path: str, value: Any, out: _Messages, max_value: int) -> None:
    if isinstance(value, str):
        if len(value) > max_value:
            out.add(path, "VALUE_OUT_OF_BOUNDS", f"Value is over {max_value} characters.")
    elif isinstance(value, bool) or not isinstance(value, int | float):
        out.add(path, "VALUE_INVALID", "Parameter values must be strings or numbers.")


def _items(path: str, items: Any, out: _Messages, max_value: int) -> None:
    if not isinstance(items, list):
        out.add(path, "VALUE_INVALID", "items must be a list.")
        return
    for index, item in enumerate(items):
        item_path = f"{path}[{index}]"
        if not isinstance(item, dict):
            out.add(item_path, "VALUE_INVALID", "Each item must be an object.")
            continue
        if not item.get("item_id") and not item.get("item_name"):
            out.add(item_path, "VALUE_REQUIRED", "Each item needs item_id or item_name.")
        custom = [key for key in item if key not in STANDARD_ITEM_PARAMS]
        if len(custom) > MAX_ITEM_CUSTOM_PARAMS:
            out.add(
                item_path, "EXCEEDED_MAX_ENTITIES", f"At most {MAX_ITEM_CUSTOM_PARAMS} custom item params."
            )
        for key, value in item.items():
            _param_name(f"{item_path}.{key}", key, out)
            if key in ("price", "quantity", "discount", "index"):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    out.add(f"{item_path}.{key}", "VALUE_INVALID", f"[{key}] must be a number.")
            else:
                _scalar(f"{item_path}.{key}", value, out, max_value)
