"""Meta Conversions API: map a canonical event to a server event, validate it, send batches, classify.

Mapping choices (the ones Meta leaves to the integrator):
  - event_name: `config.destination_event_name("meta", ...)`; refunds map to None by default (Meta has
    no standard refund event), so they are skipped unless MAPPING_OVERRIDES names a custom event for them
    (e.g. {"event_names": {"meta": {"refund": "Refund"}}}).
  - event_id: the canonical `event.event_id`, `<provider>:<canonical name>:<provider object id>` (Stripe:
    "stripe:purchase:cs_...", "stripe:subscription_start:in_...", "stripe:refund:re_..."). It is
    deterministic across provider retries, and a browser that knows the object id (the Checkout
    Session id on the success page) can compute it, so the Pixel's eventID deduplicates with it.
  - event_time: whole seconds of `occurred_at` (when the payment happened, not when we saw it).
  - action_source, first match wins (MetaOptions):
      1. `subscription_renewal` -> `renewal_action_source` ("system_generated": an auto-pay renewal is
         Meta's own example, and the browser context on the subscription belongs to the original
         checkout, not this charge); "" turns this rule off;
      2. `context.action_source` when the merchant states one (must be one of Meta's values);
      3. "app" when the event carries app data (extinfo);
      4. "website" when both event_source_url and client_user_agent are known (Meta requires both for
         website events, so a URL alone does not make it a website event we could deliver);
      5. `default_action_source` ("other").
  - user_data: SHA-256 of the person fields via `meta_normalize.hash_person` (SDK-identical, plus the
    documented extensions; invalid identifiers are dropped and reported in `Prepared.dropped_identifiers`,
    which the delivery routine counts as IdentifierDropped_<reason>), plus client_ip_address,
    client_user_agent, fbp, fbc, subscription_id, anon_id and madid raw, as Meta requires.
  - custom_data: value (float), currency (lower case, as the SDK sends it), order_id = transaction_id,
    content_ids / contents / content_type / num_items from the items, predicted_ltv, then
    `event.properties` under any key not already taken by a standard parameter.
  - opt_out from `consent.opt_out`; data_processing_options (+ country/state) from the consent section,
    else from `MetaOptions.limited_data_use`; "LDU" without a country/state gets 0 (Meta geolocates).
  - original_event_data for refunds and renewals (and any event whose `original` section is filled):
    the original conversion's Meta event name, order_id, event_id and event_time as far as known.
  - app_data (extinfo, tracking flags, ...) when the event carries app data.

Validation before sending, because Meta rejects a whole request for one bad event: event_time within
7 days in the past (62 for physical_store) and 60 s in the future; website events need event_source_url
and client_user_agent; app events need app_data with a 16-field extinfo and both tracking flags;
Purchase needs value and currency; user_data needs at least one key.

Pixels: the secret's top-level pixel_id / access_token is the default; `pixels` adds more, each with a
`when` rule over event attributes (EventFilter); the first that matches wins. Each pixel's events are
sent in their own requests.

Sending (Graph API): one POST per pixel and up to `max_events_per_request` (1,000) events to
{base_url}/{api_version}/{pixel_id}/events with a JSON body; the access token (and appsecret_proof when
the pixel has an app_secret) travels in the body, never in the URL (URLs end up in logs). When Meta
rejects a multi-event request with a parameter error (code 100), the request is bisected so only the
bad events are rejected and the good ones delivered exactly once. A request budget per send() bounds
that; events a spent budget leaves unresolved are retried, not rejected (they may be good).

Conversions API Gateway (secret `gateway`): POST {url}/capi/{pixel_id}/events with
{"accessKey", "data"}; 202 is success, anything else a failure. Mode "gateway_only" sends there only,
"both" sends to the gateway and the Graph API (the same event_id lets Meta deduplicate the copies), as
the Business SDK's sendToDestinationOnly false/true; `when` filters the events the gateway gets. When an
event has two routes, each route's success is recorded in the RouteLedger (`meta_graph#<event_id>`,
`meta_gateway#<event_id>`) the moment it happens, so a retry of the event resends only the route that
failed; the delivery routine's own `meta#<event_id>` is written once every route has delivered.

Classification keys on error.code (data/meta_errors.json): throttling and transient codes, is_transient
and HTTP 5xx retry (retry_after from X-Business-Use-Case-Usage estimated_time_to_regain_access); token
and permission codes reject with error_code `meta_auth_<code>` and the MetaAuthRejected metric for an
alarm; code 100 rejects with Meta's error_user_title/msg, which name the rule without echoing values
(its raw `message` is never copied into a reason).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any, ClassVar, Protocol, Self
from urllib.parse import urlsplit

import requests
from aws_lambda_powertools.metrics import MetricUnit

from conversion_relay import http
from conversion_relay.config import ConfigError, destination_event_name
from conversion_relay.destinations.base import Outcome, Prepared, Status, classify_transport_error
from conversion_relay.meta_normalize import Extensions, hash_person
from conversion_relay.model import (
    PURCHASE,
    REFUND,
    SUBSCRIPTION_RENEWAL,
    SUBSCRIPTION_START,
    ConversionEvent,
)
from conversion_relay.observability import logger, metrics
from conversion_relay.secrets import get_secret, require

DEFAULT_BASE_URL = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v25.0"
MAX_EVENTS_PER_REQUEST = 1000
MAX_EVENT_AGE_SECONDS = 7 * 24 * 3600
MAX_PHYSICAL_STORE_AGE_SECONDS = 62 * 24 * 3600
MAX_FUTURE_SECONDS = 60
EXTINFO_LENGTH = 16
# Extra requests one send() may spend isolating bad events; one bad event in 1,000 costs about 20.
DEFAULT_MAX_BISECT_REQUESTS = 200
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
USAGE_HEADER = "X-Business-Use-Case-Usage"
# custom_data keys we set; a custom property never overwrites one of them.
_STANDARD_CUSTOM_KEYS = frozenset(
    {"value", "currency", "order_id", "content_ids", "contents", "content_type", "num_items", "predicted_ltv"}
)
_NO_CUSTOMER_INFORMATION = (
    "user_data: no customer information (em, ph, external_id, fbp, fbc, client_ip_address...)"
)

# Routes an event can take; also the ledger names `meta_<route>` of the per-route delivery records.
GRAPH = "graph"
GATEWAY = "gateway"
ROUTES = (GRAPH, GATEWAY)
GATEWAY_MODES = ("both", "gateway_only")
TEST_EVENT_MODES = ("send", "test_event_code", "skip")
LIMITED_DATA_USE = {"off": None, "geolocate": (0, 0), "california": (1, 1000)}
_TEST_GROUP_SUFFIX = "|test"


# -- settings --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MetaOptions:
    """Non-secret behaviour, from the META_* environment variables the template sets."""

    default_action_source: str = "other"
    renewal_action_source: str = "system_generated"  # "" = renewals follow the other rules
    # Events from a provider's test mode (livemode false): "send" like live ones (with the secret's
    # test_event_code on every request if it has one), "test_event_code" (only they carry the pixel's
    # test_event_code, and they skip the gateway), or "skip".
    test_events: str = "send"
    default_phone_country_code: str = ""  # digits, e.g. "82"; "" = phones as the SDK normalizes them
    limited_data_use: str = "off"  # when the consent says nothing: off | geolocate | california

    def __post_init__(self) -> None:
        if self.default_action_source not in ACTION_SOURCES:
            raise ConfigError(f"META_DEFAULT_ACTION_SOURCE must be one of {sorted(ACTION_SOURCES)}")
        if self.renewal_action_source and self.renewal_action_source not in ACTION_SOURCES:
            raise ConfigError(f"META_RENEWAL_ACTION_SOURCE must be empty or one of {sorted(ACTION_SOURCES)}")
        if self.test_events not in TEST_EVENT_MODES:
            raise ConfigError(f"META_TEST_EVENTS must be one of {list(TEST_EVENT_MODES)}")
        if self.default_phone_country_code and not (
            self.default_phone_country_code.isdigit() and 1 <= len(self.default_phone_country_code) <= 3
        ):
            raise ConfigError("META_DEFAULT_PHONE_COUNTRY_CODE must be 1 to 3 digits without '+', e.g. 82")
        if self.limited_data_use not in LIMITED_DATA_USE:
            raise ConfigError(f"META_LIMITED_DATA_USE must be one of {list(LIMITED_DATA_USE)}")

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> MetaOptions:
        def setting(name: str, default: str) -> str:
            value = environ.get(name)
            return default if value is None else value.strip()

        return cls(
            default_action_source=setting("META_DEFAULT_ACTION_SOURCE", "other") or "other",
            renewal_action_source=setting("META_RENEWAL_ACTION_SOURCE", "system_generated"),
            test_events=setting("META_TEST_EVENTS", "send") or "send",
            default_phone_country_code=setting("META_DEFAULT_PHONE_COUNTRY_CODE", "").lstrip("+"),
            limited_data_use=setting("META_LIMITED_DATA_USE", "off") or "off",
        )


# Attributes an EventFilter can test. "property.<key>" tests event.properties[<key>].
FILTER_ATTRIBUTES = frozenset(
    {"event_name", "canonical_name", "action_source", "livemode", "provider", "currency", "host"}
)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """A rule from configuration: every named attribute must equal one of its listed values.

    {"event_name": ["Purchase", "Subscribe"], "livemode": true, "host": "shop-b.example.com"} matches a
    live Purchase or Subscribe from that host. Values compare case-insensitively; booleans as true/false.
    """

    conditions: tuple[tuple[str, frozenset[str]], ...]

    @classmethod
    def parse(cls, raw: Any, where: str) -> EventFilter:
        if not isinstance(raw, dict) or not raw:
            raise ConfigError(f"{where} must be a non-empty object of attribute -> value or list of values")
        conditions = []
        for attribute, wanted in raw.items():
            if attribute not in FILTER_ATTRIBUTES and not (
                isinstance(attribute, str) and attribute.startswith("property.") and len(attribute) > 9
            ):
                raise ConfigError(
                    f"{where}.{attribute}: unknown attribute; use one of {sorted(FILTER_ATTRIBUTES)} "
                    "or property.<key>"
                )
            values = wanted if isinstance(wanted, list) else [wanted]
            if not values or not all(isinstance(v, str | bool) for v in values):
                raise ConfigError(f"{where}.{attribute}: must be a string, a boolean or a list of them")
            conditions.append((attribute, frozenset(_filter_value(v) for v in values)))
        return cls(tuple(conditions))

    def matches(self, attributes: Mapping[str, str]) -> bool:
        return all(attributes.get(name, "") in allowed for name, allowed in self.conditions)


def _filter_value(value: str | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value.strip().casefold()


def event_attributes(event: ConversionEvent, server_event: Mapping[str, Any]) -> dict[str, str]:
    """What an EventFilter can see of one event (never person data)."""
    url = server_event.get("event_source_url") or ""
    attributes = {
        "event_name": str(server_event["event_name"]).casefold(),
        "canonical_name": event.name.casefold(),
        "action_source": str(server_event["action_source"]).casefold(),
        "livemode": "true" if event.livemode else "false",
        "provider": event.source.provider.casefold(),
        "currency": (event.currency or "").casefold(),
        "host": (urlsplit(url).hostname or "") if url else "",
    }
    for key, value in event.properties.items():
        attributes[f"property.{key}"] = str(value).strip().casefold()
    return attributes


@dataclass(frozen=True, slots=True)
class Pixel:
    name: str
    pixel_id: str
    access_token: str = field(repr=False)
    app_secret: str | None = field(default=None, repr=False)
    test_event_code: str | None = None
    when: EventFilter | None = None

    def auth(self) -> dict[str, str]:
        """Body parameters that authenticate a Graph request: the token, and its proof when configured."""
        params = {"access_token": self.access_token}
        if self.app_secret:
            # The SDK's appsecret_proof: hex HMAC-SHA256 of the token keyed with the app secret.
            params["appsecret_proof"] = hmac.new(
                self.app_secret.encode("utf-8"), self.access_token.encode("utf-8"), hashlib.sha256
            ).hexdigest()
        return params


@dataclass(frozen=True, slots=True)
class Gateway:
    url: str
    access_key: str = field(repr=False)
    mode: str = "both"
    when: EventFilter | None = None

    def events_url(self, pixel_id: str) -> str:
        return f"{self.url.rstrip('/')}/capi/{pixel_id}/events"


def _pixel(raw: Mapping[str, Any], where: str, name: str, inherited_token: str | None) -> Pixel:
    pixel_id = str(raw.get("pixel_id") or "").strip()
    if not pixel_id.isdigit():
        # It goes into the URL path; a pasted URL or name would silently hit another endpoint.
        raise ConfigError(f"secret for meta: {where}pixel_id must be the numeric pixel or dataset id")
    token = raw.get("access_token") or inherited_token
    if not token:
        raise ConfigError(f"secret for meta: {where}access_token is missing")
    return Pixel(
        name=name,
        pixel_id=pixel_id,
        access_token=str(token),
        app_secret=str(raw.get("app_secret") or "") or None,
        test_event_code=str(raw.get("test_event_code") or "") or None,
    )


def parse_pixels(credentials: Mapping[str, Any]) -> tuple[Pixel, ...]:
    """The routed pixels in rule order, then the default (the secret's top level) last."""
    require(dict(credentials), "meta", "pixel_id", "access_token")
    default = _pixel(credentials, "", "default", None)
    extra = credentials.get("pixels") or []
    if not isinstance(extra, list):
        raise ConfigError("secret for meta: pixels must be a list of {pixel_id, when, ...}")
    routed = []
    for index, raw in enumerate(extra):
        where = f"pixels[{index}]."
        if not isinstance(raw, dict):
            raise ConfigError(f"secret for meta: {where[:-1]} must be an object")
        pixel = _pixel(raw, where, str(raw.get("name") or f"pixels[{index}]"), default.access_token)
        if "when" not in raw:
            raise ConfigError(f"secret for meta: {where}when is required (the routing rule)")
        when = EventFilter.parse(raw["when"], f"secret for meta: {where}when")
        routed.append(replace(pixel, when=when))
    pixels = (*routed, default)
    by_id: dict[str, Pixel] = {}
    for pixel in pixels:
        first = by_id.setdefault(pixel.pixel_id, pixel)
        if (first.access_token, first.app_secret, first.test_event_code) != (
            pixel.access_token,
            pixel.app_secret,
            pixel.test_event_code,
        ):
            # Requests are grouped by pixel id; two entries for one pixel (two rules) must agree.
            raise ConfigError(
                f"secret for meta: {pixel.name} and {first.name} name pixel {pixel.pixel_id} with different "
                "credentials or test_event_code"
            )
    return pixels


def parse_gateway(credentials: Mapping[str, Any]) -> Gateway | None:
    raw = credentials.get("gateway")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError("secret for meta: gateway must be an object {url, access_key, mode, when}")
    url = str(raw.get("url") or "").strip()
    if not url.startswith(("https://", "http://")):
        raise ConfigError("secret for meta: gateway.url must be the gateway's https:// origin")
    if not raw.get("access_key"):
        raise ConfigError("secret for meta: gateway.access_key is missing")
    mode = str(raw.get("mode") or "both")
    if mode not in GATEWAY_MODES:
        raise ConfigError(f"secret for meta: gateway.mode must be one of {list(GATEWAY_MODES)}")
    when = EventFilter.parse(raw["when"], "secret for meta: gateway.when") if "when" in raw else None
    return Gateway(url=url, access_key=str(raw["access_key"]), mode=mode, when=when)


# -- per-route delivery records --------------------------------------------------------------------
class RouteLedger(Protocol):
    """Which events a route (graph / gateway) already delivered; only consulted for two-route events."""

    def delivered(self, route: str, event_ids: Iterable[str]) -> set[str]: ...

    def mark_delivered(self, route: str, event_ids: Iterable[str]) -> None: ...


class DynamoRouteLedger:
    """RouteLedger on the delivery ledger's table: keys `meta_graph#<event_id>`, `meta_gateway#<event_id>`."""

    def __init__(self, table_name: str, client_factory: Callable[[], Any] | None = None) -> None:
        self._table = table_name
        self._client_factory = client_factory
        self._ledgers: dict[str, Any] = {}

    def _ledger(self, route: str) -> Any:
        if route not in self._ledgers:
            from conversion_relay.ledger import Ledger  # boto3 only when a gateway runs in "both" mode

            if self._client_factory is None:
                import boto3

                self._client_factory = lambda: boto3.client("dynamodb")
            self._ledgers[route] = Ledger(self._client_factory(), self._table, f"meta_{route}")
        return self._ledgers[route]

    def delivered(self, route: str, event_ids: Iterable[str]) -> set[str]:
        result: set[str] = self._ledger(route).delivered(event_ids)
        return result

    def mark_delivered(self, route: str, event_ids: Iterable[str]) -> None:
        self._ledger(route).mark_delivered(event_ids)


# -- error families --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _ErrorFamilies:
    throttling: frozenset[int]
    transient: frozenset[int]
    auth: frozenset[int]
    parameter: frozenset[int]
    no_bisect_subcodes: frozenset[int]


@cache
def _error_families() -> _ErrorFamilies:
    raw = json.loads(resources.files("conversion_relay").joinpath("data/meta_errors.json").read_text("utf-8"))

    def codes(family: str) -> frozenset[int]:
        entry = raw[family]
        spans = (range(first, last + 1) for first, last in entry["ranges"])
        return frozenset(entry["codes"]).union(*spans)

    return _ErrorFamilies(
        throttling=codes("throttling"),
        transient=codes("transient"),
        auth=codes("auth"),
        parameter=codes("parameter"),
        no_bisect_subcodes=frozenset(raw["no_bisect_subcodes"]),
    )


@dataclass(frozen=True, slots=True)
class Classification:
    """The outcome for every event of one request, and whether bisecting the request could help."""

    outcome: Outcome
    bisectable: bool = False  # a parameter error that one event in the request may have caused


# -- the destination -------------------------------------------------------------------------------
class MetaDestination:
    name: ClassVar[str] = "meta"

    def __init__(
        self,
        credentials: Mapping[str, Any],
        session: requests.Session,
        base_url: str = DEFAULT_BASE_URL,
        *,
        api_version: str = DEFAULT_API_VERSION,
        clock: Callable[[], datetime] | None = None,
        max_events_per_request: int = MAX_EVENTS_PER_REQUEST,
        max_bisect_requests: int = DEFAULT_MAX_BISECT_REQUESTS,
        options: MetaOptions | None = None,
        route_ledger: RouteLedger | None = None,
        timeout: float | tuple[float, float] = http.TIMEOUT,
    ) -> None:
        if not base_url.startswith(("https://", "http://")):
            raise ConfigError("META_BASE_URL must start with https:// (or http:// for a local fake)")
        if not 1 <= max_events_per_request <= MAX_EVENTS_PER_REQUEST:
            raise ConfigError(f"META_MAX_EVENTS_PER_REQUEST must be 1..{MAX_EVENTS_PER_REQUEST}")
        self.options = options or MetaOptions()
        self.pixels = parse_pixels(credentials)
        self._pixels_by_id: dict[str, Pixel] = {}
        for pixel in self.pixels:
            self._pixels_by_id.setdefault(pixel.pixel_id, pixel)
        self.default_pixel = self.pixels[-1]
        self.gateway = parse_gateway(credentials)
        if self.options.test_events == "test_event_code":
            lacking = [pixel.name for pixel in self.pixels if not pixel.test_event_code]
            if lacking:
                raise ConfigError(
                    f"META_TEST_EVENTS=test_event_code needs a test_event_code for pixels {lacking} in the "
                    "meta secret"
                )
        if self.gateway is not None and self.gateway.mode == "both" and route_ledger is None:
            raise ConfigError("a gateway in mode 'both' needs the route ledger (IDEMPOTENCY_TABLE)")
        self.pixel_id = self.default_pixel.pixel_id
        self._session = session
        self._base = f"{base_url.rstrip('/')}/{api_version.strip('/')}"
        self.url = self.events_url(self.default_pixel)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._max_events = max_events_per_request
        self._max_bisect_requests = max_bisect_requests
        self._route_ledger = route_ledger
        self._timeout = timeout
        self._extensions = Extensions(
            default_phone_country_code=self.options.default_phone_country_code or None
        )

    def __repr__(self) -> str:  # never show a token or access key
        gateway = f", gateway={self.gateway.mode}" if self.gateway else ""
        pixels = len(self.pixels)
        return f"MetaDestination(pixel_id={self.pixel_id!r}, url={self.url!r}, pixels={pixels}{gateway})"

    def events_url(self, pixel: Pixel) -> str:
        return f"{self._base}/{pixel.pixel_id}/events"

    @classmethod
    def from_environment(cls, session: requests.Session, *, force_fetch: bool = False) -> Self:
        """Credentials from the `meta` secret; `force_fetch` skips the cache (e.g. after a meta_auth_190)."""
        secret = get_secret("meta", force_fetch=force_fetch)
        table = os.environ.get("IDEMPOTENCY_TABLE", "")
        return cls(
            secret,
            session,
            os.environ.get("META_BASE_URL") or DEFAULT_BASE_URL,
            api_version=os.environ.get("META_API_VERSION") or DEFAULT_API_VERSION,
            max_events_per_request=int(
                os.environ.get("META_MAX_EVENTS_PER_REQUEST") or MAX_EVENTS_PER_REQUEST
            ),
            options=MetaOptions.from_environment(),
            route_ledger=DynamoRouteLedger(table) if table else None,
        )

    # -- prepare ------------------------------------------------------------------------------------
    def prepare(self, event: ConversionEvent) -> Prepared | Outcome:
        event_name = destination_event_name(self.name, event.name)
        if event_name is None:
            if event.name == REFUND:
                return Outcome.skip(
                    "refund events are not sent to Meta by default (no standard refund event); set "
                    'MAPPING_OVERRIDES {"event_names": {"meta": {"refund": "<custom event name>"}}} to enable'
                )
            return Outcome.skip(f"{event.name} events map to no Meta event (event_names.meta in the mapping)")
        test_mode = not event.livemode
        if test_mode and self.options.test_events == "skip":
            return Outcome.skip("test-mode event (livemode false) and META_TEST_EVENTS is skip")

        action_source = self._action_source(event)
        if action_source not in ACTION_SOURCES:
            return Outcome.reject(
                f"action_source: not one of Meta's values {sorted(ACTION_SOURCES)}; "
                "fix the action_source metadata at checkout",
                error_code="meta_validation",
            )
        problem = self._check_time(event, action_source)
        if problem:
            return Outcome.reject(problem, error_code="meta_validation")

        hashed = hash_person(event.person, self._extensions)
        user_data: dict[str, Any] = dict(hashed.fields)
        context = event.context
        for key, value in (
            ("client_ip_address", context.client_ip),
            ("client_user_agent", context.client_user_agent),
            ("fbp", context.fbp),
            ("fbc", context.fbc),
            ("subscription_id", event.subscription_id),
            ("anon_id", event.app.anon_id),
            ("madid", event.app.madid),
        ):
            if value:
                user_data[key] = value

        server_event: dict[str, Any] = {
            "event_name": event_name,
            "event_time": int(event.occurred_at.timestamp()),
            "event_id": event.event_id,
            "action_source": action_source,
        }
        if context.event_source_url:
            server_event["event_source_url"] = context.event_source_url
        if context.referrer_url:
            server_event["referrer_url"] = context.referrer_url
        if event.consent.opt_out is not None:
            server_event["opt_out"] = event.consent.opt_out
        server_event["user_data"] = user_data
        custom_data = _custom_data(event)
        if custom_data:
            server_event["custom_data"] = custom_data
        server_event.update(self._data_processing_options(event))
        app_data = _app_data(event)
        if app_data:
            server_event["app_data"] = app_data
        original = _original_event_data(event)
        if original:
            server_event["original_event_data"] = original

        problem = _check_required(server_event, hashed.dropped)
        if problem:
            return Outcome.reject(problem, error_code="meta_validation")

        attributes = event_attributes(event, server_event)
        pixel = next(p for p in self.pixels if p.when is None or p.when.matches(attributes))
        with_test_code = test_mode and self.options.test_events == "test_event_code"
        prepared = Prepared(
            event,
            server_event,
            group_key=pixel.pixel_id + (_TEST_GROUP_SUFFIX if with_test_code else ""),
            dropped_identifiers=hashed.dropped,
        )
        if not self.routes(prepared):
            return Outcome.skip(
                "the gateway filter (gateway.when) excludes this event and mode is gateway_only"
            )
        return prepared

    def _action_source(self, event: ConversionEvent) -> str:
        context = event.context
        if event.name == SUBSCRIPTION_RENEWAL and self.options.renewal_action_source:
            return self.options.renewal_action_source
        if context.action_source:
            return context.action_source.strip().lower()
        if event.app.extinfo:
            return "app"
        if context.event_source_url and context.client_user_agent:
            return "website"
        return self.options.default_action_source

    def _check_time(self, event: ConversionEvent, action_source: str) -> str | None:
        age = (self._clock() - event.occurred_at).total_seconds()
        limit, label = (
            (MAX_PHYSICAL_STORE_AGE_SECONDS, "62-day limit for physical_store")
            if action_source == "physical_store"
            else (MAX_EVENT_AGE_SECONDS, "7-day limit")
        )
        if age > limit:
            return (
                f"event_time: {age / 3600:.0f} h old, beyond Meta's {label} "
                "(one such event makes Meta reject the whole request)"
            )
        if -age > MAX_FUTURE_SECONDS:
            return (
                f"event_time: {-age:.0f} s in the future, beyond the {MAX_FUTURE_SECONDS} s tolerance; "
                "check the provider timestamp and the clock"
            )
        return None

    def _data_processing_options(self, event: ConversionEvent) -> dict[str, Any]:
        consent = event.consent
        if consent.data_processing_options is not None:
            options = list(consent.data_processing_options)
            country, state = consent.data_processing_options_country, consent.data_processing_options_state
        else:
            location = LIMITED_DATA_USE[self.options.limited_data_use]
            if location is None:
                return {}
            options, (country, state) = ["LDU"], location
        result: dict[str, Any] = {"data_processing_options": options}
        if "LDU" in options:
            # Meta requires a country with LDU and a state when no IP is sent; 0 asks Meta to geolocate.
            result["data_processing_options_country"] = 0 if country is None else country
            result["data_processing_options_state"] = 0 if state is None else state
        else:
            if country is not None:
                result["data_processing_options_country"] = country
            if state is not None:
                result["data_processing_options_state"] = state
        return result

    def routes(self, prepared: Prepared) -> tuple[str, ...]:
        """Where this event goes: ("graph",), ("gateway",), both, or () when the gateway filter excludes
        it in gateway_only mode."""
        gateway = self.gateway
        if gateway is None:
            return (GRAPH,)
        wanted = gateway.when is None or gateway.when.matches(
            event_attributes(prepared.event, prepared.payload)
        )
        if prepared.group_key.endswith(_TEST_GROUP_SUFFIX):
            wanted = False  # test_event_code exists only on the Graph API; keep test events off the gateway
            if gateway.mode == "gateway_only":
                return ()
        if gateway.mode == "gateway_only":
            return (GATEWAY,) if wanted else ()
        return (GRAPH, GATEWAY) if wanted else (GRAPH,)

    # -- send ---------------------------------------------------------------------------------------
    def send(self, batch: Sequence[Prepared]) -> list[Outcome]:
        routes = [self.routes(prepared) for prepared in batch]
        by_route: list[dict[str, Outcome]] = [{} for _ in batch]
        already: list[set[str]] = [set() for _ in batch]
        final: dict[int, Outcome] = {}

        two_route = [i for i, r in enumerate(routes) if len(r) > 1]
        if two_route:
            try:
                assert self._route_ledger is not None
                for route in ROUTES:
                    done = self._route_ledger.delivered(route, (batch[i].event.event_id for i in two_route))
                    for i in two_route:
                        if batch[i].event.event_id in done:
                            already[i].add(route)
                            by_route[i][route] = Outcome.delivered()
            except Exception:
                logger.exception("Meta route ledger lookup failed")
                for i in two_route:
                    final[i] = Outcome.retry(
                        "Meta route ledger unavailable: cannot tell which route already delivered; retrying"
                    )

        for route, deliver in ((GRAPH, self._send_graph), (GATEWAY, self._send_gateway)):
            pending = [
                i
                for i in range(len(batch))
                if i not in final and route in routes[i] and route not in already[i]
            ]
            if pending:
                for i, outcome in zip(pending, deliver([batch[i] for i in pending]), strict=True):
                    by_route[i][route] = outcome
                self._record_routes(
                    batch,
                    route,
                    [i for i in pending if i in two_route and by_route[i][route].status is Status.DELIVERED],
                )

        auth_rejects = 0
        for i in range(len(batch)):
            if i in final:
                continue
            final[i] = _combine(routes[i], by_route[i], already[i])
            code = final[i].error_code or ""
            if code.startswith(("meta_auth_", "meta_gateway_auth_")):
                auth_rejects += 1
        if auth_rejects:
            metrics.add_metric("MetaAuthRejected", MetricUnit.Count, auth_rejects)
        return [final[i] for i in range(len(batch))]

    def _record_routes(self, batch: Sequence[Prepared], route: str, indices: list[int]) -> None:
        if not indices or self._route_ledger is None:
            return
        try:
            self._route_ledger.mark_delivered(route, [batch[i].event.event_id for i in indices])
        except Exception:
            # The route did deliver; a retry of the event's other route may now resend this one (Meta
            # deduplicates on event_id). Count it so it is visible.
            logger.exception("Meta route ledger write failed", extra={"route": route, "count": len(indices)})
            metrics.add_metric("MetaRouteLedgerWriteFailed", MetricUnit.Count, len(indices))

    def _groups(self, batch: Sequence[Prepared]) -> Iterable[tuple[Pixel, bool, list[int]]]:
        groups: dict[str, list[int]] = {}
        for index, prepared in enumerate(batch):
            groups.setdefault(prepared.group_key, []).append(index)
        for key, indices in groups.items():
            pixel = self._pixels_by_id.get(key.removesuffix(_TEST_GROUP_SUFFIX), self.default_pixel)
            for start in range(0, len(indices), self._max_events):
                yield pixel, key.endswith(_TEST_GROUP_SUFFIX), indices[start : start + self._max_events]

    def _send_graph(self, batch: Sequence[Prepared]) -> list[Outcome]:
        budget = [self._max_bisect_requests]  # shared by every request of this call
        outcomes: dict[int, Outcome] = {}
        for pixel, with_test_code, chunk in self._groups(batch):
            results = self._deliver(pixel, with_test_code, [batch[i].payload for i in chunk], budget)
            outcomes.update(zip(chunk, results, strict=True))
        return [outcomes[index] for index in range(len(batch))]

    def _deliver(
        self, pixel: Pixel, with_test_code: bool, payloads: list[dict[str, Any]], budget: list[int]
    ) -> list[Outcome]:
        """POST the events; on a per-event parameter error, split in halves and recurse."""
        answer = self._post(pixel, with_test_code, payloads)
        count = len(payloads)
        if not answer.bisectable or count == 1:
            return [answer.outcome] * count
        if budget[0] < 2:
            return [
                Outcome.retry(
                    f"{answer.outcome.reason} (batch of {count} not isolated: bisection budget of "
                    f"{self._max_bisect_requests} requests spent; retrying)",
                    http_status=answer.outcome.http_status,
                    error_code=answer.outcome.error_code,
                )
            ] * count
        budget[0] -= 2
        middle = count // 2
        return self._deliver(pixel, with_test_code, payloads[:middle], budget) + self._deliver(
            pixel, with_test_code, payloads[middle:], budget
        )

    def _post(self, pixel: Pixel, with_test_code: bool, payloads: list[dict[str, Any]]) -> Classification:
        body: dict[str, Any] = {"data": payloads, **pixel.auth()}
        send_code = with_test_code or self.options.test_events != "test_event_code"
        if pixel.test_event_code and send_code:
            body["test_event_code"] = pixel.test_event_code
        try:
            response = self._session.post(self.events_url(pixel), json=body, timeout=self._timeout)
        except requests.RequestException as error:
            return Classification(classify_transport_error(error))
        return classify_response(response.status_code, _json_or_none(response), response.headers)

    def _send_gateway(self, batch: Sequence[Prepared]) -> list[Outcome]:
        gateway = self.gateway
        assert gateway is not None
        outcomes: dict[int, Outcome] = {}
        for pixel, _, chunk in self._groups(batch):
            body = {"accessKey": gateway.access_key, "data": [batch[i].payload for i in chunk]}
            try:
                response = self._session.post(
                    gateway.events_url(pixel.pixel_id), json=body, timeout=self._timeout
                )
            except requests.RequestException as error:
                outcome = classify_transport_error(error)
            else:
                outcome = classify_gateway_response(response.status_code, response.headers)
            outcomes.update(dict.fromkeys(chunk, outcome))
        return [outcomes[index] for index in range(len(batch))]


_ROUTE_LABELS = {GRAPH: "Graph API", GATEWAY: "Conversions API Gateway"}


def _combine(routes: tuple[str, ...], by_route: Mapping[str, Outcome], already: set[str]) -> Outcome:
    """One event's outcome from its routes' outcomes; a single-route event keeps its route's outcome."""
    if len(routes) == 1:
        return by_route[routes[0]]
    outcomes = [(route, by_route[route]) for route in routes]
    failed = [(route, o) for route, o in outcomes if o.status is not Status.DELIVERED]
    if not failed:
        fresh = [o for route, o in outcomes if route not in already]
        return fresh[0] if fresh else Outcome.delivered()
    delivered = [_ROUTE_LABELS[route] for route, o in outcomes if o.status is Status.DELIVERED]
    note = f" ({', '.join(delivered)} already delivered: it will not be sent again)" if delivered else ""
    reason = "; ".join(f"{_ROUTE_LABELS[route]}: {o.reason}" for route, o in failed) + note
    retrying = [o for _, o in failed if o.status is Status.RETRY]
    first = retrying[0] if retrying else failed[0][1]
    waits = [o.retry_after_seconds for o in retrying if o.retry_after_seconds is not None]
    return Outcome(
        Status.RETRY if retrying else first.status,
        reason,
        http_status=first.http_status,
        error_code=first.error_code,
        retry_after_seconds=max(waits) if waits else None,
    )


def _custom_data(event: ConversionEvent) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if event.value is not None:
        data["value"] = float(event.value)
    if event.currency:
        data["currency"] = event.currency.lower()
    if event.transaction_id:
        data["order_id"] = event.transaction_id
    identified = [item for item in event.items if item.id]
    if identified:
        data["content_ids"] = [item.id for item in identified]
        contents = []
        for item in identified:
            content: dict[str, Any] = {"id": item.id, "quantity": item.quantity}
            if item.price is not None:
                content["item_price"] = float(item.price)
            for key, value in (("title", item.name), ("category", item.category), ("brand", item.brand)):
                if value:
                    content[key] = value
            contents.append(content)
        data["contents"] = contents
        data["content_type"] = "product"
    if event.items:
        data["num_items"] = sum(item.quantity for item in event.items)
    if event.predicted_ltv is not None:
        data["predicted_ltv"] = float(event.predicted_ltv)
    for key, value in event.properties.items():
        if key not in _STANDARD_CUSTOM_KEYS:
            data[key] = value
    return data


def _app_data(event: ConversionEvent) -> dict[str, Any]:
    app = event.app
    data: dict[str, Any] = {}
    for key, value in (
        ("advertiser_tracking_enabled", app.advertiser_tracking_enabled),
        ("application_tracking_enabled", app.application_tracking_enabled),
        ("extinfo", list(app.extinfo) if app.extinfo is not None else None),
        ("install_referrer", app.install_referrer),
        ("installer_package", app.installer_package),
        ("url_schemes", list(app.url_schemes) if app.url_schemes is not None else None),
    ):
        if value is not None:
            data[key] = value
    return data


# The conversion a delayed event refers to, when the event does not say: refunds undo a purchase,
# renewals continue a subscription start.
_ORIGINAL_NAME = {REFUND: PURCHASE, SUBSCRIPTION_RENEWAL: SUBSCRIPTION_START}


def _original_event_data(event: ConversionEvent) -> dict[str, Any]:
    original = event.original
    data: dict[str, Any] = {}
    if original.event_id:
        data["event_id"] = original.event_id
    # A refund's transaction (payment) is the purchase's order_id; a renewal's is its own invoice.
    order_id = original.transaction_id or (event.transaction_id if event.name == REFUND else None)
    if order_id:
        data["order_id"] = order_id
    if original.occurred_at:
        try:
            occurred = datetime.fromisoformat(original.occurred_at.replace("Z", "+00:00"))
        except ValueError:
            occurred = None
        if occurred is not None and occurred.tzinfo is not None:
            data["event_time"] = int(occurred.timestamp())
    if not data:
        return {}
    canonical = original.name or _ORIGINAL_NAME.get(event.name)
    meta_name = destination_event_name("meta", canonical) if canonical else None
    if meta_name:
        data["event_name"] = meta_name
    return data


def _check_required(server_event: dict[str, Any], dropped: tuple[str, ...]) -> str | None:
    user_data = server_event["user_data"]
    if server_event["action_source"] == "website":
        if not server_event.get("event_source_url"):
            return "event_source_url: required when action_source is website"
        if not user_data.get("client_user_agent"):
            return "user_data.client_user_agent: required when action_source is website"
    if server_event["action_source"] == "app":
        app_data = server_event.get("app_data", {})
        extinfo = app_data.get("extinfo")
        if not extinfo or len(extinfo) != EXTINFO_LENGTH or extinfo[0] not in ("a2", "i2"):
            return (
                f"app_data.extinfo: required when action_source is app, as {EXTINFO_LENGTH} values starting "
                "with a2 (Android) or i2 (iOS); empty strings for unknown ones"
            )
        for flag in ("advertiser_tracking_enabled", "application_tracking_enabled"):
            if flag not in app_data:
                return f"app_data.{flag}: required when action_source is app"
    if server_event["event_name"] == "Purchase":
        custom_data = server_event.get("custom_data", {})
        for key in ("value", "currency"):
            if key not in custom_data:
                return f"custom_data.{key}: required for Purchase"
    if not user_data:
        if dropped:
            return f"{_NO_CUSTOMER_INFORMATION}; dropped as invalid: {', '.join(dropped)}"
        return _NO_CUSTOMER_INFORMATION
    return None


def _retry_after_header(headers: Mapping[str, str]) -> float | None:
    raw = headers.get("Retry-After")
    try:
        seconds = float(raw) if raw is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and math.isfinite(seconds) and seconds > 0 else None


def classify_gateway_response(status: int, headers: Mapping[str, str]) -> Outcome:
    """The gateway answers 202 when it accepted the events (as the Business SDK checks); no per-event
    results. The body is never read into a reason: it may echo the events."""
    if status == 202:
        return Outcome.delivered(status)
    if status in (408, 425, 429) or status >= 500:
        return Outcome.retry(
            f"Conversions API Gateway answered HTTP {status}; retrying",
            http_status=status,
            error_code=f"meta_gateway_http_{status}",
            retry_after_seconds=_retry_after_header(headers),
        )
    if status in (401, 403):
        return Outcome.reject(
            f"Conversions API Gateway refused the access key (HTTP {status}): fix gateway.access_key in the "
            "meta secret, then redrive the DLQ",
            http_status=status,
            error_code=f"meta_gateway_auth_{status}",
        )
    return Outcome.reject(
        f"Conversions API Gateway answered HTTP {status}, expected 202: check gateway.url in the meta secret "
        "(it must be the gateway's origin; the relay appends /capi/<pixel_id>/events)",
        http_status=status,
        error_code=f"meta_gateway_http_{status}",
    )


# -- response classification ------------------------------------------------------------------------
def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The longest estimated_time_to_regain_access (minutes) in X-Business-Use-Case-Usage, in seconds."""
    raw = headers.get(USAGE_HEADER)
    if not raw:
        return None
    try:
        usage = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(usage, dict):
        return None
    minutes = 0.0
    for entry in (entry for group in usage.values() if isinstance(group, list) for entry in group):
        if isinstance(entry, dict):
            value = entry.get("estimated_time_to_regain_access")
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                minutes = max(minutes, float(value))
    return minutes * 60 if minutes > 0 else None


def _clip(text: Any, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def classify_response(status: int, body: Any, headers: Mapping[str, str]) -> Classification:
    """Delivered / retry / reject for one Graph API answer; classification keys on error.code."""
    if 200 <= status < 300:
        if isinstance(body, dict) and "events_received" in body:
            return Classification(Outcome.delivered(status))
        return Classification(
            Outcome.retry(
                f"Meta answered HTTP {status} without events_received; retrying (event_id makes a repeat "
                "deduplicable)",
                http_status=status,
                error_code="meta_unexpected_success",
            )
        )
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        reason = f"Meta answered HTTP {status} without a Graph error envelope"
        if status == 429 or status >= 500:
            return Classification(Outcome.retry(reason, http_status=status, error_code=f"meta_http_{status}"))
        return Classification(Outcome.reject(reason, http_status=status, error_code=f"meta_http_{status}"))

    families = _error_families()
    code = _int_or_none(error.get("code"))
    subcode = _int_or_none(error.get("error_subcode"))
    label = f"code {code}" + (f", subcode {subcode}" if subcode is not None else "")
    trace = error.get("fbtrace_id")
    suffix = f" [fbtrace_id {_clip(trace, 40)}]" if trace else ""
    # Meta's user-facing title/message describe the rule broken; unlike `message` they do not echo values.
    detail = ": ".join(_clip(error[key]) for key in ("error_user_title", "error_user_msg") if error.get(key))

    if code in families.throttling:
        return Classification(
            Outcome.retry(
                f"Meta throttled the request ({label}); retrying with backoff{suffix}",
                http_status=status,
                error_code=f"meta_throttled_{code}",
                retry_after_seconds=retry_after_seconds(headers),
            )
        )
    if code in families.transient or error.get("is_transient") is True or status >= 500:
        return Classification(
            Outcome.retry(
                f"Meta reported a temporary error ({label}); retrying{suffix}",
                http_status=status,
                error_code=f"meta_{code}",
                retry_after_seconds=retry_after_seconds(headers),
            )
        )
    if code in families.auth:
        return Classification(
            Outcome.reject(
                f"Meta refused the access token or its permissions ({label}): fix access_token / pixel "
                f"permissions in the meta secret, then redrive the DLQ within 7 days{suffix}",
                http_status=status,
                error_code=f"meta_auth_{code}",
            )
        )
    if code in families.parameter:
        return Classification(
            Outcome.reject(
                f"Meta rejected the event ({label}): {detail or 'invalid parameter, no detail'}{suffix}",
                http_status=status,
                error_code=f"meta_{code}" + (f"_{subcode}" if subcode is not None else ""),
            ),
            bisectable=subcode not in families.no_bisect_subcodes,
        )
    return Classification(
        Outcome.reject(
            f"Meta rejected the request ({label}){': ' + detail if detail else ''}{suffix}",
            http_status=status,
            error_code=f"meta_{code}",
        )
    )
