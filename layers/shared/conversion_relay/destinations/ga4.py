"""GA4 Measurement Protocol: map a canonical event to an MP request, validate it as Google's
validation server would, batch events of one user per request, send, classify.

Production `/mp/collect` answers 2xx to anything, even to what it silently drops, so every rule
Google documents is checked here before sending: a REJECT with the field path is the only signal
anyone will ever get. Limits and reserved names are data (data/ga4_rules.json).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any, ClassVar, Self

import requests

from conversion_relay import config, http, secrets
from conversion_relay.config import ConfigError
from conversion_relay.destinations.base import Outcome, Prepared, classify_transport_error
from conversion_relay.model import REFUND, Consent, ConversionEvent, Item

DEFAULT_BASE_URL = "https://www.google-analytics.com"
COLLECT_PATH = "/mp/collect"
DEBUG_COLLECT_PATH = "/debug/mp/collect"
ENGAGEMENT_TIME_MSEC = 1  # any positive value makes a server event count as engaged in its session
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_REASONS = 5


# -- rules (data) ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Ga4Rules:
    client_id_pattern: re.Pattern[str]
    name_pattern: re.Pattern[str]
    max_events_per_request: int
    max_params_per_event: int
    max_event_name_length: int
    max_param_name_length: int
    max_param_value_length: int
    max_body_bytes_exclusive: int
    max_backdate: timedelta
    future_tolerance: timedelta
    reserved_event_names: frozenset[str]
    app_only_event_names: frozenset[str]
    reserved_param_names: frozenset[str]
    reserved_param_prefixes: tuple[str, ...]
    events_requiring_transaction_id: frozenset[str]

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Ga4Rules:
        return cls(
            client_id_pattern=re.compile(raw["client_id_pattern"]),
            name_pattern=re.compile(raw["name_pattern"]),
            max_events_per_request=int(raw["max_events_per_request"]),
            max_params_per_event=int(raw["max_params_per_event"]),
            max_event_name_length=int(raw["max_event_name_length"]),
            max_param_name_length=int(raw["max_param_name_length"]),
            max_param_value_length=int(raw["max_param_value_length"]),
            max_body_bytes_exclusive=int(raw["max_body_bytes_exclusive"]),
            max_backdate=timedelta(seconds=int(raw["max_backdate_seconds"])),
            future_tolerance=timedelta(seconds=int(raw["future_tolerance_seconds"])),
            reserved_event_names=frozenset(raw["reserved_event_names"]),
            app_only_event_names=frozenset(raw["app_only_event_names"]),
            reserved_param_names=frozenset(raw["reserved_param_names"]),
            reserved_param_prefixes=tuple(raw["reserved_param_prefixes"]),
            events_requiring_transaction_id=frozenset(raw["events_requiring_transaction_id"]),
        )


@cache
def rules() -> Ga4Rules:
    """The shipped GA4 rules (data/ga4_rules.json)."""
    text = resources.files("conversion_relay").joinpath("data/ga4_rules.json").read_text("utf-8")
    return Ga4Rules.from_dict(json.loads(text))


# -- validation --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule, named like a validation-server message. `detail` never holds payload values."""

    field_path: str
    code: str  # VALUE_INVALID, VALUE_REQUIRED, NAME_INVALID, NAME_RESERVED, VALUE_OUT_OF_BOUNDS, ...
    detail: str

    def __str__(self) -> str:
        return f"{self.field_path}: {self.code} ({self.detail})"


def encode_body(body: Mapping[str, Any]) -> bytes:
    """The exact bytes we POST, so the size we check is the size we send."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def validate_body(
    body: Mapping[str, Any], *, now: datetime, ga4_rules: Ga4Rules | None = None
) -> list[Violation]:
    """Every documented MP rule the request body breaks (empty list: Google would accept it)."""
    r = ga4_rules or rules()
    found: list[Violation] = []
    client_id = body.get("client_id")
    if client_id is None or client_id == "":
        found.append(Violation("client_id", "VALUE_REQUIRED", "a web stream needs the gtag client id"))
    elif not isinstance(client_id, str) or not r.client_id_pattern.fullmatch(client_id):
        found.append(
            Violation("client_id", "VALUE_INVALID", "must be two positive numbers joined by a period")
        )
    if "user_id" in body and not isinstance(body["user_id"], str):
        found.append(Violation("user_id", "VALUE_INVALID", "must be a string"))
    if "timestamp_micros" in body:
        found.extend(_timestamp_violations("timestamp_micros", body["timestamp_micros"], now, r))
    consent = body.get("consent")
    if consent is not None:
        if not isinstance(consent, dict):
            found.append(Violation("consent", "VALUE_INVALID", "must be an object"))
        else:
            for key, value in consent.items():
                if key not in ("ad_user_data", "ad_personalization"):
                    found.append(Violation(f"consent.{key}", "NAME_INVALID", "unknown consent field"))
                elif value not in ("GRANTED", "DENIED"):
                    found.append(Violation(f"consent.{key}", "VALUE_INVALID", "must be GRANTED or DENIED"))
    events = body.get("events")
    if not isinstance(events, list) or not events:
        found.append(Violation("events", "VALUE_REQUIRED", "at least one event is required"))
    else:
        if len(events) > r.max_events_per_request:
            found.append(
                Violation(
                    "events",
                    "EXCEEDED_MAX_ENTITIES",
                    f"{len(events)} events; at most {r.max_events_per_request}",
                )
            )
        for index, event in enumerate(events):
            found.extend(_event_violations(f"events[{index}]", event, now, r))
    size = len(encode_body(body))
    if size >= r.max_body_bytes_exclusive:
        found.append(
            Violation(
                "body", "VALUE_OUT_OF_BOUNDS", f"{size} bytes; must be under {r.max_body_bytes_exclusive}"
            )
        )
    return found


def _timestamp_violations(path: str, value: Any, now: datetime, r: Ga4Rules) -> list[Violation]:
    if isinstance(value, bool) or not isinstance(value, int):
        return [Violation(path, "VALUE_INVALID", "must be an integer count of microseconds since the epoch")]
    at = _EPOCH + timedelta(microseconds=value)
    hours = int(r.max_backdate.total_seconds() // 3600)
    if at < now - r.max_backdate:
        return [
            Violation(
                path,
                "VALUE_OUT_OF_BOUNDS",
                f"older than {hours} h: GA4 would re-stamp it to {hours} h ago or drop it; too late to send",
            )
        ]
    if at > now + r.future_tolerance:
        return [Violation(path, "VALUE_OUT_OF_BOUNDS", "in the future; check the provider's event time")]
    return []


def _name_violations(path: str, name: Any, max_length: int, r: Ga4Rules) -> list[Violation]:
    if not isinstance(name, str) or not name:
        return [Violation(path, "VALUE_REQUIRED", "a name is required")]
    if len(name) > max_length:
        return [Violation(path, "VALUE_OUT_OF_BOUNDS", f"{len(name)} characters; at most {max_length}")]
    if not r.name_pattern.fullmatch(name):
        return [
            Violation(path, "NAME_INVALID", "must start with a letter and use only letters, digits and _")
        ]
    return []


def _param_name_violations(path: str, name: str, r: Ga4Rules) -> list[Violation]:
    if name in r.reserved_param_names or name.startswith(r.reserved_param_prefixes):
        prefixes = ", ".join(r.reserved_param_prefixes)
        return [Violation(path, "NAME_RESERVED", f"reserved parameter name or prefix ({prefixes})")]
    return _name_violations(path, name, r.max_param_name_length, r)


def _value_violations(path: str, value: Any, r: Ga4Rules) -> list[Violation]:
    if isinstance(value, str):
        if len(value) > r.max_param_value_length:
            limit = r.max_param_value_length
            return [Violation(path, "VALUE_OUT_OF_BOUNDS", f"{len(value)} characters; at most {limit}")]
        return []
    if isinstance(value, bool) or not isinstance(value, int | float):
        return [Violation(path, "VALUE_INVALID", "must be a string or a number")]
    return []


def _event_violations(path: str, event: Any, now: datetime, r: Ga4Rules) -> list[Violation]:
    if not isinstance(event, dict):
        return [Violation(path, "VALUE_INVALID", "must be an object")]
    found: list[Violation] = []
    name = event.get("name")
    name_problems = _name_violations(f"{path}.name", name, r.max_event_name_length, r)
    found.extend(name_problems)
    if not name_problems and name in r.reserved_event_names:
        found.append(
            Violation(f"{path}.name", "NAME_RESERVED", "reserved event name; map it to another name")
        )
    elif not name_problems and name in r.app_only_event_names:
        found.append(Violation(f"{path}.name", "NAME_RESERVED", "allowed for app streams only"))
    if "timestamp_micros" in event:
        found.extend(_timestamp_violations(f"{path}.timestamp_micros", event["timestamp_micros"], now, r))
    params = event.get("params", {})
    if not isinstance(params, dict):
        return [*found, Violation(f"{path}.params", "VALUE_INVALID", "must be an object")]
    if len(params) > r.max_params_per_event:
        found.append(
            Violation(
                f"{path}.params",
                "EXCEEDED_MAX_ENTITIES",
                f"{len(params)} parameters; at most {r.max_params_per_event}",
            )
        )
    for key, value in params.items():
        param_path = f"{path}.params.{key}"
        found.extend(_param_name_violations(param_path, key, r))
        if key == "items":
            found.extend(_items_violations(param_path, value, r))
        else:
            found.extend(_value_violations(param_path, value, r))
    if params.get("value") is not None and not params.get("currency"):
        found.append(
            Violation(f"{path}.params.currency", "VALUE_REQUIRED", "currency is required when value is set")
        )
    if name in r.events_requiring_transaction_id and not params.get("transaction_id"):
        found.append(
            Violation(
                f"{path}.params.transaction_id", "VALUE_REQUIRED", f"transaction_id is required for {name}"
            )
        )
    return found


def _items_violations(path: str, items: Any, r: Ga4Rules) -> list[Violation]:
    if not isinstance(items, list):
        return [Violation(path, "VALUE_INVALID", "must be a list of objects")]
    found: list[Violation] = []
    for index, item in enumerate(items):
        item_path = f"{path}[{index}]"
        if not isinstance(item, dict):
            found.append(Violation(item_path, "VALUE_INVALID", "must be an object"))
            continue
        if not item.get("item_id") and not item.get("item_name"):
            found.append(Violation(item_path, "VALUE_REQUIRED", "item_id or item_name is required"))
        for key, value in item.items():
            found.extend(_param_name_violations(f"{item_path}.{key}", key, r))
            found.extend(_value_violations(f"{item_path}.{key}", value, r))
    return found


# -- mapping -----------------------------------------------------------------------------------------
_GS1_SESSION = re.compile(r"GS1\.\d+\.(\d+)\..*")  # _ga_<stream> cookie, older format
_GS2_SESSION = re.compile(r"GS2\.\d+\.s(\d+)(?:\$.*)?")  # _ga_<stream> cookie, newer format


def session_id_number(raw: str | None) -> int | None:
    """The numeric GA4 session id from a plain id or a `_ga_<stream>` cookie value; None if unusable.

    A non-numeric session id can never join a session, so it is left out rather than sent.
    """
    if not raw:
        return None
    text = raw.strip()
    if text.isascii() and text.isdigit():
        return int(text) or None
    match = _GS1_SESSION.fullmatch(text) or _GS2_SESSION.fullmatch(text)
    return int(match.group(1)) if match else None


def timestamp_micros(moment: datetime) -> int:
    # Integer arithmetic: float seconds would lose microseconds for current dates.
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _number(amount: Decimal, *, refund: bool) -> float:
    # GA4 reports refunds as positive amounts; providers may hand us either sign.
    return float(abs(amount)) if refund else float(amount)


def _item(item: Item) -> dict[str, Any] | None:
    if not item.id and not item.name:
        return None  # GA4 needs item_id or item_name; anything else about it is unusable
    mapped: dict[str, Any] = {}
    if item.id:
        mapped["item_id"] = item.id
    if item.name:
        mapped["item_name"] = item.name
    if item.price is not None:
        mapped["price"] = float(item.price)
    mapped["quantity"] = item.quantity
    for key, value in (
        ("item_category", item.category),
        ("item_brand", item.brand),
        ("item_variant", item.variant),
    ):
        if value:
            mapped[key] = value
    return mapped


def _consent(consent: Consent) -> dict[str, str]:
    # Only stated values: when omitted, GA4 applies the consent of the client's online interactions.
    return {
        key: "GRANTED" if stated else "DENIED"
        for key, stated in (
            ("ad_user_data", consent.ad_user_data),
            ("ad_personalization", consent.ad_personalization),
        )
        if stated is not None
    }


def mapped_params(event: ConversionEvent) -> dict[str, Any]:
    """The GA4 params we derive from canonical fields (custom `properties` not included)."""
    refund = event.name == REFUND
    params: dict[str, Any] = {}
    if event.transaction_id:
        params["transaction_id"] = event.transaction_id
    if event.value is not None:
        params["value"] = _number(event.value, refund=refund)
    if event.currency:
        params["currency"] = event.currency
    if event.tax is not None:
        params["tax"] = _number(event.tax, refund=refund)
    if event.shipping is not None:
        params["shipping"] = _number(event.shipping, refund=refund)
    if event.coupon:
        params["coupon"] = event.coupon
    # A canonical refund carries items only when it is partial; without items GA4 books a full refund.
    items = [mapped for mapped in map(_item, event.items) if mapped is not None]
    if items:
        params["items"] = items
    session_id = session_id_number(event.context.ga_session_id)
    if session_id is not None:
        params["session_id"] = session_id
        params["engagement_time_msec"] = ENGAGEMENT_TIME_MSEC
    return params


def map_event(event: ConversionEvent, event_name: str) -> dict[str, Any]:
    """A complete single-event MP request body, before validation."""
    params = mapped_params(event)
    for key, value in event.properties.items():
        params.setdefault(key, value)  # a colliding property is rejected by prepare(), never sent
    body: dict[str, Any] = {}
    if event.context.ga_client_id is not None:
        body["client_id"] = event.context.ga_client_id
    if event.context.user_id:
        body["user_id"] = event.context.user_id
    body["timestamp_micros"] = timestamp_micros(event.occurred_at)
    consent = _consent(event.consent)
    if consent:
        body["consent"] = consent
    body["events"] = [{"name": event_name, "params": params}]
    return body


def group_key(body: Mapping[str, Any]) -> str:
    """Same user, same consent -> same key. Hashed so the key is safe to log."""
    identity = [body.get("client_id"), body.get("user_id"), body.get("consent")]
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return f"ga4:{digest[:32]}"


def merge_bodies(payloads: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One request for several single-event bodies of the same user.

    Each event keeps its own time as an event-level `timestamp_micros` (beside `name`, as in
    Google's sending-events example), which takes precedence over the request-level one.
    """
    if len(payloads) == 1:
        return dict(payloads[0])
    merged = {key: value for key, value in payloads[0].items() if key not in ("events", "timestamp_micros")}
    events: list[dict[str, Any]] = []
    for payload in payloads:
        shared_time = payload.get("timestamp_micros")
        for event in payload["events"]:
            timed = {"name": event.get("name")}
            if shared_time is not None:
                timed["timestamp_micros"] = shared_time
            timed.update({key: value for key, value in event.items() if key != "name"})
            events.append(timed)
    merged["events"] = events
    return merged


def _join(violations: Sequence[Violation]) -> str:
    shown = "; ".join(str(v) for v in violations[:_MAX_REASONS])
    hidden = len(violations) - _MAX_REASONS
    return f"{shown}; and {hidden} more" if hidden > 0 else shown


_EVENT_INDEX = re.compile(r"^events\[(\d+)\]|index: \[(\d+)\]")


# -- the destination ---------------------------------------------------------------------------------
class Ga4Destination:
    name: ClassVar[str] = "ga4"

    def __init__(
        self,
        credentials: Mapping[str, Any],
        session: requests.Session,
        base_url: str = DEFAULT_BASE_URL,
        *,
        validate_with_debug_endpoint: bool = False,
        clock: Callable[[], datetime] | None = None,
        ga4_rules: Ga4Rules | None = None,
    ) -> None:
        missing = [key for key in ("measurement_id", "api_secret") if not credentials.get(key)]
        if missing:
            raise ConfigError(f"GA4 credentials lack {missing}")
        if not base_url.startswith(("https://", "http://")):
            raise ConfigError("GA4_BASE_URL must start with https:// (or http:// for a local fake)")
        self.measurement_id = str(credentials["measurement_id"])
        self._query = {"measurement_id": self.measurement_id, "api_secret": str(credentials["api_secret"])}
        self._session = session
        self.base_url = base_url.rstrip("/")
        self.validate_with_debug_endpoint = validate_with_debug_endpoint
        self._clock = clock or (lambda: datetime.now(UTC))
        self.rules = ga4_rules or rules()

    def __repr__(self) -> str:  # never show the api_secret
        return (
            f"Ga4Destination(measurement_id={self.measurement_id!r}, base_url={self.base_url!r}, "
            f"validate_with_debug_endpoint={self.validate_with_debug_endpoint})"
        )

    @classmethod
    def from_environment(cls, session: requests.Session) -> Self:
        secret = secrets.get_secret("ga4")
        secrets.require(secret, "ga4", "measurement_id", "api_secret")
        return cls(secret, session, os.environ.get("GA4_BASE_URL") or DEFAULT_BASE_URL)

    # -- prepare -------------------------------------------------------------------------------------
    def prepare(self, event: ConversionEvent) -> Prepared | Outcome:
        event_name = config.destination_event_name(self.name, event.name)
        if event_name is None:
            return Outcome.skip(
                f"event '{event.name}' is mapped to no GA4 event (event_names.ga4 in the mapping)"
            )
        problem = self._identity_problem(event)
        if problem is not None:
            return Outcome.reject(str(problem), error_code=problem.code)
        body = map_event(event, event_name)
        collisions = sorted(set(event.properties) & set(mapped_params(event)))
        violations = [
            Violation(
                f"events[0].params.{key}", "NAME_DUPLICATED", "a custom property collides with a mapped field"
            )
            for key in collisions
        ]
        violations.extend(validate_body(body, now=self._clock(), ga4_rules=self.rules))
        if violations:
            return Outcome.reject(_join(violations), error_code=violations[0].code)
        return Prepared(event=event, payload=body, group_key=group_key(body))

    def _identity_problem(self, event: ConversionEvent) -> Violation | None:
        """Client and user ids, with hints naming the checkout metadata key. Never falls back to PII."""
        client_key = config.metadata_key("ga_client_id")
        client_id = event.context.ga_client_id
        if not client_id:
            return Violation(
                "client_id",
                "VALUE_REQUIRED",
                f"missing; pass the _ga client id in metadata key '{client_key}' at checkout",
            )
        if not self.rules.client_id_pattern.fullmatch(client_id):
            return Violation(
                "client_id",
                "VALUE_INVALID",
                f"must be two positive numbers joined by a period (the last two parts of the _ga cookie, "
                f"e.g. 1234567890.1700000000) in metadata key '{client_key}'",
            )
        user_id = event.context.user_id
        if user_id and "@" in user_id:
            # Google's policy forbids PII in user_id; an email there can get the property's data deleted.
            return Violation(
                "user_id",
                "VALUE_INVALID",
                f"looks like an email address; send an opaque customer id in metadata key "
                f"'{config.metadata_key('user_id')}'",
            )
        return None

    # -- send ----------------------------------------------------------------------------------------
    def send(self, batch: Sequence[Prepared]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(batch)
        for indexes in self.plan_requests(batch):
            results = self._send_request([batch[i].payload for i in indexes])
            for index, outcome in zip(indexes, results, strict=True):
                outcomes[index] = outcome
        return [
            outcome or Outcome.reject("GA4: event was not planned into a request (bug)")
            for outcome in outcomes
        ]

    def plan_requests(self, batch: Sequence[Prepared]) -> list[list[int]]:
        """Indexes into `batch` per request: one user per request, <= 25 events, body under the size cap."""
        groups: dict[str, list[int]] = {}
        for index, prepared in enumerate(batch):
            groups.setdefault(prepared.group_key, []).append(index)
        planned: list[list[int]] = []
        for indexes in groups.values():
            current: list[int] = []
            for index in indexes:
                candidate = [*current, index]
                fits = len(candidate) <= self.rules.max_events_per_request and (
                    len(encode_body(merge_bodies([batch[i].payload for i in candidate])))
                    < self.rules.max_body_bytes_exclusive
                )
                if current and not fits:
                    planned.append(current)
                    candidate = [index]
                current = candidate
            if current:
                planned.append(current)
        return planned

    def _send_request(self, payloads: Sequence[Mapping[str, Any]]) -> list[Outcome]:
        body = merge_bodies(payloads)
        path = COLLECT_PATH
        if self.validate_with_debug_endpoint:
            path = DEBUG_COLLECT_PATH
            body["validation_behavior"] = "ENFORCE_RECOMMENDATIONS"  # Google's advice when validating
        try:
            # The api_secret travels in the query string by Google's design. Never log this URL, the
            # prepared request, the response's .url or a requests exception's message: all of them
            # embed it. Transport errors are classified by exception type only.
            response = self._session.post(
                self.base_url + path,
                params=self._query,
                data=encode_body(body),
                headers={"Content-Type": "application/json"},
                timeout=http.TIMEOUT,
                allow_redirects=False,
            )
        except requests.RequestException as error:
            return [classify_transport_error(error)] * len(payloads)
        if self.validate_with_debug_endpoint and response.status_code == 200:
            return self._debug_outcomes(response, len(payloads))
        return [classify_response(response)] * len(payloads)

    def _debug_outcomes(self, response: requests.Response, count: int) -> list[Outcome]:
        try:
            messages = response.json()["validationMessages"]
            if not isinstance(messages, list):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return [Outcome.reject("GA4 validation server answered without validationMessages")] * count
        per_event: list[list[tuple[str, str]]] = [[] for _ in range(count)]
        for message in messages:
            if not isinstance(message, dict):
                continue
            field_path = str(message.get("fieldPath", ""))
            code = str(message.get("validationCode", "VALUE_INVALID"))
            # The description is left out on purpose: Google may echo payload values in it.
            text = f"{field_path or 'request'}: {code}"
            match = _EVENT_INDEX.search(field_path) or _EVENT_INDEX.search(
                str(message.get("description", ""))
            )
            index = int(match.group(1) or match.group(2)) if match else None
            targets = [index] if index is not None and index < count else range(count)
            for target in targets:
                per_event[target].append((text, code))
        return [
            Outcome.reject(
                f"GA4 validation server: {'; '.join(text for text, _ in found)}",
                http_status=200,
                error_code=found[0][1],
            )
            if found
            else Outcome.skip("validated by the GA4 validation server (debug mode): not recorded in reports")
            for found in per_event
        ]


def classify_response(response: requests.Response) -> Outcome:
    status = response.status_code
    if 200 <= status < 300:
        return Outcome.delivered(status)
    if status == 429:
        return Outcome.retry(
            "GA4 answered HTTP 429 (throttled)",
            http_status=status,
            retry_after_seconds=_retry_after(response),
        )
    if status >= 500:
        return Outcome.retry(f"GA4 answered HTTP {status} (server error)", http_status=status)
    if 300 <= status < 400:
        return Outcome.reject(
            f"GA4 answered a redirect (HTTP {status}); check GA4_BASE_URL", http_status=status
        )
    # Google: a non-2xx means the HTTP request itself is wrong; do not retry it as is.
    return Outcome.reject(
        f"GA4 rejected the request with HTTP {status}; the request is malformed", http_status=status
    )


def _retry_after(response: requests.Response) -> float | None:
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
