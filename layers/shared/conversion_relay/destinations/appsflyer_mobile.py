"""AppsFlyer mobile S2S events API: for merchants whose conversions belong to an app, not a web brand bundle.

`POST {base_url}/inappevent/{app_id}` (base https://api3.appsflyer.com), header `authentication: <S2S key>`,
one event per request, JSON body of at most 1 KB (destinations.md §3.2). Chosen with APPSFLYER_TARGET=mobile;
the `appsflyer` secret then holds {"app_id": ..., "s2s_key": ..., optional "platform": "ios"|"android"}.

The app id decides where events land, and AppsFlyer answers 200 to an iOS app id without its `id` prefix
while recording nothing. So the configuration is checked when the destination is built: the platform is
the secret's "platform" when given, else iOS when the app id is `id` + digits, else Android (a package name
such as com.example.app). A bare number is refused whatever the platform says.

Body: appsflyer_id (from the payment's metadata; the documented pattern is checked), eventName, eventValue
as a JSON-encoded STRING with af_revenue / af_currency / af_order_id plus details, eventTime as
"yyyy-MM-dd HH:mm:ss.SSS" UTC, eventCurrency, customer_user_id, ip, and for iOS os and att. Over 1 KB we
drop eventValue details (custom properties first, then data/appsflyer_rules.json
`mobile.event_value_trim_order`); af_revenue, af_currency, af_order_id and the top-level fields stay.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar, Self
from urllib.parse import quote

import requests

from conversion_relay import config
from conversion_relay.config import ConfigError
from conversion_relay.destinations.appsflyer import (
    DEFAULT_MAX_WORKERS,
    MAX_PAYLOAD_BYTES,
    AmbiguousPolicy,
    ConcurrentSender,
    Counter,
    LatePolicy,
    Settings,
    Target,
    TimestampRule,
    TokenBucket,
    count_metric,
    encode_payload,
    event_value_trim_order,
    logger,
    rules,
    shared_bucket,
    timestamp_outcome,
    utc_now,
)
from conversion_relay.destinations.base import Outcome, Prepared
from conversion_relay.http import TIMEOUT
from conversion_relay.model import REFUND, ConversionEvent
from conversion_relay.secrets import get_secret, require

DEFAULT_MOBILE_BASE_URL = "https://api3.appsflyer.com"
IOS, ANDROID = "ios", "android"

_MOBILE = rules()["mobile"]
APPSFLYER_ID = re.compile(_MOBILE["appsflyer_id_pattern"])
IOS_APP_ID = re.compile(_MOBILE["ios_app_id_pattern"])
OS_VERSION = re.compile(_MOBILE["os_version_pattern"])
ATT_VALUES = frozenset(_MOBILE["att_values"])
_TRIM_ORDER: tuple[str, ...] = tuple(_MOBILE["event_value_trim_order"])
_PROTECTED: tuple[str, ...] = tuple(_MOBILE["protected_event_value_keys"])

_MOBILE_HINTS = {
    400: " (for 'Failed to Authenticate' check s2s_key and app_id in the appsflyer secret)",
    401: " (check s2s_key in the appsflyer secret: it must be the S2S key of this app)",
    403: " (the app does not accept S2S events, e.g. a 'Zero Package' app)",
    404: " (check app_id in the appsflyer secret and APPSFLYER_MOBILE_BASE_URL)",
}


def app_platform(app_id: str, declared: str | None) -> str:
    """The platform ("ios" or "android") of an app id, or ConfigError saying what to fix (never the id)."""
    if declared is not None and declared not in (IOS, ANDROID):
        raise ConfigError('appsflyer secret: "platform" must be "ios" or "android"')
    if app_id.isdigit():
        raise ConfigError(
            'appsflyer secret: app_id is a bare number; an iOS app id must carry the "id" prefix '
            "(id123456789). AppsFlyer answers 200 to the bare number but records nothing"
        )
    platform = declared or (IOS if IOS_APP_ID.fullmatch(app_id) else ANDROID)
    if platform == IOS and not IOS_APP_ID.fullmatch(app_id):
        raise ConfigError(
            'appsflyer secret: platform is "ios" but app_id is not "id" followed by the App Store id '
            "(id123456789)"
        )
    if platform == ANDROID and (IOS_APP_ID.fullmatch(app_id) or "." not in app_id):
        raise ConfigError(
            "appsflyer secret: an Android app_id is the package name (com.example.app); "
            'for an iOS app use "id" + the App Store id, or set "platform": "ios"'
        )
    return platform


def event_time(moment: datetime) -> str:
    """AppsFlyer's UTC string: yyyy-MM-dd HH:mm:ss.SSS (milliseconds, truncated like Java's formatter)."""
    return f"{moment:%Y-%m-%d %H:%M:%S}.{moment.microsecond // 1000:03d}"


def encode_event_value(details: Mapping[str, str]) -> str:
    """eventValue is a JSON document inside a string; "" when there is nothing (the API wants the key)."""
    return json.dumps(details, separators=(",", ":"), ensure_ascii=False) if details else ""


class AppsflyerMobileDestination(ConcurrentSender):
    name: ClassVar[str] = "appsflyer"

    def __init__(
        self,
        credentials: Mapping[str, Any],
        session: requests.Session,
        base_url: str = DEFAULT_MOBILE_BASE_URL,
        *,
        max_workers: int = DEFAULT_MAX_WORKERS,
        timeout: tuple[float, float] = TIMEOUT,
        late_policy: LatePolicy = LatePolicy.SEND,
        ambiguous_policy: AmbiguousPolicy = AmbiguousPolicy.DEAD_LETTER,
        rate_limiter: TokenBucket | None = None,
        clock: Callable[[], datetime] = utc_now,
        count: Counter = count_metric,
    ) -> None:
        require(dict(credentials), self.name, "app_id", "s2s_key")
        super().__init__(
            session,
            max_workers=max_workers,
            timeout=timeout,
            rate_limiter=rate_limiter,
            count=count,
            ambiguous_policy=ambiguous_policy,
        )
        app_id = str(credentials["app_id"]).strip()
        declared = credentials.get("platform")
        self.platform = app_platform(app_id, str(declared).strip().lower() if declared else None)
        self._s2s_key = str(credentials["s2s_key"])
        self.url = f"{base_url.rstrip('/')}/inappevent/{quote(app_id, safe='')}"
        self.late_policy = LatePolicy(late_policy)
        self.timestamp_rule = TimestampRule.for_target(Target.MOBILE)
        self._clock = clock

    @classmethod
    def from_environment(cls, session: requests.Session, *, max_workers: int = DEFAULT_MAX_WORKERS) -> Self:
        """Credentials from the `appsflyer` secret, endpoint from APPSFLYER_MOBILE_BASE_URL."""
        settings = Settings.from_env()
        base_url = os.environ.get("APPSFLYER_MOBILE_BASE_URL", "") or DEFAULT_MOBILE_BASE_URL
        return cls(
            get_secret(cls.name),
            session,
            base_url,
            max_workers=max_workers,
            late_policy=settings.late_policy,
            ambiguous_policy=settings.ambiguous_policy,
            rate_limiter=shared_bucket(settings.max_requests_per_second, max_workers),
        )

    # -- prepare -------------------------------------------------------------------------------------
    def prepare(self, event: ConversionEvent) -> Prepared | Outcome:
        built = self.build_payload(event)
        if isinstance(built, Outcome):
            return built
        payload, dropped_identifiers = built
        fitted, dropped = fit_mobile_payload(payload)
        size = len(encode_payload(fitted))
        if size > MAX_PAYLOAD_BYTES:
            return Outcome.reject(
                f"payload: {size} bytes after dropping eventValue details, over AppsFlyer's "
                f"{MAX_PAYLOAD_BYTES}-byte limit; shorten customer_user_id or the eventName mapping"
            )
        if dropped:
            logger.info(
                "appsflyer payload trimmed to fit", extra={"event_id": event.event_id, "dropped": dropped}
            )
        late = timestamp_outcome(
            self.timestamp_rule, self.late_policy, event.occurred_at, self._clock(), self._count
        )
        if late is not None:
            return late
        return Prepared(
            event=event, payload=fitted, group_key=event.event_id, dropped_identifiers=dropped_identifiers
        )

    def build_payload(self, event: ConversionEvent) -> tuple[dict[str, Any], tuple[str, ...]] | Outcome:
        """(the full body before the size budget, reason codes of identifiers left out) or why not sent."""
        event_name = config.destination_event_name(self.name, event.name)
        if event_name is None:
            return Outcome.skip(f"mapping event_names.appsflyer.{event.name} is null: not sent to AppsFlyer")
        context = event.context
        key = config.metadata_key("appsflyer_id")
        if not context.appsflyer_id:
            return Outcome.reject(
                f"appsflyer_id: required for the mobile S2S target; pass {key} (the app's AppsFlyer ID) "
                "in the payment's metadata"
            )
        if not APPSFLYER_ID.fullmatch(context.appsflyer_id):
            return Outcome.reject(
                f"appsflyer_id: metadata {key} does not match AppsFlyer's pattern "
                f"{_MOBILE['appsflyer_id_pattern']} (13 digits, a dash, 19 or 7 digits)"
            )
        if event.value is not None and event.currency is None:
            return Outcome.reject(
                "currency: required when value is set (AppsFlyer needs af_revenue with eventCurrency)"
            )

        details = _event_value(event)
        payload: dict[str, Any] = {
            "appsflyer_id": context.appsflyer_id,
            "eventName": event_name,
            "eventValue": encode_event_value(details),
            "eventTime": event_time(event.occurred_at),
        }
        if event.value is not None:
            payload["eventCurrency"] = event.currency
        customer_user_id = context.customer_user_id or context.user_id
        if customer_user_id:
            payload["customer_user_id"] = customer_user_id
        if context.client_ip and _is_ip(context.client_ip):
            payload["ip"] = context.client_ip
        dropped: list[str] = []
        if self.platform == IOS:
            if context.app_os_version:
                if OS_VERSION.fullmatch(context.app_os_version):
                    payload["os"] = context.app_os_version
                else:
                    dropped.append("invalid_os_version")
            if context.att_status:
                if context.att_status in ATT_VALUES:
                    payload["att"] = int(context.att_status)
                else:
                    dropped.append("invalid_att_status")
        return payload, tuple(dropped)

    # -- send ----------------------------------------------------------------------------------------
    def _send_one(self, prepared: Prepared) -> Outcome:
        return self._post(
            self.url,
            encode_payload(prepared.payload),
            {"authentication": self._s2s_key},
            redact=[self._s2s_key, *_sensitive_values(prepared.payload)],
            hints=_MOBILE_HINTS,
        )


def _event_value(event: ConversionEvent) -> dict[str, str]:
    """Details first (custom properties, then derived keys), revenue keys last so nothing overwrites them."""
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
    for protected in _PROTECTED:
        details.pop(protected, None)  # a custom property may not pose as revenue or order id
    if event.value is not None:
        value = -event.value.copy_abs() if event.name == REFUND and event.value else event.value
        details["af_revenue"] = format(value, "f")
        details["af_currency"] = str(event.currency)
    if event.transaction_id:
        details["af_order_id"] = event.transaction_id
    return details


def fit_mobile_payload(payload: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(payload with eventValue details dropped until it fits in MAX_PAYLOAD_BYTES, names dropped).

    Only eventValue details go; the caller rejects what still does not fit.
    """
    fitted = dict(payload)
    raw = fitted.get("eventValue") or ""
    details: dict[str, str] = json.loads(raw) if raw else {}
    candidates = event_value_trim_order(details, _TRIM_ORDER, _PROTECTED)
    dropped: list[str] = []
    while candidates and len(encode_payload(fitted)) > MAX_PAYLOAD_BYTES:
        key = candidates.pop(0)
        del details[key]
        dropped.append(f"eventValue.{key}")
        fitted["eventValue"] = encode_event_value(details)
    return fitted, dropped


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _sensitive_values(payload: Mapping[str, Any]) -> list[str]:
    return [str(payload[key]) for key in ("appsflyer_id", "customer_user_id", "ip") if payload.get(key)]
