"""The first-party events API, POST /events: the merchant's backend sends canonical events itself.

For conversions no payment provider reports (offline sales, renewals billed in-house, a provider the
relay does not support). The request is signed with the Standard Webhooks scheme (standard_webhooks.py)
and the merchant's own `whsec_` secret(s) from the `events` secret (`{"signing_secrets": [...]}`); the
`webhook-id` header is the dedupe key, so resending a request with the same id is acknowledged as a
duplicate and enqueues nothing.

The body is `{"events": [event, ...]}` (1 to 100), each event described by data/events.schema.json
(published as events.schema.json at the repository root). Validation is all-or-nothing: if any event
is invalid the answer is 400 with EVERY problem as {"index", "path", "reason"}, e.g.
{"index": 2, "path": "events[2].currency", "reason": "is required when value is present"}, and nothing
of the request is enqueued. Reasons name the rule, never the value (it may be an e-mail address).

The validator below implements the subset of JSON Schema 2020-12 that the schema file uses (type,
required, properties, additionalProperties, $ref, pattern, min/maxLength, min/maxItems, items, minimum,
maximum, maxProperties, propertyNames, dependentRequired, format date-time), so the file is the single
source of truth; the unit tests hold it to the `jsonschema` package. On top of the schema: event_ids
must be unique within a request, and occurred_at may not lie in the future beyond the tolerance.

An event may carry `cookies`, the browser's raw Cookie header value: cookies.fill_from_cookies fills
the GA4, Meta and AppsFlyer identifiers its `context` leaves empty (explicit fields win; malformed
cookies are counted, never a 400). The string itself is dropped: it never reaches a queue.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any, ClassVar

from conversion_relay.config import ConfigError
from conversion_relay.cookies import fill_from_cookies
from conversion_relay.errors import EventsInvalid
from conversion_relay.model import ConversionEvent, InvalidEvent
from conversion_relay.providers import common, standard_webhooks
from conversion_relay.signatures import PayloadError, header

PROVIDER_NAME = "events"  # the secret component (EVENTS_SECRET_NAME) and the dedupe-key prefix
SECRET_FIELD = "signing_secrets"
SCHEMA_FILE = "data/events.schema.json"
COOKIES_FIELD = "cookies"  # per event: the browser's raw Cookie header value, read and then dropped
MAX_ERRORS = 100
FUTURE_SKEW_SECONDS = 300
_SUPPORTED_KEYWORDS = frozenset(
    {
        "$schema", "$id", "$defs", "$ref", "title", "description",
        "type", "required", "properties", "additionalProperties", "pattern", "minLength", "maxLength",
        "minItems", "maxItems", "items", "minimum", "maximum", "maxProperties", "propertyNames",
        "dependentRequired", "format",
    }
)  # fmt: skip


@cache
def schema() -> dict[str, Any]:
    return json.loads(resources.files("conversion_relay").joinpath(SCHEMA_FILE).read_text("utf-8"))


# --- authenticity -----------------------------------------------------------------------------------


def signing_secrets(secret: Mapping[str, Any]) -> tuple[str, ...]:
    raw = secret.get(SECRET_FIELD)
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw or not all(isinstance(s, str) and s.strip() for s in raw):
        raise ConfigError(f"the events secret must hold {SECRET_FIELD}, a non-empty list of whsec_ strings")
    return tuple(raw)


def verify(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    tolerance_seconds: int = standard_webhooks.DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> str:
    return standard_webhooks.verify(headers, body, secrets, tolerance_seconds, now, sender="your backend")


# --- validation -------------------------------------------------------------------------------------


def validate(document: Any, now: float | None = None) -> list[dict[str, Any]]:
    """Every problem in a request body, as {"index" (event index or None), "path", "reason"}; [] if valid."""
    problems: list[tuple[str, str]] = []
    _check(document, schema(), "$", problems)
    events = document.get("events") if isinstance(document, dict) else None
    if isinstance(events, list):
        seen: dict[str, int] = {}
        current = time.time() if now is None else now
        for index, event in enumerate(events):
            if not isinstance(event, dict):
                continue
            event_id = event.get("event_id")
            if isinstance(event_id, str):
                if event_id in seen:
                    problems.append(
                        (f"events[{index}].event_id", f"repeats the event_id of events[{seen[event_id]}]")
                    )
                seen.setdefault(event_id, index)
            moment = _datetime(event.get("occurred_at"))
            if moment is not None and moment.timestamp() > current + FUTURE_SKEW_SECONDS:
                problems.append((f"events[{index}].occurred_at", "is in the future"))
    errors = []
    for path, reason in problems[:MAX_ERRORS]:
        found = re.match(r"events\[(\d+)\]", path.removeprefix("$."))
        errors.append(
            {
                "index": int(found.group(1)) if found else None,
                "path": path.removeprefix("$."),
                "reason": reason,
            }
        )
    return errors


def _check(value: Any, rule: Mapping[str, Any], path: str, problems: list[tuple[str, str]]) -> None:
    if "$ref" in rule:
        rule = _resolve(rule["$ref"])
    kinds = rule.get("type")
    if kinds is not None:
        allowed = [kinds] if isinstance(kinds, str) else list(kinds)
        if not any(_is_type(value, kind) for kind in allowed):
            article = "an" if allowed[0][0] in "aeiou" else "a"
            problems.append((path, f"must be {article} {' or '.join(allowed)}"))
            return
    if isinstance(value, str):
        if "minLength" in rule and len(value) < rule["minLength"]:
            problems.append(
                (
                    path,
                    "must not be empty"
                    if rule["minLength"] == 1
                    else f"must be at least {rule['minLength']} characters",
                )
            )
        if "maxLength" in rule and len(value) > rule["maxLength"]:
            problems.append((path, f"must be at most {rule['maxLength']} characters"))
        if "pattern" in rule and not re.search(rule["pattern"], value):
            problems.append((path, f"must match {rule['pattern']}"))
        if rule.get("format") == "date-time" and _datetime(value) is None:
            problems.append(
                (path, "must be an RFC 3339 date-time with a UTC offset, e.g. 2026-01-02T14:46:59+09:00")
            )
    if _is_type(value, "number"):
        if "minimum" in rule and value < rule["minimum"]:
            problems.append((path, f"must be at least {rule['minimum']}"))
        if "maximum" in rule and value > rule["maximum"]:
            problems.append((path, f"must be at most {rule['maximum']}"))
    if isinstance(value, list):
        if "minItems" in rule and len(value) < rule["minItems"]:
            problems.append((path, f"must hold at least {rule['minItems']} item(s)"))
        if "maxItems" in rule and len(value) > rule["maxItems"]:
            problems.append((path, f"must hold at most {rule['maxItems']} items"))
        if "items" in rule:
            for index, item in enumerate(value):
                _check(item, rule["items"], f"{path}[{index}]", problems)
    if isinstance(value, dict):
        _check_object(value, rule, path, problems)


def _check_object(
    value: dict[str, Any], rule: Mapping[str, Any], path: str, problems: list[tuple[str, str]]
) -> None:
    for name in rule.get("required", ()):
        if name not in value:
            problems.append((f"{path}.{name}", "is required"))
    for name, needs in rule.get("dependentRequired", {}).items():
        if name in value:
            problems.extend(
                (f"{path}.{need}", f"is required when {name} is present")
                for need in needs
                if need not in value
            )
    if "maxProperties" in rule and len(value) > rule["maxProperties"]:
        problems.append((path, f"must have at most {rule['maxProperties']} entries"))
    properties = rule.get("properties", {})
    extra = rule.get("additionalProperties", True)
    names = rule.get("propertyNames")
    for name, item in value.items():
        if names is not None and not re.search(names.get("pattern", ""), name):
            problems.append(
                (
                    f"{path}.{name}" if name.isidentifier() else path,
                    f"has a key that does not match {names['pattern']}",
                )
            )
            continue
        if name in properties:
            _check(item, properties[name], f"{path}.{name}", problems)
        elif extra is False:
            problems.append((f"{path}.{name}", "is not a known field"))
        elif isinstance(extra, dict):
            _check(item, extra, f"{path}.{name}", problems)


def _resolve(reference: str) -> dict[str, Any]:
    if not reference.startswith("#/$defs/"):
        raise ValueError(f"only local $defs references are supported, not {reference}")
    return schema()["$defs"][reference.removeprefix("#/$defs/")]


def _is_type(value: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float | Decimal) and not isinstance(value, bool)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "null":
        return value is None
    raise ValueError(f"unsupported JSON Schema type {kind}")


def _datetime(value: Any) -> datetime | None:
    if not isinstance(value, str) or not re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", value
    ):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


# --- parsing ----------------------------------------------------------------------------------------


def parse(body: bytes, now: float | None = None) -> dict[str, Any]:
    """The validated body; EventsInvalid listing every problem, or PayloadError when it is not JSON."""
    try:
        # Decimal keeps 19.99 exact; a float could not.
        document = json.loads(body, parse_float=Decimal)
    except (ValueError, RecursionError):
        raise PayloadError('body is not JSON: send {"events": [...]} (see events.schema.json)') from None
    errors = validate(document, now)
    if not errors:
        for index, event in enumerate(document["events"]):
            try:
                # Cookies are read once, in to_events: reading them here would count bad ones twice.
                _build(event, "validation", "events", read_cookies=False)
            except InvalidEvent as error:  # the model's own rules, should the schema ever be looser
                errors.append(
                    {"index": index, "path": f"events[{index}].{error.path}", "reason": error.reason}
                )
    if errors:
        count = len({e["index"] for e in errors if e["index"] is not None})
        summary = (
            f"{count} of {len(document['events'])} event(s) invalid" if count else "the request is invalid"
        )
        raise EventsInvalid(f"{summary}; nothing was enqueued: fix every listed error and resend", errors)
    return document


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _build(
    event: Mapping[str, Any], webhook_id: str, event_type: str, *, read_cookies: bool = True
) -> ConversionEvent:
    data = _plain(dict(event))
    livemode = data.pop("livemode", True)
    # The raw header can hold session tokens: it is read here and never becomes part of the event.
    cookie_header = data.pop(COOKIES_FIELD, None)
    data["source"] = {
        "provider": PROVIDER_NAME,
        "event_id": webhook_id,
        "event_type": event_type,
        "object_id": data["event_id"],
        "livemode": livemode,
    }
    built = ConversionEvent.from_dict(data)
    if not read_cookies or not cookie_header:
        return built
    # Stamped with the event's own time, so a retried request builds the very same fbc.
    stamp_ms = int(built.occurred_at.timestamp() * 1000)
    return replace(built, context=fill_from_cookies(built.context, cookie_header, now_ms=stamp_ms))


def resolve(payload: Mapping[str, Any], headers: Mapping[str, str]) -> dict[str, Any]:
    webhook_id = header(headers, standard_webhooks.ID_HEADER)
    if not webhook_id:
        raise PayloadError("webhook-id header is required")
    return {"events": payload["events"], "webhook_id": webhook_id}


def delivery_id(payload: Mapping[str, Any]) -> str:
    return str(payload["webhook_id"])


def event_type(payload: Mapping[str, Any]) -> str:
    return "events"


def to_events(payload: Mapping[str, Any]) -> list[ConversionEvent]:
    return [_build(event, delivery_id(payload), "events") for event in payload["events"]]


# --- registration -----------------------------------------------------------------------------------


class FirstPartyProvider(common.ModuleProvider):
    name: ClassVar[str] = PROVIDER_NAME

    def verify_request(
        self, headers: Mapping[str, str], body: bytes, secret: Mapping[str, Any], tolerance_seconds: int
    ) -> None:
        verify(headers, body, signing_secrets(secret), tolerance_seconds)

    def resolve(
        self, payload: Mapping[str, Any], headers: Mapping[str, str], secret: Mapping[str, Any], session: Any
    ) -> dict[str, Any]:
        return resolve(payload, headers)


PROVIDER = FirstPartyProvider(__name__)
