"""Meta Conversions API: map a canonical event to a server event, validate it, send batches, classify.

Mapping choices (the ones Meta leaves to the integrator):
  - event_name: `config.destination_event_name("meta", ...)`; refunds map to None by default (Meta has
    no standard refund event), so they are skipped unless MAPPING_OVERRIDES names an event for them.
  - event_id: the canonical `event.event_id`, deterministic across provider retries, so the Pixel's
    eventID and any re-send deduplicate on event_name + event_id.
  - event_time: whole seconds of `occurred_at` (when the payment happened, not when we saw it).
  - action_source, first match wins:
      1. `subscription_renewal` -> "system_generated": an auto-pay renewal is Meta's own example, and the
         browser context carried on the subscription belongs to the original checkout, not this charge;
      2. `context.action_source` when the merchant states one (must be one of Meta's values);
      3. "website" when both event_source_url and client_user_agent are known (Meta requires both for
         website events, so a URL alone does not make it a website event we could deliver);
      4. "other".
  - user_data: SHA-256 of the person fields via `meta_normalize` (SDK-identical; invalid identifiers are
    dropped and reported in `Prepared.dropped_identifiers`), plus client_ip_address,
    client_user_agent, fbp, fbc and subscription_id raw, as Meta requires.
  - custom_data: value (float), currency (lower case, as the SDK sends it), order_id = transaction_id,
    content_ids / contents / content_type / num_items from the items, then `event.properties` under any
    key not already taken by a standard parameter.
  - data_processing_options (+ country/state) from the consent section, when stated.

Validation before sending, because Meta rejects a whole request for one bad event: event_time within
7 days in the past and 60 s in the future; website events need event_source_url and client_user_agent;
Purchase needs value and currency; user_data needs at least one key.

Sending: one POST per group of up to 1,000 events to {base_url}/{api_version}/{pixel_id}/events with a
JSON body; the access token travels in the body, never in the URL (URLs end up in logs). When Meta
rejects a multi-event request with a parameter error (code 100), the request is bisected so only the
bad events are rejected and the good ones delivered exactly once. A request budget per send() bounds
that; events a spent budget leaves unresolved are retried, not rejected (they may be good).

Classification keys on error.code (data/meta_errors.json): throttling and transient codes, is_transient
and HTTP 5xx retry (retry_after from X-Business-Use-Case-Usage); token and permission codes reject with
error_code `meta_auth_<code>` for an alarm; code 100 rejects with Meta's error_user_title/msg, which
name the rule without echoing values (its raw `message` is never copied into a reason).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any, ClassVar, Self

import requests

from conversion_relay import http
from conversion_relay.config import ConfigError, destination_event_name
from conversion_relay.destinations.base import Outcome, Prepared, classify_transport_error
from conversion_relay.meta_normalize import hash_person
from conversion_relay.model import REFUND, SUBSCRIPTION_RENEWAL, ConversionEvent
from conversion_relay.secrets import get_secret, require

DEFAULT_BASE_URL = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v25.0"
MAX_EVENTS_PER_REQUEST = 1000
MAX_EVENT_AGE_SECONDS = 7 * 24 * 3600
MAX_FUTURE_SECONDS = 60
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
    {"value", "currency", "order_id", "content_ids", "contents", "content_type", "num_items"}
)
_NO_CUSTOMER_INFORMATION = (
    "user_data: no customer information (em, ph, external_id, fbp, fbc, client_ip_address...)"
)


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
    ) -> None:
        require(dict(credentials), "meta", "pixel_id", "access_token")
        pixel_id = str(credentials["pixel_id"]).strip()
        if not pixel_id.isdigit():
            # It goes into the URL path; a pasted URL or name would silently hit another endpoint.
            raise ConfigError("secret for meta: pixel_id must be the numeric pixel or dataset id")
        if not base_url.startswith(("https://", "http://")):
            raise ConfigError("META_BASE_URL must start with https:// (or http:// for a local fake)")
        if not 1 <= max_events_per_request <= MAX_EVENTS_PER_REQUEST:
            raise ValueError(f"max_events_per_request must be 1..{MAX_EVENTS_PER_REQUEST}")
        self.pixel_id = pixel_id
        self._access_token = str(credentials["access_token"])
        self._test_event_code = str(credentials.get("test_event_code") or "") or None
        self._session = session
        self.url = f"{base_url.rstrip('/')}/{api_version.strip('/')}/{pixel_id}/events"
        self._clock = clock or (lambda: datetime.now(UTC))
        self._max_events = max_events_per_request
        self._max_bisect_requests = max_bisect_requests

    def __repr__(self) -> str:  # never show the token
        return f"MetaDestination(pixel_id={self.pixel_id!r}, url={self.url!r})"

    @classmethod
    def from_environment(cls, session: requests.Session, *, force_fetch: bool = False) -> Self:
        """Credentials from the `meta` secret; `force_fetch` skips the cache (e.g. after a meta_auth_190)."""
        secret = get_secret("meta", force_fetch=force_fetch)
        return cls(
            secret,
            session,
            os.environ.get("META_BASE_URL") or DEFAULT_BASE_URL,
            api_version=os.environ.get("META_API_VERSION") or DEFAULT_API_VERSION,
        )

    # -- prepare ------------------------------------------------------------------------------------
    def prepare(self, event: ConversionEvent) -> Prepared | Outcome:
        event_name = destination_event_name(self.name, event.name)
        if event_name is None:
            if event.name == REFUND:
                return Outcome.skip(
                    "refund events are not sent to Meta by default (no standard refund event); "
                    "set MAPPING_OVERRIDES to enable"
                )
            return Outcome.skip(f"{event.name} events map to no Meta event (event_names.meta in the mapping)")

        problem = self._check_time(event)
        if problem:
            return Outcome.reject(problem, error_code="meta_validation")
        action_source = _action_source(event)
        if action_source not in ACTION_SOURCES:
            return Outcome.reject(
                f"action_source: not one of Meta's values {sorted(ACTION_SOURCES)}; "
                "fix the action_source metadata at checkout",
                error_code="meta_validation",
            )

        hashed = hash_person(event.person)
        user_data: dict[str, Any] = dict(hashed.fields)
        context = event.context
        for key, value in (
            ("client_ip_address", context.client_ip),
            ("client_user_agent", context.client_user_agent),
            ("fbp", context.fbp),
            ("fbc", context.fbc),
            ("subscription_id", event.subscription_id),
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
        server_event["user_data"] = user_data
        custom_data = _custom_data(event)
        if custom_data:
            server_event["custom_data"] = custom_data
        consent = event.consent
        if consent.data_processing_options is not None:
            server_event["data_processing_options"] = list(consent.data_processing_options)
            if consent.data_processing_options_country is not None:
                server_event["data_processing_options_country"] = consent.data_processing_options_country
            if consent.data_processing_options_state is not None:
                server_event["data_processing_options_state"] = consent.data_processing_options_state

        problem = _check_required(server_event, hashed.dropped)
        if problem:
            return Outcome.reject(problem, error_code="meta_validation")
        return Prepared(event, server_event, group_key=self.pixel_id, dropped_identifiers=hashed.dropped)

    def _check_time(self, event: ConversionEvent) -> str | None:
        age = (self._clock() - event.occurred_at).total_seconds()
        if age > MAX_EVENT_AGE_SECONDS:
            return (
                f"event_time: {age / 3600:.0f} h old, beyond Meta's 7-day limit "
                "(one such event makes Meta reject the whole request)"
            )
        if -age > MAX_FUTURE_SECONDS:
            return (
                f"event_time: {-age:.0f} s in the future, beyond the {MAX_FUTURE_SECONDS} s tolerance; "
                "check the provider timestamp and the clock"
            )
        return None

    # -- send ---------------------------------------------------------------------------------------
    def send(self, batch: Sequence[Prepared]) -> list[Outcome]:
        groups: dict[str, list[int]] = {}
        for index, prepared in enumerate(batch):
            groups.setdefault(prepared.group_key, []).append(index)
        budget = [self._max_bisect_requests]  # shared by every request of this call
        outcomes: dict[int, Outcome] = {}
        for indices in groups.values():
            for start in range(0, len(indices), self._max_events):
                chunk = indices[start : start + self._max_events]
                results = self._deliver([batch[i].payload for i in chunk], budget)
                outcomes.update(zip(chunk, results, strict=True))
        return [outcomes[index] for index in range(len(batch))]

    def _deliver(self, payloads: list[dict[str, Any]], budget: list[int]) -> list[Outcome]:
        """POST the events; on a per-event parameter error, split in halves and recurse."""
        answer = self._post(payloads)
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
        return self._deliver(payloads[:middle], budget) + self._deliver(payloads[middle:], budget)

    def _post(self, payloads: list[dict[str, Any]]) -> Classification:
        body: dict[str, Any] = {"data": payloads, "access_token": self._access_token}
        if self._test_event_code:
            body["test_event_code"] = self._test_event_code
        try:
            response = self._session.post(self.url, json=body, timeout=http.TIMEOUT)
        except requests.RequestException as error:
            return Classification(classify_transport_error(error))
        return classify_response(response.status_code, _json_or_none(response), response.headers)


def _action_source(event: ConversionEvent) -> str:
    context = event.context
    if event.name == SUBSCRIPTION_RENEWAL:
        return "system_generated"
    if context.action_source:
        return context.action_source.strip().lower()
    if context.event_source_url and context.client_user_agent:
        return "website"
    return "other"


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
    for key, value in event.properties.items():
        if key not in _STANDARD_CUSTOM_KEYS:
            data[key] = value
    return data


def _check_required(server_event: dict[str, Any], dropped: tuple[str, ...]) -> str | None:
    user_data = server_event["user_data"]
    if server_event["action_source"] == "website":
        if not server_event.get("event_source_url"):
            return "event_source_url: required when action_source is website"
        if not user_data.get("client_user_agent"):
            return "user_data.client_user_agent: required when action_source is website"
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
