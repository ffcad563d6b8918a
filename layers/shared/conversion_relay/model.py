"""The canonical conversion event: the one contract between payment providers and destinations.

Providers build `ConversionEvent`s; the ingest serialises them into SQS message bodies with
`to_json`; each destination consumer reads them back with `from_json`. Person fields are raw
inside the pipeline only: destinations hash them at the edge and nothing here is ever logged.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

SCHEMA_VERSION = 1

PURCHASE = "purchase"
REFUND = "refund"
SUBSCRIPTION_START = "subscription_start"
SUBSCRIPTION_RENEWAL = "subscription_renewal"
STANDARD_EVENT_NAMES = frozenset({PURCHASE, REFUND, SUBSCRIPTION_START, SUBSCRIPTION_RENEWAL})


class InvalidEvent(ValueError):
    """A message body that is not a valid canonical event; `path` names the offending field."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Item:
    id: str | None = None
    name: str | None = None
    price: Decimal | None = None  # unit price, major units
    quantity: int = 1
    category: str | None = None
    brand: str | None = None
    variant: str | None = None


@dataclass(frozen=True, slots=True)
class Source:
    provider: str  # "stripe", "portone", ...
    event_id: str  # the provider's delivery/event id (dedupe key at the ingest)
    event_type: str  # the provider's event type, e.g. "checkout.session.completed"
    object_id: str  # the provider object the conversion comes from (cs_..., in_..., re_...)
    livemode: bool = True


@dataclass(frozen=True, slots=True)
class Person:
    """Raw customer data. Hashed at the destination edge, never logged."""

    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    date_of_birth: str | None = None
    gender: str | None = None
    city: str | None = None
    state: str | None = None
    zip: str | None = None
    country: str | None = None
    external_id: str | None = None  # the merchant's customer id
    street: str | None = None  # address line (GA4 user_data hashes it)


@dataclass(frozen=True, slots=True)
class Context:
    """Browser/app identifiers carried from checkout through the provider's metadata."""

    ga_client_id: str | None = None
    ga_session_id: str | None = None
    user_id: str | None = None
    fbp: str | None = None
    fbc: str | None = None
    af_user_id: str | None = None
    customer_user_id: str | None = None
    client_ip: str | None = None
    client_user_agent: str | None = None
    event_source_url: str | None = None
    referrer_url: str | None = None
    action_source: str | None = None
    # GA4 `device` (optional; GA4 ignores user_agent when a device object is sent).
    device_category: str | None = None  # desktop | tablet | mobile | smart TV
    device_language: str | None = None  # ISO 639-1, e.g. "ko"
    screen_resolution: str | None = None  # "WIDTHxHEIGHT"
    # AppsFlyer mobile S2S (app conversions): the device's AppsFlyer ID, and for iOS the OS version and
    # App Tracking Transparency status ("0".."3") the app reported.
    appsflyer_id: str | None = None
    app_os_version: str | None = None
    att_status: str | None = None


@dataclass(frozen=True, slots=True)
class Consent:
    """None means "not stated": destinations then fall back to their own defaults."""

    ad_user_data: bool | None = None
    ad_personalization: bool | None = None
    data_processing_options: tuple[str, ...] | None = None
    data_processing_options_country: int | None = None
    data_processing_options_state: int | None = None
    # Meta's opt_out: use the event for attribution only, never for ad delivery optimization.
    opt_out: bool | None = None


@dataclass(frozen=True, slots=True)
class App:
    """Mobile app context for app events (Meta app_data). Empty for web and server-only conversions."""

    # Meta's 16 positional device fields (version a2/i2, package, short/long version, OS version, ...).
    extinfo: tuple[str, ...] | None = None
    advertiser_tracking_enabled: bool | None = None  # iOS ATT granted
    application_tracking_enabled: bool | None = None  # the app's own tracking switch
    install_referrer: str | None = None
    installer_package: str | None = None
    url_schemes: tuple[str, ...] | None = None
    anon_id: str | None = None  # app install id (Meta user_data.anon_id)
    madid: str | None = None  # IDFA / GAID (Meta user_data.madid)


@dataclass(frozen=True, slots=True)
class Original:
    """The earlier conversion a delayed event (refund, renewal) belongs to, when the provider knows it."""

    event_id: str | None = None  # canonical event_id of the original conversion
    name: str | None = None  # canonical name of the original conversion, e.g. "purchase"
    transaction_id: str | None = None
    occurred_at: str | None = None  # ISO 8601 with offset


@dataclass(frozen=True, slots=True)
class ConversionEvent:
    event_id: str  # stable across provider retries: derived from the provider object + kind
    name: str  # purchase | refund | subscription_start | subscription_renewal | custom
    occurred_at: datetime  # UTC, from the provider object, not the arrival time
    source: Source
    # Major units, never negative: a refund carries the amount refunded and each destination applies
    # its own sign convention (GA4 reports refunds as positive values, AppsFlyer wants negative revenue).
    value: Decimal | None = None
    currency: str | None = None  # ISO 4217, upper case
    transaction_id: str | None = None
    items: tuple[Item, ...] = ()
    tax: Decimal | None = None
    shipping: Decimal | None = None
    coupon: str | None = None
    subscription_id: str | None = None
    person: Person = field(default_factory=Person)
    context: Context = field(default_factory=Context)
    consent: Consent = field(default_factory=Consent)
    properties: dict[str, str] = field(default_factory=dict)  # custom event parameters
    schema_version: int = SCHEMA_VERSION
    # Per-user attributes (GA4 user_properties); appended after schema_version to keep field order.
    user_properties: dict[str, str] = field(default_factory=dict)
    # Meta custom_data.predicted_ltv, major units; app data and the original conversion (Meta app_data,
    # original_event_data). Appended for the same reason.
    predicted_ltv: Decimal | None = None
    app: App = field(default_factory=App)
    original: Original = field(default_factory=Original)

    @property
    def livemode(self) -> bool:
        return self.source.livemode

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, body: str) -> ConversionEvent:
        try:
            data = json.loads(body)
        except (TypeError, ValueError) as error:
            raise InvalidEvent("$", f"not JSON ({error.__class__.__name__})") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> ConversionEvent:
        if not isinstance(data, dict):
            raise InvalidEvent("$", "must be a JSON object")
        version = data.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise InvalidEvent(
                "schema_version", f"unsupported version {version!r}, expected {SCHEMA_VERSION}"
            )
        source = _section(Source, data.get("source"), "source", required=True)
        items_raw = data.get("items") or []
        if not isinstance(items_raw, list):
            raise InvalidEvent("items", "must be a list")
        return cls(
            event_id=_text(data, "event_id", "event_id", required=True),
            name=_text(data, "name", "name", required=True),
            occurred_at=_timestamp(data.get("occurred_at"), "occurred_at"),
            source=source,
            value=_decimal(data.get("value"), "value"),
            currency=_currency(data.get("currency")),
            transaction_id=_text(data, "transaction_id", "transaction_id"),
            items=tuple(_section(Item, raw, f"items[{index}]") for index, raw in enumerate(items_raw)),
            tax=_decimal(data.get("tax"), "tax"),
            shipping=_decimal(data.get("shipping"), "shipping"),
            coupon=_text(data, "coupon", "coupon"),
            subscription_id=_text(data, "subscription_id", "subscription_id"),
            person=_section(Person, data.get("person"), "person"),
            context=_section(Context, data.get("context"), "context"),
            consent=_section(Consent, data.get("consent"), "consent"),
            properties=_properties(data.get("properties")),
            user_properties=_properties(data.get("user_properties"), "user_properties"),
            predicted_ltv=_decimal(data.get("predicted_ltv"), "predicted_ltv"),
            app=_section(App, data.get("app"), "app"),
            original=_section(Original, data.get("original"), "original"),
        )


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items() if item is not None}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value


def _text(data: dict[str, Any], key: str, path: str, *, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        if required:
            raise InvalidEvent(path, "is required")
        return None
    if not isinstance(value, str):
        raise InvalidEvent(path, "must be a string")
    return value


def _decimal(value: Any, path: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidEvent(path, "must be a decimal number or numeric string")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise InvalidEvent(path, "must be a decimal number or numeric string") from None
    if not number.is_finite():
        raise InvalidEvent(path, "must be finite")
    return number


def _currency(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 3 or not value.isalpha() or not value.isascii():
        raise InvalidEvent("currency", "must be a 3-letter ISO 4217 code")
    return value.upper()


def _timestamp(value: Any, path: str) -> datetime:
    if not isinstance(value, str):
        raise InvalidEvent(path, "is required as an ISO 8601 timestamp")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidEvent(path, "is not an ISO 8601 timestamp") from None
    if parsed.tzinfo is None:
        raise InvalidEvent(path, "must carry a UTC offset")
    return parsed.astimezone(UTC)


_FIELD_TYPES: dict[type, dict[str, str]] = {}


def _section(kind: type, raw: Any, path: str, *, required: bool = False) -> Any:
    if raw is None:
        if required:
            raise InvalidEvent(path, "is required")
        return kind()
    if not isinstance(raw, dict):
        raise InvalidEvent(path, "must be a JSON object")
    types = _FIELD_TYPES.setdefault(kind, {f.name: str(f.type) for f in fields(kind)})
    unknown = sorted(set(raw) - set(types))
    if unknown:
        raise InvalidEvent(f"{path}.{unknown[0]}", "is not a known field")
    values: dict[str, Any] = {}
    for name, declared in types.items():
        value = raw.get(name)
        if value is None:
            continue
        field_path = f"{path}.{name}"
        if declared.startswith("Decimal"):
            values[name] = _decimal(value, field_path)
        elif declared.startswith("bool"):
            if not isinstance(value, bool):
                raise InvalidEvent(field_path, "must be true or false")
            values[name] = value
        elif declared.startswith("int"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidEvent(field_path, "must be an integer")
            values[name] = value
        elif declared.startswith("tuple"):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InvalidEvent(field_path, "must be a list of strings")
            values[name] = tuple(value)
        else:
            if not isinstance(value, str):
                raise InvalidEvent(field_path, "must be a string")
            values[name] = value
    missing = [f.name for f in fields(kind) if f.name not in values and _is_required(f)]
    if missing:
        raise InvalidEvent(f"{path}.{missing[0]}", "is required")
    return kind(**values)


def _is_required(model_field: Any) -> bool:
    from dataclasses import MISSING

    return model_field.default is MISSING and model_field.default_factory is MISSING


def _properties(raw: Any, path: str = "properties") -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str | int | float) and not isinstance(v, bool)
        for k, v in raw.items()
    ):
        raise InvalidEvent(path, "must be an object of string keys to string or number values")
    return {key: str(value) for key, value in raw.items()}
