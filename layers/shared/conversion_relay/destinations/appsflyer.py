"""AppsFlyer Web Server-to-Server events API for PBA (People-Based Attribution).

`POST {base_url}/v1/{bundle_id}/event`, one event per request, JSON body of at most 1 KB with the
Web Dev Key inside the body (there is no auth header). See destinations.md §3.1 for the field list.

Payload budget. AppsFlyer caps the whole JSON body at 1,024 bytes and `eventValue` at 1,000
characters (it truncates beyond that, which would corrupt the map). We measure the exact bytes we
send (`encode_payload`) and, when over, drop optional parts in this order until it fits:
  1. `eventValue` keys: custom properties (last added first), then `_EVENT_VALUE_TRIM_ORDER`
     (af_order_id last); an emptied `eventValue` is left out;
  2. `referrer`;
  3. `UserAgent`.
User ids, `eventName`, `timestamp`, `ip`, `eventRevenue` and `eventRevenueCurrency` are never
dropped: if the payload still does not fit, the event is rejected with the byte count and the fields
to shorten. With our compact UTF-8 encoding an `eventValue` over 1,000 characters can never fit in
1,024 bytes next to the mandatory fields, so the byte rule always catches it; we check it anyway so a
larger documented body limit cannot let AppsFlyer cut our map mid-value.

Trade-off, read before changing retry rules: AppsFlyer has no deduplication key for Web S2S, so an
ambiguous failure (read timeout after the request left us, 5xx after AppsFlyer may have recorded it)
that we retry can count the purchase twice. We accept retrying timeouts and 5xx anyway because a lost
purchase is worse than an occasional duplicate; a later issue refines this (e.g. retry only errors
that provably never reached AppsFlyer, such as connect timeouts).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar, Self
from urllib.parse import quote

import requests

from conversion_relay import config
from conversion_relay.destinations.base import Outcome, Prepared, classify_transport_error
from conversion_relay.http import TIMEOUT
from conversion_relay.model import REFUND, ConversionEvent
from conversion_relay.secrets import get_secret, require

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://webs2s.appsflyer.com"
DEFAULT_MAX_WORKERS = 8
MAX_PAYLOAD_BYTES = 1024
MAX_EVENT_VALUE_CHARS = 1000
MAX_REASON_DETAIL_CHARS = 200

# The API reference (dev.appsflyer.com OpenAPI) spells it `UserAgent`; the help-center article
# (seed 003) says `userAgent`. We follow the API reference; one constant to flip if a live check disagrees.
USER_AGENT_FIELD = "UserAgent"

# Fields dropped, in this order, after `eventValue` when the payload is over MAX_PAYLOAD_BYTES.
_TOP_LEVEL_TRIM_ORDER = ("referrer", USER_AGENT_FIELD)
# eventValue keys we derive, most expendable first; custom properties go before all of them.
_EVENT_VALUE_TRIM_ORDER = ("af_quantity", "af_content_id", "af_coupon_code", "subscription_id", "af_order_id")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode_payload(payload: Mapping[str, Any]) -> bytes:
    """The exact bytes we POST; sizes are measured on this, so measuring and sending cannot disagree."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def event_value_length(event_value: Mapping[str, str]) -> int:
    """Characters of `eventValue` as serialised inside the body (AppsFlyer's 1,000-character rule)."""
    return len(json.dumps(event_value, separators=(",", ":"), ensure_ascii=False))


class AppsflyerDestination:
    name: ClassVar[str] = "appsflyer"

    def __init__(
        self,
        credentials: Mapping[str, Any],
        session: requests.Session,
        base_url: str = DEFAULT_BASE_URL,
        *,
        max_workers: int = DEFAULT_MAX_WORKERS,
        timeout: tuple[float, float] = TIMEOUT,
    ) -> None:
        require(dict(credentials), self.name, "bundle_id", "web_dev_key")
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self._web_dev_key = str(credentials["web_dev_key"])
        bundle_id = str(credentials["bundle_id"])
        self.url = f"{base_url.rstrip('/')}/v1/{quote(bundle_id, safe='')}/event"
        self._session = session
        self.max_workers = max_workers
        self._timeout = timeout

    @classmethod
    def from_environment(cls, session: requests.Session, *, max_workers: int = DEFAULT_MAX_WORKERS) -> Self:
        """Credentials from the `appsflyer` secret, endpoint from APPSFLYER_BASE_URL.

        Give `session` a pool of at least `max_workers` connections (http.new_session(pool_size)).
        """
        base_url = os.environ.get("APPSFLYER_BASE_URL", "") or DEFAULT_BASE_URL
        return cls(get_secret(cls.name), session, base_url, max_workers=max_workers)

    # -- prepare -------------------------------------------------------------------------------------
    def prepare(self, event: ConversionEvent) -> Prepared | Outcome:
        built = self.build_payload(event)
        if isinstance(built, Outcome):
            return built
        fitted, dropped = fit_payload(built)
        size = len(encode_payload(fitted))
        if size > MAX_PAYLOAD_BYTES:
            return Outcome.reject(
                f"payload: {size} bytes after dropping eventValue, referrer and {USER_AGENT_FIELD}, over "
                f"AppsFlyer's {MAX_PAYLOAD_BYTES}-byte limit; shorten customerUserId/afUserId (metadata) "
                "or the eventName mapping"
            )
        if dropped:
            # Field names only: the values may be personal data.
            logger.info(
                "appsflyer payload trimmed to fit", extra={"event_id": event.event_id, "dropped": dropped}
            )
        return Prepared(event=event, payload=fitted, group_key=event.event_id)

    def build_payload(self, event: ConversionEvent) -> dict[str, Any] | Outcome:
        """The full `/event` body before the size budget is applied, or why the event is not sent."""
        event_name = config.destination_event_name(self.name, event.name)
        if event_name is None:
            return Outcome.skip(f"mapping event_names.appsflyer.{event.name} is null: not sent to AppsFlyer")
        ids = _user_ids(event)
        if not ids:
            keys = ", ".join(config.metadata_key(k) for k in ("customer_user_id", "user_id", "af_user_id"))
            return Outcome.reject(
                f"customerUserId/afUserId: at least one is required; pass {keys} in the payment's metadata"
            )
        if event.value is not None and event.currency is None:
            return Outcome.reject(
                "currency: required when value is set "
                "(AppsFlyer needs eventRevenue and eventRevenueCurrency together)"
            )

        payload: dict[str, Any] = {
            **ids,
            "webDevKey": self._web_dev_key,
            "eventType": "EVENT",
            "eventName": event_name,
            "timestamp": (event.occurred_at - _EPOCH) // timedelta(milliseconds=1),
        }
        if event.value is not None:
            payload["eventRevenue"] = _revenue(event)
            payload["eventRevenueCurrency"] = event.currency
        event_value = _event_value(event)
        if event_value:
            payload["eventValue"] = event_value
        context = event.context
        if context.client_ip and _is_ipv4(context.client_ip):
            payload["ip"] = context.client_ip
        if context.client_user_agent:
            payload[USER_AGENT_FIELD] = context.client_user_agent
        if context.referrer_url:
            payload["referrer"] = context.referrer_url
        return payload

    # -- send ----------------------------------------------------------------------------------------
    def send(self, batch: Sequence[Prepared]) -> list[Outcome]:
        """One request per event, at most `max_workers` in flight; outcomes in input order."""
        if not batch:
            return []
        workers = min(self.max_workers, len(batch))
        if workers == 1:
            return [self._send_one(prepared) for prepared in batch]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="appsflyer") as pool:
            return list(pool.map(self._send_one, batch))

    def _send_one(self, prepared: Prepared) -> Outcome:
        try:
            response = self._session.post(
                self.url,
                data=encode_payload(prepared.payload),
                headers={"Content-Type": "application/json"},
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.RequestException as error:
            return classify_transport_error(error)
        return classify_response(
            response.status_code,
            response.text,
            response.headers.get("Retry-After"),
            redact=_sensitive_values(prepared.payload),
        )


# -- payload building --------------------------------------------------------------------------------
def _user_ids(event: ConversionEvent) -> dict[str, str]:
    ids: dict[str, str] = {}
    customer_user_id = event.context.customer_user_id or event.context.user_id
    if customer_user_id:
        ids["customerUserId"] = customer_user_id
    if event.context.af_user_id:
        ids["afUserId"] = event.context.af_user_id
    return ids


def _revenue(event: ConversionEvent) -> float:
    value: Decimal = event.value  # type: ignore[assignment]  # caller checked it is set
    if event.name == REFUND and value:
        # AppsFlyer nets refunds by negative revenue; the canonical value may carry either sign.
        value = -value.copy_abs()
    return float(value)


def _event_value(event: ConversionEvent) -> dict[str, str]:
    """Rich event details as a map of strings (the API's schema), custom properties first.

    Derived keys are written after the properties so a property cannot overwrite an id we derive.
    """
    details: dict[str, str] = dict(event.properties)
    item_ids = [item.id for item in event.items if item.id]
    if item_ids:
        details["af_content_id"] = ",".join(item_ids)
    if event.items:
        details["af_quantity"] = str(sum(item.quantity for item in event.items))
    if event.coupon:
        details["af_coupon_code"] = event.coupon
    if event.subscription_id:
        details["subscription_id"] = event.subscription_id
    if event.transaction_id:
        details["af_order_id"] = event.transaction_id
    return details


def _is_ipv4(value: str) -> bool:
    # The API reference types `ip` as ipv4; dropping anything else costs geo only, not the event.
    try:
        return isinstance(ipaddress.ip_address(value), ipaddress.IPv4Address)
    except ValueError:
        return False


def _event_value_trim_order(event_value: Mapping[str, str]) -> list[str]:
    custom = [key for key in reversed(list(event_value)) if key not in _EVENT_VALUE_TRIM_ORDER]
    return custom + [key for key in _EVENT_VALUE_TRIM_ORDER if key in event_value]


def fit_payload(payload: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(the payload trimmed to AppsFlyer's limits as far as allowed, names of what was dropped).

    Never drops ids, eventName, timestamp, ip or revenue (order in the module docstring), so the result
    can still be over MAX_PAYLOAD_BYTES: the caller checks.
    """
    fitted = dict(payload)
    dropped: list[str] = []
    event_value: dict[str, str] = dict(fitted.pop("eventValue", None) or {})
    candidates = _event_value_trim_order(event_value)

    def assembled() -> dict[str, Any]:
        return {**fitted, "eventValue": event_value} if event_value else dict(fitted)

    def over() -> bool:
        return len(encode_payload(assembled())) > MAX_PAYLOAD_BYTES

    while event_value and (event_value_length(event_value) > MAX_EVENT_VALUE_CHARS or over()):
        key = candidates.pop(0)
        del event_value[key]
        dropped.append(f"eventValue.{key}")
    for name in _TOP_LEVEL_TRIM_ORDER:
        if name in fitted and over():
            del fitted[name]
            dropped.append(name)
    return assembled(), dropped


# -- response classification -------------------------------------------------------------------------
def classify_response(
    status: int, text: str, retry_after: str | None = None, *, redact: Iterable[str] = ()
) -> Outcome:
    """delivered (2xx) / retry (408, 429, 5xx) / reject (other 4xx and anything unexpected)."""
    if 200 <= status < 300:
        return Outcome.delivered(status)
    detail = _error_detail(text, redact)
    if status == 429 or status == 408 or status >= 500:
        return Outcome.retry(
            f"AppsFlyer answered {status}: {detail}",
            http_status=status,
            retry_after_seconds=_retry_after(retry_after),
        )
    hint = {
        401: " (check web_dev_key in the appsflyer secret)",
        404: " (check bundle_id in the appsflyer secret and APPSFLYER_BASE_URL)",
    }.get(status, "")
    return Outcome.reject(f"AppsFlyer answered {status}{hint}: {detail}", http_status=status)


def _error_detail(text: str, redact: Iterable[str]) -> str:
    detail = text.strip()
    try:
        body = json.loads(detail) if detail else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        # AppsFlyer's error shape: {"error": "<what is wrong>", "message": "Bad Request", "status": 400}
        parts = [str(body[key]) for key in ("error", "message") if body.get(key)]
        detail = " - ".join(dict.fromkeys(parts)) or detail
    for value in redact:
        # An echoed id, IP or the dev key must not reach a DLQ reason or a log line. Values under 3
        # characters identify no one and would shred the message ("e" is in every word).
        if len(value) >= 3:
            detail = detail.replace(value, "[redacted]")
    detail = " ".join(detail.split())
    if len(detail) > MAX_REASON_DETAIL_CHARS:
        detail = detail[: MAX_REASON_DETAIL_CHARS - 3] + "..."
    return detail or "empty response body"


def _retry_after(value: str | None) -> float | None:
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None  # HTTP-date form: leave the delay to SQS
    return seconds if seconds is not None and seconds >= 0 else None


def _sensitive_values(payload: Mapping[str, Any]) -> list[str]:
    return [
        str(payload[key])
        for key in ("webDevKey", "customerUserId", "afUserId", "ip", USER_AGENT_FIELD, "referrer")
        if payload.get(key)
    ]
