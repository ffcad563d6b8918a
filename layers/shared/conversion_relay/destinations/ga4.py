"""GA4 Measurement Protocol: map a canonical event to an MP request, validate it as Google's
validation server would, batch events of one user per request, send, classify.

Production `/mp/collect` answers 2xx to anything, even to what it silently drops, so every rule
Google documents is checked here before sending: a REJECT with the field path is the only signal
anyone will ever get. Limits and reserved names are data (data/ga4_rules.json).

Configuration (environment, set by template.yaml; see README "GA4"):
- GA4_CLIENT_ID_POLICY  reject (default) | derive: what to do when an event has no gtag client id.
  `derive` sends it under a pseudonymous, stable id: HMAC-SHA256 of the customer id (user_id, else
  the provider's customer id) turned into "digits.digits". Never PII, the same customer always gets
  the same id, but it joins no browser session.
- GA4_DEBUG_MODE  none (default) | test_events | all: send test-mode (livemode false) events, or all
  events, to /debug/mp/collect with validation_behavior ENFORCE_RECOMMENDATIONS instead of /mp/collect.
- GA4_SHADOW_SAMPLE_RATE  0..1 (default 0): after a production request, re-post this share of them
  to the validation server; the result is only a metric (Ga4ShadowCheckFailed / Passed).
- GA4_MAX_PARAM_VALUE_LENGTH  100 (default) | 500 (GA4 360 properties).
- GA4_USER_DATA  disabled (default) | enabled: send user-provided data (hashed email/phone/name/street).
The secret holds one stream ({"measurement_id", "api_secret"}) or several
({"streams": [...], "default_stream": ..., "routing": ...}); see StreamRouter.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
import json
import math
import os
import random
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit

import requests

from conversion_relay import config, http, secrets
from conversion_relay.config import ConfigError
from conversion_relay.destinations.base import Outcome, Prepared, Status, classify_transport_error
from conversion_relay.model import REFUND, Consent, ConversionEvent, Item, Person

DEFAULT_BASE_URL = "https://www.google-analytics.com"
COLLECT_PATH = "/mp/collect"
DEBUG_COLLECT_PATH = "/debug/mp/collect"
# Concurrent requests per batch (the handler's pooled session holds 10 connections).
SEND_CONCURRENCY = 8
ENFORCE_RECOMMENDATIONS = "ENFORCE_RECOMMENDATIONS"
ENGAGEMENT_TIME_MSEC = 1  # any positive value makes a server event count as engaged in its session
DEFAULT_STREAM = "default"  # the name of the one stream of a single-stream secret
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
    max_param_value_length_360: int = 500
    max_item_custom_params: int = 10
    max_user_properties: int = 25
    max_user_property_name_length: int = 24
    max_user_property_value_length: int = 36
    max_user_id_length: int = 256
    user_data_limits: Mapping[str, int] = field(default_factory=dict)
    user_data_address_fields: frozenset[str] = frozenset()
    user_location_fields: frozenset[str] = frozenset()
    device_fields: frozenset[str] = frozenset()
    device_categories: frozenset[str] = frozenset()
    reserved_event_name_prefixes: tuple[str, ...] = ()
    reserved_user_property_names: frozenset[str] = frozenset()
    reserved_user_property_prefixes: tuple[str, ...] = ()
    standard_item_params: frozenset[str] = frozenset()
    numeric_params: frozenset[str] = frozenset()
    numeric_item_params: frozenset[str] = frozenset()

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
            max_param_value_length_360=int(raw["max_param_value_length_360"]),
            max_item_custom_params=int(raw["max_item_custom_params"]),
            max_user_properties=int(raw["max_user_properties"]),
            max_user_property_name_length=int(raw["max_user_property_name_length"]),
            max_user_property_value_length=int(raw["max_user_property_value_length"]),
            max_user_id_length=int(raw["max_user_id_length"]),
            user_data_limits={key: int(value) for key, value in raw["user_data_limits"].items()},
            user_data_address_fields=frozenset(raw["user_data_address_fields"]),
            user_location_fields=frozenset(raw["user_location_fields"]),
            device_fields=frozenset(raw["device_fields"]),
            device_categories=frozenset(raw["device_categories"]),
            reserved_event_name_prefixes=tuple(raw["reserved_event_name_prefixes"]),
            reserved_user_property_names=frozenset(raw["reserved_user_property_names"]),
            reserved_user_property_prefixes=tuple(raw["reserved_user_property_prefixes"]),
            standard_item_params=frozenset(raw["standard_item_params"]),
            numeric_params=frozenset(raw["numeric_params"]),
            numeric_item_params=frozenset(raw["numeric_item_params"]),
        )


def _data(name: str) -> Any:
    return json.loads(resources.files("conversion_relay").joinpath(f"data/{name}").read_text("utf-8"))


@cache
def rules() -> Ga4Rules:
    """The shipped GA4 rules (data/ga4_rules.json), for a standard (non-360) property."""
    return Ga4Rules.from_dict(_data("ga4_rules.json"))


@cache
def _calling_codes() -> tuple[dict[str, str], frozenset[str]]:
    raw = _data("ga4_calling_codes.json")
    return dict(raw["codes"]), frozenset(raw["keeps_trunk_zero"])


# -- options -----------------------------------------------------------------------------------------
CLIENT_ID_POLICIES = ("reject", "derive")
DEBUG_MODES = ("none", "test_events", "all")


@dataclass(frozen=True, slots=True)
class Ga4Options:
    """Deployment choices (environment variables from template parameters)."""

    client_id_policy: str = "reject"
    debug_mode: str = "none"
    shadow_sample_rate: float = 0.0
    max_param_value_length: int = 100
    user_data: bool = False

    def __post_init__(self) -> None:
        if self.client_id_policy not in CLIENT_ID_POLICIES:
            raise ConfigError(f"GA4_CLIENT_ID_POLICY must be one of {CLIENT_ID_POLICIES}")
        if self.debug_mode not in DEBUG_MODES:
            raise ConfigError(f"GA4_DEBUG_MODE must be one of {DEBUG_MODES}")
        if not 0.0 <= self.shadow_sample_rate <= 1.0:
            raise ConfigError("GA4_SHADOW_SAMPLE_RATE must be a number from 0 to 1")
        if self.max_param_value_length not in (100, 500):
            raise ConfigError("GA4_MAX_PARAM_VALUE_LENGTH must be 100 (standard) or 500 (GA4 360)")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Ga4Options:
        env = os.environ if environ is None else environ
        try:
            rate = float(env.get("GA4_SHADOW_SAMPLE_RATE") or "0")
            length = int(env.get("GA4_MAX_PARAM_VALUE_LENGTH") or "100")
        except ValueError:
            raise ConfigError("GA4_SHADOW_SAMPLE_RATE / GA4_MAX_PARAM_VALUE_LENGTH must be numbers") from None
        user_data = (env.get("GA4_USER_DATA") or "disabled").strip().lower()
        if user_data not in ("enabled", "disabled"):
            raise ConfigError("GA4_USER_DATA must be enabled or disabled")
        return cls(
            client_id_policy=(env.get("GA4_CLIENT_ID_POLICY") or "reject").strip().lower(),
            debug_mode=(env.get("GA4_DEBUG_MODE") or "none").strip().lower(),
            shadow_sample_rate=rate if math.isfinite(rate) else -1.0,
            max_param_value_length=length,
            user_data=user_data == "enabled",
        )


# -- streams -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Stream:
    name: str
    measurement_id: str
    api_secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class RoutingRule:
    """Events whose `field` has one of `values` go to `stream`. First matching rule wins."""

    field: str  # "source.provider", "currency", "properties.<key>", "person.country", "site_host", ...
    values: frozenset[str]
    stream: str


class StreamRouter:
    """Which measurement stream (measurement_id + api_secret) an event goes to.

    Secret shapes:
      {"measurement_id": "G-...", "api_secret": "..."}                      one stream, named "default"
      {"streams": [{"name": "kr", "measurement_id": "G-...", "api_secret": "..."}, ...],
       "default_stream": "kr",
       "routing": [{"field": "properties.site", "equals": "jp", "stream": "jp"},
                   {"field": "source.provider", "in": ["portone"], "stream": "kr"}]}
      "routing" may also be {"field": "site_host", "values": {"shop.jp": "jp", "shop.kr": "kr"}}.
    Fields are dotted paths into the canonical event (its JSON form), plus `site_host`: the host of
    context.event_source_url. An event no rule matches goes to the default stream.
    """

    def __init__(self, streams: Sequence[Stream], default: str, routing: Sequence[RoutingRule] = ()) -> None:
        names = [stream.name for stream in streams]
        if not streams:
            raise ConfigError("GA4 secret lists no streams")
        if len(set(names)) != len(names):
            raise ConfigError("GA4 secret: stream names must be unique")
        self.streams = {stream.name: stream for stream in streams}
        if default not in self.streams:
            raise ConfigError(f"GA4 secret: default_stream {default!r} is not one of the streams {names}")
        unknown = sorted({rule.stream for rule in routing} - set(self.streams))
        if unknown:
            raise ConfigError(f"GA4 secret: routing names unknown streams {unknown}; streams are {names}")
        self.default = self.streams[default]
        self.routing = tuple(routing)

    @classmethod
    def from_secret(cls, secret: Mapping[str, Any]) -> StreamRouter:
        if "streams" not in secret:
            missing = [key for key in ("measurement_id", "api_secret") if not secret.get(key)]
            if missing:
                raise ConfigError(f"GA4 credentials lack {missing}")
            stream = Stream(DEFAULT_STREAM, str(secret["measurement_id"]), str(secret["api_secret"]))
            return cls([stream], DEFAULT_STREAM)
        raw_streams = secret["streams"]
        if not isinstance(raw_streams, list):
            raise ConfigError("GA4 secret: streams must be a list")
        if not raw_streams:
            raise ConfigError("GA4 secret lists no streams")
        streams: list[Stream] = []
        for index, raw in enumerate(raw_streams):
            if not isinstance(raw, dict):
                raise ConfigError(f"GA4 secret: streams[{index}] must be an object")
            missing = [key for key in ("name", "measurement_id", "api_secret") if not raw.get(key)]
            if missing:
                raise ConfigError(f"GA4 secret: streams[{index}] lacks {missing}")
            streams.append(Stream(str(raw["name"]), str(raw["measurement_id"]), str(raw["api_secret"])))
        default = secret.get("default_stream") or (streams[0].name if len(streams) == 1 else None)
        if not default:
            raise ConfigError("GA4 secret: default_stream is required with more than one stream")
        return cls(streams, str(default), _routing_rules(secret.get("routing")))

    def route(self, event: ConversionEvent) -> Stream:
        if not self.routing:
            return self.default
        document = event.to_dict()
        for rule in self.routing:
            if _event_field(event, document, rule.field) in rule.values:
                return self.streams[rule.stream]
        return self.default

    def __repr__(self) -> str:  # measurement ids only, never an api_secret
        shown = {name: stream.measurement_id for name, stream in self.streams.items()}
        return f"StreamRouter(streams={shown}, default={self.default.name!r}, rules={len(self.routing)})"


def _routing_rules(raw: Any) -> list[RoutingRule]:
    if raw is None:
        return []
    if isinstance(raw, dict):
        values = raw.get("values")
        if not raw.get("field") or not isinstance(values, dict):
            raise ConfigError(
                'GA4 secret: routing object needs "field" and a "values" map of value -> stream'
            )
        return [RoutingRule(str(raw["field"]), frozenset({str(k)}), str(v)) for k, v in values.items()]
    if not isinstance(raw, list):
        raise ConfigError("GA4 secret: routing must be a list of rules or a {field, values} object")
    found: list[RoutingRule] = []
    for index, rule in enumerate(raw):
        if not isinstance(rule, dict) or not rule.get("field") or not rule.get("stream"):
            raise ConfigError(f'GA4 secret: routing[{index}] needs "field", "stream" and "equals" or "in"')
        if "equals" in rule:
            values = [rule["equals"]]
        elif isinstance(rule.get("in"), list):
            values = rule["in"]
        else:
            raise ConfigError(f'GA4 secret: routing[{index}] needs "equals" (a value) or "in" (a list)')
        found.append(RoutingRule(str(rule["field"]), frozenset(str(v) for v in values), str(rule["stream"])))
    return found


def _event_field(event: ConversionEvent, document: Mapping[str, Any], path: str) -> str | None:
    if path == "site_host":
        url = event.context.event_source_url
        try:
            return (urlsplit(url).hostname or None) if url else None
        except ValueError:
            return None
    node: Any = document
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, str) else (str(node) if isinstance(node, int | float) else None)


# -- validation --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule, named like a validation-server message. `detail` never holds payload values."""

    field_path: str
    code: str  # VALUE_INVALID, VALUE_REQUIRED, NAME_INVALID, NAME_RESERVED, VALUE_OUT_OF_BOUNDS, ...
    detail: str

    def __str__(self) -> str:
        return f"{self.field_path}: {self.code} ({self.detail})"


_TOP_LEVEL_KEYS = frozenset(
    {
        "client_id",
        "user_id",
        "timestamp_micros",
        "user_properties",
        "user_data",
        "consent",
        "user_location",
        "ip_override",
        "device",
        "user_agent",
        "validation_behavior",
        "events",
    }
)
_EVENT_KEYS = frozenset({"name", "params", "timestamp_micros"})
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_COUNTRY = re.compile(r"[A-Z]{2}")
_REGION = re.compile(r"[A-Z]{2}-[A-Z0-9]{1,3}")
_M49 = re.compile(r"[0-9]{3}")
_CURRENCY = re.compile(r"[A-Z]{3}")


def encode_body(body: Mapping[str, Any]) -> bytes:
    """The exact bytes we POST, so the size we check is the size we send."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def _unsendable(node: Any, path: str) -> Iterator[Violation]:
    """Values JSON/UTF-8 cannot carry: non-finite numbers and lone surrogates (bad provider data)."""
    if isinstance(node, float) and not math.isfinite(node):
        yield Violation(path or "body", "VALUE_INVALID", "not a finite number")
    elif isinstance(node, str):
        try:
            node.encode("utf-8")
        except UnicodeEncodeError:
            yield Violation(path or "body", "VALUE_INVALID", "text that is not valid Unicode")
    elif isinstance(node, dict):
        for key, value in node.items():
            child = f"{path}.{key}" if path else str(key)
            try:
                str(key).encode("utf-8")
            except UnicodeEncodeError:
                yield Violation(path or "body", "NAME_INVALID", "a name that is not valid Unicode")
                continue
            yield from _unsendable(value, child)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _unsendable(value, f"{path}[{index}]")


def validate_body(
    body: Mapping[str, Any], *, now: datetime, ga4_rules: Ga4Rules | None = None
) -> list[Violation]:
    """Every documented MP rule the request body breaks (empty list: Google would accept it)."""
    r = ga4_rules or rules()
    found: list[Violation] = []
    for key in body:
        if key not in _TOP_LEVEL_KEYS:
            found.append(Violation(str(key), "NAME_INVALID", "not a Measurement Protocol field"))
    client_id = body.get("client_id")
    if client_id is None or client_id == "":
        found.append(Violation("client_id", "VALUE_REQUIRED", "a web stream needs the gtag client id"))
    elif not isinstance(client_id, str) or not r.client_id_pattern.fullmatch(client_id):
        found.append(
            Violation("client_id", "VALUE_INVALID", "must be two positive numbers joined by a period")
        )
    user_id = body.get("user_id")
    if "user_id" in body:
        if not isinstance(user_id, str) or not user_id:
            found.append(Violation("user_id", "VALUE_INVALID", "must be a non-empty string"))
        elif len(user_id) > r.max_user_id_length:
            found.append(
                Violation(
                    "user_id",
                    "VALUE_OUT_OF_BOUNDS",
                    f"{len(user_id)} characters; at most {r.max_user_id_length}",
                )
            )
    if "timestamp_micros" in body:
        found.extend(_timestamp_violations("timestamp_micros", body["timestamp_micros"], now, r))
    found.extend(_consent_violations(body.get("consent")))
    found.extend(_user_property_violations(body.get("user_properties"), r))
    if "user_data" in body:
        found.extend(_user_data_violations(body["user_data"], r))
        if not body.get("user_id"):
            found.append(Violation("user_id", "VALUE_REQUIRED", "user_id is required when user_data is sent"))
    found.extend(_object_violations("user_location", body.get("user_location"), r.user_location_fields))
    location = body.get("user_location")
    if isinstance(location, dict):
        for key, pattern, rule in (
            ("country_id", _COUNTRY, "ISO 3166-1 alpha-2, e.g. US"),
            ("region_id", _REGION, "ISO 3166-2, e.g. US-CA"),
            ("subcontinent_id", _M49, "UN M49, e.g. 021"),
            ("continent_id", _M49, "UN M49, e.g. 019"),
        ):
            value = location.get(key)
            if value is not None and not (isinstance(value, str) and pattern.fullmatch(value)):
                found.append(Violation(f"user_location.{key}", "VALUE_INVALID", f"must be {rule}"))
    if "ip_override" in body and not _is_ip(body["ip_override"]):
        found.append(Violation("ip_override", "VALUE_INVALID", "must be an IPv4 or IPv6 address"))
    found.extend(_object_violations("device", body.get("device"), r.device_fields))
    device = body.get("device")
    if isinstance(device, dict) and "category" in device and device["category"] not in r.device_categories:
        categories = ", ".join(sorted(r.device_categories))
        found.append(Violation("device.category", "VALUE_INVALID", f"must be one of {categories}"))
    if "user_agent" in body and not isinstance(body["user_agent"], str):
        found.append(Violation("user_agent", "VALUE_INVALID", "must be a string"))
    if body.get("validation_behavior", "RELAXED") not in ("RELAXED", ENFORCE_RECOMMENDATIONS):
        found.append(
            Violation("validation_behavior", "VALUE_INVALID", "must be RELAXED or ENFORCE_RECOMMENDATIONS")
        )
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
    unsendable = list(_unsendable(dict(body), ""))
    found.extend(unsendable)
    if not unsendable:
        size = len(encode_body(body))
        if size >= r.max_body_bytes_exclusive:
            found.append(
                Violation(
                    "body", "VALUE_OUT_OF_BOUNDS", f"{size} bytes; must be under {r.max_body_bytes_exclusive}"
                )
            )
    return found


def _is_ip(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _object_violations(path: str, value: Any, allowed: frozenset[str]) -> list[Violation]:
    if value is None:
        return []
    if not isinstance(value, dict):
        return [Violation(path, "VALUE_INVALID", "must be an object")]
    found = []
    for key, item in value.items():
        if key not in allowed:
            found.append(Violation(f"{path}.{key}", "NAME_INVALID", f"not a field of {path}"))
        elif not isinstance(item, str) or not item:
            found.append(Violation(f"{path}.{key}", "VALUE_INVALID", "must be a non-empty string"))
    return found


def _consent_violations(consent: Any) -> list[Violation]:
    if consent is None:
        return []
    if not isinstance(consent, dict):
        return [Violation("consent", "VALUE_INVALID", "must be an object")]
    found = []
    for key, value in consent.items():
        if key not in ("ad_user_data", "ad_personalization"):
            found.append(Violation(f"consent.{key}", "NAME_INVALID", "unknown consent field"))
        elif value not in ("GRANTED", "DENIED"):
            found.append(Violation(f"consent.{key}", "VALUE_INVALID", "must be GRANTED or DENIED"))
    return found


def _user_property_violations(properties: Any, r: Ga4Rules) -> list[Violation]:
    if properties is None:
        return []
    if not isinstance(properties, dict):
        return [Violation("user_properties", "VALUE_INVALID", "must be an object")]
    found: list[Violation] = []
    if len(properties) > r.max_user_properties:
        found.append(
            Violation(
                "user_properties",
                "EXCEEDED_MAX_ENTITIES",
                f"{len(properties)} user properties; at most {r.max_user_properties}",
            )
        )
    for name, holder in properties.items():
        path = f"user_properties.{name}"
        if name in r.reserved_user_property_names or name.startswith(r.reserved_user_property_prefixes):
            prefixes = ", ".join(r.reserved_user_property_prefixes)
            found.append(
                Violation(path, "NAME_RESERVED", f"reserved user property name or prefix ({prefixes})")
            )
        else:
            found.extend(_name_violations(path, name, r.max_user_property_name_length, r))
        value = holder.get("value") if isinstance(holder, dict) else None
        if isinstance(value, str):
            if len(value) > r.max_user_property_value_length:
                limit = r.max_user_property_value_length
                found.append(
                    Violation(
                        f"{path}.value", "VALUE_OUT_OF_BOUNDS", f"{len(value)} characters; at most {limit}"
                    )
                )
        elif isinstance(value, bool) or not isinstance(value, int | float):
            found.append(Violation(f"{path}.value", "VALUE_INVALID", "must be a string or a number"))
    return found


def _user_data_violations(user_data: Any, r: Ga4Rules) -> list[Violation]:
    if not isinstance(user_data, dict):
        return [Violation("user_data", "VALUE_INVALID", "must be an object")]
    found: list[Violation] = []
    for key, value in user_data.items():
        path = f"user_data.{key}"
        if key not in r.user_data_limits:
            found.append(Violation(path, "NAME_INVALID", "not a user_data field"))
            continue
        entries = value if isinstance(value, list) else [value]
        if len(entries) > r.user_data_limits[key]:
            found.append(
                Violation(
                    path, "EXCEEDED_MAX_ENTITIES", f"{len(entries)} values; at most {r.user_data_limits[key]}"
                )
            )
        for index, entry in enumerate(entries):
            entry_path = f"{path}[{index}]" if isinstance(value, list) else path
            if key == "address":
                found.extend(_address_violations(entry_path, entry, r))
            elif not (isinstance(entry, str) and _SHA256_HEX.fullmatch(entry)):
                found.append(
                    Violation(entry_path, "VALUE_INVALID", "must be a lower-case SHA-256 hex digest")
                )
    return found


def _address_violations(path: str, address: Any, r: Ga4Rules) -> list[Violation]:
    found = _object_violations(path, address, r.user_data_address_fields)
    if isinstance(address, dict):
        for key, value in address.items():
            if key.startswith("sha256_") and isinstance(value, str) and not _SHA256_HEX.fullmatch(value):
                found.append(
                    Violation(f"{path}.{key}", "VALUE_INVALID", "must be a lower-case SHA-256 hex digest")
                )
        country = address.get("country")
        if isinstance(country, str) and not _COUNTRY.fullmatch(country):
            found.append(Violation(f"{path}.country", "VALUE_INVALID", "must be ISO 3166-1 alpha-2"))
    return found


def _timestamp_violations(path: str, value: Any, now: datetime, r: Ga4Rules) -> list[Violation]:
    if isinstance(value, bool) or not isinstance(value, int):
        return [Violation(path, "VALUE_INVALID", "must be an integer count of microseconds since the epoch")]
    hours = int(r.max_backdate.total_seconds() // 3600)
    now_micros = timestamp_micros(now)
    if value < now_micros - r.max_backdate // timedelta(microseconds=1):
        return [
            Violation(
                path,
                "VALUE_OUT_OF_BOUNDS",
                f"older than {hours} h: GA4 would re-stamp it to {hours} h ago or drop it; too late to send",
            )
        ]
    if value > now_micros + r.future_tolerance // timedelta(microseconds=1):
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


def _value_violations(path: str, value: Any, r: Ga4Rules, *, numeric: bool = False) -> list[Violation]:
    if isinstance(value, str) and not numeric:
        if len(value) > r.max_param_value_length:
            limit = r.max_param_value_length
            return [Violation(path, "VALUE_OUT_OF_BOUNDS", f"{len(value)} characters; at most {limit}")]
        return []
    if isinstance(value, bool) or not isinstance(value, int | float):
        return [
            Violation(
                path, "VALUE_INVALID", "must be a number" if numeric else "must be a string or a number"
            )
        ]
    return []  # non-finite numbers are reported once, by _unsendable


def _event_violations(path: str, event: Any, now: datetime, r: Ga4Rules) -> list[Violation]:
    if not isinstance(event, dict):
        return [Violation(path, "VALUE_INVALID", "must be an object")]
    found: list[Violation] = []
    for key in event:
        if key not in _EVENT_KEYS:
            found.append(Violation(f"{path}.{key}", "NAME_INVALID", "not an event field"))
    name = event.get("name")
    name_problems = _name_violations(f"{path}.name", name, r.max_event_name_length, r)
    found.extend(name_problems)
    if not name_problems and name in r.reserved_event_names:
        found.append(
            Violation(f"{path}.name", "NAME_RESERVED", "reserved event name; map it to another name")
        )
    elif not name_problems and name.startswith(r.reserved_event_name_prefixes):
        found.append(
            Violation(
                f"{path}.name",
                "NAME_RESERVED",
                "reserved for app-store events; name subscriptions purchase or e.g. subscription_renewed",
            )
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
            found.extend(_value_violations(param_path, value, r, numeric=key in r.numeric_params))
    if params.get("value") is not None and not params.get("currency"):
        found.append(
            Violation(f"{path}.params.currency", "VALUE_REQUIRED", "currency is required when value is set")
        )
    currency = params.get("currency")
    if currency is not None and not (isinstance(currency, str) and _CURRENCY.fullmatch(currency)):
        found.append(
            Violation(f"{path}.params.currency", "VALUE_INVALID", "must be an ISO 4217 code, e.g. USD")
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
        custom = [key for key in item if key not in r.standard_item_params]
        if len(custom) > r.max_item_custom_params:
            found.append(
                Violation(
                    item_path,
                    "EXCEEDED_MAX_ENTITIES",
                    f"{len(custom)} custom item parameters; at most {r.max_item_custom_params}",
                )
            )
        for key, value in item.items():
            found.extend(_param_name_violations(f"{item_path}.{key}", key, r))
            numeric = key in r.numeric_item_params
            found.extend(_value_violations(f"{item_path}.{key}", value, r, numeric=numeric))
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
    if not match or not match.group(1).isascii():
        return None
    return int(match.group(1)) or None


def timestamp_micros(moment: datetime) -> int:
    if moment.tzinfo is None:  # the model promises UTC; a naive time is read as UTC, never crashes
        moment = moment.replace(tzinfo=UTC)
    # Integer arithmetic: float seconds would lose microseconds for current dates.
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _number(amount: Decimal, *, refund: bool = False) -> float:
    # Non-finite amounts become NaN here and are rejected by validation, never sent.
    if not amount.is_finite():
        return math.nan
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
        mapped["price"] = _number(item.price)
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


# -- user-provided data (Google's normalization for Enhanced Conversions / MP user_data) ----------------
def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _letters_only(text: str) -> str:
    """Remove digits and symbols, lower-case, trim (names, city, region)."""
    kept = "".join(ch for ch in text if ch.isalpha() or ch.isspace())
    return " ".join(kept.split()).lower()


def normalize_email(raw: str | None) -> str | None:
    """Lower-case, no spaces, no dots before @ for gmail.com / googlemail.com; None if not an address."""
    if not raw:
        return None
    email = "".join(raw.split()).lower()
    local, at, domain = email.rpartition("@")
    if not at or not local or "." not in domain or domain.startswith(".") or domain.endswith("."):
        return None
    if domain in ("gmail.com", "googlemail.com"):
        local = local.replace(".", "")
        if not local:
            return None
    return f"{local}@{domain}"


def normalize_phone(raw: str | None, country: str | None) -> str | None:
    """E.164 with a leading + (8..15 digits); a national number needs a known billing country."""
    if not raw:
        return None
    text = raw.strip()
    digits = "".join(ch for ch in text if ch.isascii() and ch.isdigit())
    if text.startswith("+"):
        number = digits
    elif digits.startswith("00"):
        number = digits[2:]
    else:
        codes, keeps_zero = _calling_codes()
        code = codes.get((country or "").strip().upper())
        if code is None or not digits:
            return None  # no country code and no way to know it: never guess
        if digits.startswith("0"):
            national = digits if country and country.upper() in keeps_zero else digits.lstrip("0")
            number = code + national
        elif digits.startswith(code) and len(digits) >= 11:
            number = digits  # already international, written without the +
        else:
            number = code + digits
    if not 8 <= len(number) <= 15 or number.startswith("0"):
        return None
    return f"+{number}"


def _address(person: Person) -> dict[str, str]:
    address: dict[str, str] = {}
    for key, raw, hashed in (
        ("sha256_first_name", person.first_name, True),
        ("sha256_last_name", person.last_name, True),
        ("city", person.city, False),
        ("region", person.state, False),
    ):
        text = _letters_only(raw) if raw else ""
        if text:
            address[key] = _sha256(text) if hashed else text
    if person.street:
        street = " ".join("".join(ch for ch in person.street if ch.isalnum() or ch.isspace()).split()).lower()
        if street:
            address["sha256_street"] = _sha256(street)
    if person.zip:
        postal = person.zip.replace(".", "").replace("~", "").strip()
        if postal:
            address["postal_code"] = postal
    country = _country(person.country)
    if country:
        address["country"] = country
    return address


def _country(raw: str | None) -> str | None:
    country = (raw or "").strip().upper()
    return country if _COUNTRY.fullmatch(country) else None


def user_data(person: Person) -> tuple[dict[str, Any], tuple[str, ...]]:
    """GA4 user_data from the raw person, and reason codes of values left out as unusable."""
    dropped: list[str] = []
    data: dict[str, Any] = {}
    email = normalize_email(person.email)
    if person.email and email is None:
        dropped.append("ga4_invalid_email")
    if email:
        data["sha256_email_address"] = [_sha256(email)]
    phone = normalize_phone(person.phone, person.country)
    if person.phone and phone is None:
        dropped.append("ga4_phone_not_e164")
    if phone:
        data["sha256_phone_number"] = [_sha256(phone)]
    address = _address(person)
    if address:
        data["address"] = [address]
    return data, tuple(dropped)


def _location_and_device(event: ConversionEvent, r: Ga4Rules) -> tuple[dict[str, Any], tuple[str, ...]]:
    """ip_override / user_location, device and user_agent; malformed values are dropped, not fatal."""
    body: dict[str, Any] = {}
    dropped: list[str] = []
    context = event.context
    if context.client_ip:
        ip = context.client_ip.strip()
        if _is_ip(ip):
            body["ip_override"] = ip  # the browser's address: GA4 derives the geo of the purchase from it
        else:
            dropped.append("ga4_invalid_ip")
    if "ip_override" not in body:
        # user_location would override ip_override, so it is only sent without one. Billing country and
        # region only: coarse, and the city is left out as it can identify a person in a small place.
        country = _country(event.person.country)
        if country:
            location = {"country_id": country}
            state = (event.person.state or "").strip().upper()
            if re.fullmatch(r"[A-Z0-9]{1,3}", state):
                location["region_id"] = f"{country}-{state}"
            body["user_location"] = location
    device: dict[str, str] = {}
    if context.device_category:
        category = context.device_category.strip()
        category = "smart TV" if category.lower() in ("smart tv", "smart_tv", "smarttv") else category.lower()
        if category in r.device_categories:
            device["category"] = category
        else:
            dropped.append("ga4_invalid_device_category")
    if context.device_language:
        language = context.device_language.strip()
        if re.fullmatch(r"[A-Za-z]{2}(-[A-Za-z0-9]{2,8})?", language):
            device["language"] = language
        else:
            dropped.append("ga4_invalid_device_language")
    if context.screen_resolution:
        resolution = context.screen_resolution.strip().lower()
        if re.fullmatch(r"[1-9][0-9]{0,5}x[1-9][0-9]{0,5}", resolution):
            device["screen_resolution"] = resolution
        else:
            dropped.append("ga4_invalid_screen_resolution")
    if device:
        body["device"] = device
    if context.client_user_agent and context.client_user_agent.strip():
        body["user_agent"] = context.client_user_agent.strip()
    return body, tuple(dropped)


def derive_client_id(customer_key: str, salt: str) -> str:
    """A stable, pseudonymous gtag-shaped client id ("digits.digits") for a customer id.

    HMAC-SHA256 keyed by `salt`: the same customer always gets the same id, and the id reveals
    nothing about the customer id (which may itself be an email when a merchant uses one).
    """
    digest = hmac.new(
        salt.encode("utf-8", "surrogatepass"), customer_key.encode("utf-8", "surrogatepass"), hashlib.sha256
    ).digest()
    first = int.from_bytes(digest[:4], "big") % 2_147_483_647 + 1
    second = int.from_bytes(digest[4:8], "big") % 2_000_000_000 + 1
    return f"{first}.{second}"


def build_request(
    event: ConversionEvent,
    event_name: str,
    *,
    client_id: str | None = None,
    include_user_data: bool = False,
    ga4_rules: Ga4Rules | None = None,
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """A complete single-event MP request body before validation, and the identifiers left out."""
    r = ga4_rules or rules()
    params = mapped_params(event)
    for key, value in event.properties.items():
        params.setdefault(key, value)  # a colliding property is rejected by prepare(), never sent
    body: dict[str, Any] = {}
    dropped: list[str] = []
    chosen_client_id = client_id if client_id is not None else event.context.ga_client_id
    if chosen_client_id is not None:
        body["client_id"] = chosen_client_id
    if event.context.user_id:
        body["user_id"] = event.context.user_id
    body["timestamp_micros"] = timestamp_micros(event.occurred_at)
    if event.user_properties:
        body["user_properties"] = {name: {"value": value} for name, value in event.user_properties.items()}
    consent = _consent(event.consent)
    if consent:
        body["consent"] = consent
    if include_user_data and event.consent.ad_user_data is not False:
        data, data_dropped = user_data(event.person)
        dropped.extend(data_dropped)
        if data and event.context.user_id:
            body["user_data"] = data
        elif data:
            dropped.append("ga4_user_data_without_user_id")  # Google requires user_id with user_data
    extra, extra_dropped = _location_and_device(event, r)
    body.update(extra)
    dropped.extend(extra_dropped)
    body["events"] = [{"name": event_name, "params": params}]
    return body, tuple(dropped)


def map_event(event: ConversionEvent, event_name: str) -> dict[str, Any]:
    """A single-event MP request body with the event's own client id and no user_data."""
    return build_request(event, event_name)[0]


_USER_LEVEL_EXCLUDED = ("events", "timestamp_micros", "validation_behavior")


def group_key(body: Mapping[str, Any], stream: str = DEFAULT_STREAM, debug: bool = False) -> str:
    """Same stream, same endpoint, same user-level fields -> same key. Hashed so it is safe to log.

    Everything but the events is per request in GA4 (client_id, user_id, consent, user_properties,
    user_data, location, device), so only bodies that agree on all of it may share one.
    """
    identity = {key: value for key, value in body.items() if key not in _USER_LEVEL_EXCLUDED}
    encoded = json.dumps(identity, sort_keys=True, ensure_ascii=True, default=str).encode()
    digest = hashlib.sha256(encoded).hexdigest()
    return f"ga4:{stream}:{'debug' if debug else 'collect'}:{digest[:32]}"


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
ShadowReport = Callable[[str, list[tuple[str, str]]], None]


def emit_shadow_metric(stream: str, messages: list[tuple[str, str]]) -> None:
    """Default shadow-check sink: a metric, and a warning naming field paths and codes only."""
    from aws_lambda_powertools.metrics import MetricUnit

    from conversion_relay.observability import logger, metrics

    if messages:
        metrics.add_metric("Ga4ShadowCheckFailed", MetricUnit.Count, 1)
        logger.warning(
            "GA4 validation server flagged a request that production accepted",
            extra={
                "stream": stream,
                "validation": [f"{path}: {code}" for path, code in messages[:_MAX_REASONS]],
            },
        )
    else:
        metrics.add_metric("Ga4ShadowCheckPassed", MetricUnit.Count, 1)


class Ga4Destination:
    name: ClassVar[str] = "ga4"

    def __init__(
        self,
        credentials: Mapping[str, Any],
        session: requests.Session,
        base_url: str = DEFAULT_BASE_URL,
        *,
        options: Ga4Options | None = None,
        validate_with_debug_endpoint: bool = False,
        clock: Callable[[], datetime] | None = None,
        ga4_rules: Ga4Rules | None = None,
        sample: Callable[[], float] | None = None,
        on_shadow_result: ShadowReport | None = None,
    ) -> None:
        """`credentials` is the GA4 secret (one stream or several, see StreamRouter).

        validate_with_debug_endpoint=True is the same as options.debug_mode="all".
        """
        self.router = StreamRouter.from_secret(credentials)
        if not base_url.startswith(("https://", "http://")):
            raise ConfigError("GA4_BASE_URL must start with https:// (or http:// for a local fake)")
        self.options = options or Ga4Options()
        if validate_with_debug_endpoint:
            self.options = dataclasses.replace(self.options, debug_mode="all")
        self.measurement_id = self.router.default.measurement_id
        self._session = session
        self.base_url = base_url.rstrip("/")
        self._clock = clock or (lambda: datetime.now(UTC))
        base_rules = ga4_rules or rules()
        self.rules = (
            base_rules
            if base_rules.max_param_value_length == self.options.max_param_value_length
            else dataclasses.replace(base_rules, max_param_value_length=self.options.max_param_value_length)
        )
        salt = credentials.get("client_id_salt")
        self._client_id_salt = str(salt) if salt else None
        self._sample = sample or random.random
        self._on_shadow_result = on_shadow_result or emit_shadow_metric

    @property
    def validate_with_debug_endpoint(self) -> bool:
        return self.options.debug_mode == "all"

    def __repr__(self) -> str:  # never show an api_secret or the salt
        return (
            f"Ga4Destination(router={self.router!r}, base_url={self.base_url!r}, "
            f"debug_mode={self.options.debug_mode!r}, client_id_policy={self.options.client_id_policy!r})"
        )

    @classmethod
    def from_environment(cls, session: requests.Session) -> Self:
        secret = secrets.get_secret("ga4")
        if "streams" not in secret:
            secrets.require(secret, "ga4", "measurement_id", "api_secret")
        return cls(
            secret, session, os.environ.get("GA4_BASE_URL") or DEFAULT_BASE_URL, options=Ga4Options.from_env()
        )

    def uses_debug_endpoint(self, event: ConversionEvent) -> bool:
        mode = self.options.debug_mode
        return mode == "all" or (mode == "test_events" and not event.livemode)

    # -- prepare -------------------------------------------------------------------------------------
    def prepare(self, event: ConversionEvent) -> Prepared | Outcome:
        event_name = config.destination_event_name(self.name, event.name)
        if event_name is None:
            return Outcome.skip(
                f"event '{event.name}' is mapped to no GA4 event (event_names.ga4 in the mapping)"
            )
        stream = self.router.route(event)
        client_id, problem = self._client_id(event, stream)
        if problem is not None:
            return Outcome.reject(str(problem), error_code=problem.code)
        body, dropped = build_request(
            event,
            event_name,
            client_id=client_id,
            include_user_data=self.options.user_data,
            ga4_rules=self.rules,
        )
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
        key = group_key(body, stream.name, self.uses_debug_endpoint(event))
        return Prepared(event=event, payload=body, group_key=key, dropped_identifiers=dropped)

    def _client_id(self, event: ConversionEvent, stream: Stream) -> tuple[str | None, Violation | None]:
        """The client id to send, or why there is none. Never falls back to PII."""
        client_key = config.metadata_key("ga_client_id")
        user_id = event.context.user_id
        if user_id and "@" in user_id:
            # Google's policy forbids PII in user_id; an email there can get the property's data deleted.
            return None, Violation(
                "user_id",
                "VALUE_INVALID",
                f"looks like an email address; send an opaque customer id in metadata key "
                f"'{config.metadata_key('user_id')}'",
            )
        client_id = event.context.ga_client_id
        if not client_id:
            if self.options.client_id_policy == "derive":
                customer = user_id or event.person.external_id or event.context.customer_user_id
                if customer:
                    salt = self._client_id_salt or f"conversion-relay:{stream.measurement_id}"
                    return derive_client_id(customer, salt), None
                hint = "and no user_id or customer id to derive a pseudonymous one from; "
            else:
                hint = "GA4_CLIENT_ID_POLICY is reject; "
            return None, Violation(
                "client_id",
                "VALUE_REQUIRED",
                f"missing, {hint}pass the _ga client id in metadata key '{client_key}' at checkout",
            )
        if not self.rules.client_id_pattern.fullmatch(client_id):
            return None, Violation(
                "client_id",
                "VALUE_INVALID",
                f"must be two positive numbers joined by a period (the last two parts of the _ga cookie, "
                f"e.g. 1234567890.1700000000) in metadata key '{client_key}'",
            )
        return client_id, None

    # -- send ----------------------------------------------------------------------------------------
    def send(self, batch: Sequence[Prepared]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(batch)
        plan = self.plan_requests(batch)

        def send_one(indexes: list[int]) -> list[Outcome]:
            first = batch[indexes[0]].event
            return self._send_request(
                [batch[i].payload for i in indexes], self.router.route(first), self.uses_debug_endpoint(first)
            )

        # One request per user: a batch of distinct buyers would otherwise wait on each round trip in turn.
        if len(plan) > 1:
            with ThreadPoolExecutor(max_workers=min(SEND_CONCURRENCY, len(plan))) as pool:
                results_per_request = list(pool.map(send_one, plan))
        else:
            results_per_request = [send_one(indexes) for indexes in plan]
        for indexes, results in zip(plan, results_per_request, strict=True):
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

    def _post(self, stream: Stream, path: str, body: Mapping[str, Any]) -> requests.Response:
        # The api_secret travels in the query string by Google's design. Never log this URL, the
        # prepared request, the response's .url or a requests exception's message: all of them
        # embed it. Transport errors are classified by exception type only.
        return self._session.post(
            self.base_url + path,
            params={"measurement_id": stream.measurement_id, "api_secret": stream.api_secret},
            data=encode_body(body),
            headers={"Content-Type": "application/json"},
            timeout=http.TIMEOUT,
            allow_redirects=False,
        )

    def _send_request(
        self, payloads: Sequence[Mapping[str, Any]], stream: Stream, debug: bool
    ) -> list[Outcome]:
        body = merge_bodies(payloads)
        if debug:
            body["validation_behavior"] = ENFORCE_RECOMMENDATIONS  # Google's advice when validating
        try:
            response = self._post(stream, DEBUG_COLLECT_PATH if debug else COLLECT_PATH, body)
        except requests.RequestException as error:
            return [classify_transport_error(error)] * len(payloads)
        if debug and response.status_code == 200:
            return self._debug_outcomes(response, len(payloads))
        outcome = classify_response(response)
        if outcome.status is Status.DELIVERED and self.options.shadow_sample_rate > 0:
            self._shadow_check(stream, body)
        return [outcome] * len(payloads)

    def _shadow_check(self, stream: Stream, body: dict[str, Any]) -> None:
        """Re-post a delivered request to the validation server for a metric; never changes an outcome."""
        if self._sample() >= self.options.shadow_sample_rate:
            return
        try:
            response = self._post(
                stream, DEBUG_COLLECT_PATH, {**body, "validation_behavior": ENFORCE_RECOMMENDATIONS}
            )
            messages = response.json()["validationMessages"] if response.status_code == 200 else None
        except (requests.RequestException, ValueError, KeyError, TypeError):
            return  # the check is best effort; the event is already delivered
        if not isinstance(messages, list):
            return
        found = [
            (str(m.get("fieldPath", "")) or "request", str(m.get("validationCode", "VALUE_INVALID")))
            for m in messages
            if isinstance(m, dict)
        ]
        self._on_shadow_result(stream.name, found)

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
    return seconds if seconds >= 0 and math.isfinite(seconds) else None
