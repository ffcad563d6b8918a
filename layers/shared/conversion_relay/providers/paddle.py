"""Paddle Billing: verify `Paddle-Signature`, map transactions and refund adjustments.

Signature, as paddle-python-sdk's `PaddleSignature`/`Verifier` compute it: the header is
`ts=<unix>;h1=<hex>[;h1=<hex>...]`; the signed content is `"{ts}:{raw body}"` (a colon); the key is the
notification destination's secret key string, UTF-8, NOT decoded; HMAC-SHA256 hex, compared in constant
time against every h1 (Paddle sends more than one while a secret is rotated, and several configured
secrets are tried too). The SDK allows 5 s of clock difference each way; the relay uses
WEBHOOK_TOLERANCE_SECONDS (template parameter, default 300) instead, because a Lambda cold start alone
can take longer than 5 s. Unknown keys in the header are skipped (the SDK raises on them).

Mapping (the payload is a fat snapshot; amounts are STRINGS in the currency's lowest denomination,
"1000" = 10.00 USD, "9900" = ₩9,900; exponents are ISO 4217's, from data/currency_exponents.json, which
agree with Paddle's `decimal_places` for the currencies Paddle supports):
- transaction.completed -> purchase "paddle:purchase:<txn_id>", or subscription_renewal
  "paddle:subscription_renewal:<txn_id>" when `origin` is `subscription_recurring`; value
  `details.totals.total`, tax `details.totals.tax`. A transaction with origin
  `subscription_payment_method_change` is not a sale and is ignored.
- adjustment.created / adjustment.updated with action `refund` and status `approved` -> refund
  "paddle:refund:<adj_id>" of `totals.total` (a partial refund is an adjustment for part of the
  transaction). Pending, rejected and reversed adjustments, credits and chargebacks are ignored.
- anything else -> ignored.
Dedupe key: `notification_id` (per destination, the same on every retry), else `event_id`.
Browser identifiers come from the transaction's `custom_data` object (Paddle.js `customData`) under the
key names of config.metadata_key. Paddle transactions carry no e-mail (only `customer_id`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, ClassVar

from conversion_relay.config import ConfigError
from conversion_relay.model import (
    PURCHASE,
    REFUND,
    SUBSCRIPTION_RENEWAL,
    ConversionEvent,
    Item,
    Person,
    Source,
)
from conversion_relay.providers import common
from conversion_relay.signatures import (
    PayloadError,
    SignatureError,
    constant_time_equal,
    header,
    hmac_sha256_hex,
)

PROVIDER_NAME = "paddle"
SIGNATURE_HEADER = "paddle-signature"
SECRET_FIELD = "webhook_secrets"  # list of endpoint secret keys (pdl_ntfset_...)
SDK_TOLERANCE_SECONDS = 5  # what Paddle's SDKs allow; the relay's default is WEBHOOK_TOLERANCE_SECONDS
_NOT_A_SALE = frozenset({"subscription_payment_method_change"})


# --- authenticity -----------------------------------------------------------------------------------


def webhook_secrets(secret: Mapping[str, Any]) -> tuple[str, ...]:
    raw = secret.get(SECRET_FIELD)
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw or not all(isinstance(s, str) and s.strip() for s in raw):
        raise ConfigError(
            f"the paddle secret must hold {SECRET_FIELD}, a non-empty list of endpoint secret keys"
        )
    return tuple(raw)


def signature_header(body: bytes, secret: str, timestamp: int) -> str:
    """What Paddle would send for `body` (tests, sample events)."""
    return f"ts={timestamp};h1={hmac_sha256_hex(secret.encode('utf-8'), b'%d:' % timestamp + body)}"


def verify(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    tolerance_seconds: int = SDK_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    value = header(headers, SIGNATURE_HEADER)
    if not value:
        raise SignatureError("missing Paddle-Signature header")
    keys = [s for s in secrets if isinstance(s, str) and s.strip()]
    if not keys:
        raise ConfigError(f"no Paddle secret configured: fill {SECRET_FIELD} in the paddle secret")
    timestamp, signatures = _parse_header(value)
    current = time.time() if now is None else now
    if tolerance_seconds and timestamp < current - tolerance_seconds:
        raise SignatureError(
            f"Paddle-Signature ts is {int(current - timestamp)} s old (limit {tolerance_seconds} s):"
            " check this host's clock, or replay the notification from Paddle"
        )
    if tolerance_seconds and timestamp > current + tolerance_seconds:
        raise SignatureError(
            f"Paddle-Signature ts is {int(timestamp - current)} s in the future (limit {tolerance_seconds} s)"
        )
    signed = b"%d:" % timestamp + (body.encode("utf-8") if isinstance(body, str) else bytes(body))
    expected = [hmac_sha256_hex(key.encode("utf-8"), signed) for key in keys]
    if not any(constant_time_equal(digest, candidate) for digest in expected for candidate in signatures):
        raise SignatureError(
            "signature does not match any configured secret: compare the notification destination's"
            " secret key in Paddle with the paddle secret"
        )


def _parse_header(value: str) -> tuple[int, list[str]]:
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in value.split(";"):
        key, separator, part = item.strip().partition("=")
        if not separator:
            continue
        if key == "ts":
            timestamps.append(part)
        elif key == "h1":
            signatures.append(part)
    if not timestamps:
        raise SignatureError("malformed Paddle-Signature header: no ts=")
    try:
        timestamp = int(timestamps[0])
    except ValueError:
        raise SignatureError("malformed Paddle-Signature header: ts is not an integer") from None
    if not signatures:
        raise SignatureError("malformed Paddle-Signature header: no h1= signature")
    return timestamp, signatures


# --- parsing ----------------------------------------------------------------------------------------


def parse(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        raise PayloadError("body is not JSON, so not a Paddle notification") from None
    if not isinstance(payload, dict):
        raise PayloadError("body is not a JSON object, so not a Paddle notification")
    if not common.text(payload.get("event_type")):
        raise PayloadError("event_type is required as a non-empty string in a Paddle notification")
    if not (common.text(payload.get("notification_id")) or common.text(payload.get("event_id"))):
        raise PayloadError("notification_id or event_id is required in a Paddle notification")
    if not isinstance(payload.get("data"), dict):
        raise PayloadError("data is required as a JSON object in a Paddle notification")
    return payload


def delivery_id(payload: Mapping[str, Any]) -> str:
    return str(common.text(payload.get("notification_id")) or payload["event_id"])


def event_type(payload: Mapping[str, Any]) -> str:
    return str(payload.get("event_type", ""))


# --- mapping ----------------------------------------------------------------------------------------


def to_events(payload: Mapping[str, Any]) -> list[ConversionEvent]:
    kind = event_type(payload)
    if kind == "transaction.completed":
        return _transaction(payload)
    if kind in ("adjustment.created", "adjustment.updated"):
        return _adjustment(payload)
    return []


def _transaction(payload: Mapping[str, Any]) -> list[ConversionEvent]:
    txn = payload["data"]
    origin = common.text(txn.get("origin"))
    if origin in _NOT_A_SALE or txn.get("status", "completed") != "completed":
        return []
    txn_id = _required(txn, "id")
    code = common.currency(txn.get("currency_code"), "data.currency_code")
    totals = common.as_dict(common.as_dict(txn.get("details")).get("totals"))
    name = SUBSCRIPTION_RENEWAL if origin == "subscription_recurring" else PURCHASE
    metadata = common.string_map(txn.get("custom_data"))
    tax = totals.get("tax")
    return [
        ConversionEvent(
            event_id=f"{PROVIDER_NAME}:{name}:{txn_id}",
            name=name,
            occurred_at=common.first_time(
                (payload.get("occurred_at"), "occurred_at"),
                (txn.get("billed_at"), "data.billed_at"),
                (txn.get("updated_at"), "data.updated_at"),
            ),
            source=_source(payload, txn_id),
            value=_amount(totals.get("total"), code, "data.details.totals.total"),
            currency=code,
            transaction_id=txn_id,
            items=_items(common.as_dict(txn.get("details")).get("line_items"), code),
            tax=_amount(tax, code, "data.details.totals.tax") if tax is not None else None,
            subscription_id=common.text(txn.get("subscription_id")),
            person=_person(txn.get("customer_id"), metadata),
            context=common.context(metadata),
            consent=common.consent(metadata),
        )
    ]


def _adjustment(payload: Mapping[str, Any]) -> list[ConversionEvent]:
    adjustment = payload["data"]
    if adjustment.get("action") != "refund" or adjustment.get("status") != "approved":
        return []
    adjustment_id = _required(adjustment, "id")
    code = common.currency(adjustment.get("currency_code"), "data.currency_code")
    totals = common.as_dict(adjustment.get("totals"))
    value = _amount(totals.get("total"), code, "data.totals.total")
    if value <= 0:
        return []
    metadata = common.string_map(adjustment.get("custom_data"))
    return [
        ConversionEvent(
            event_id=f"{PROVIDER_NAME}:{REFUND}:{adjustment_id}",
            name=REFUND,
            occurred_at=common.first_time(
                (adjustment.get("updated_at"), "data.updated_at"),
                (payload.get("occurred_at"), "occurred_at"),
            ),
            source=_source(payload, adjustment_id),
            value=value,
            currency=code,
            transaction_id=common.text(adjustment.get("transaction_id")),
            subscription_id=common.text(adjustment.get("subscription_id")),
            person=_person(adjustment.get("customer_id"), metadata),
            context=common.context(metadata),
            consent=common.consent(metadata),
        )
    ]


def _amount(value: Any, code: str, path: str) -> Decimal:
    """Paddle amounts are decimal-digit STRINGS in the lowest denomination ("1000" = 10.00 USD)."""
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return common.money(int(value.strip()), code, path)
    raise PayloadError(f"{path} must be a string of digits (an amount in the currency's lowest denomination)")


def _items(lines: Any, code: str) -> tuple[Item, ...]:
    if not isinstance(lines, list):
        return ()
    items = []
    for line in lines:
        if not isinstance(line, dict):
            continue
        product = common.as_dict(line.get("product"))
        unit = common.as_dict(line.get("unit_totals")).get("subtotal")
        quantity = line.get("quantity")
        items.append(
            Item(
                id=common.text(line.get("price_id")) or common.text(product.get("id")),
                name=common.text(product.get("name")),
                price=_amount(unit, code, "data.details.line_items[].unit_totals.subtotal")
                if unit is not None
                else None,
                quantity=quantity if common.is_int(quantity) and quantity > 0 else 1,
            )
        )
    return tuple(items)


def _person(customer_id: Any, metadata: Mapping[str, str]) -> Person:
    return common.person_from_metadata(metadata, external_id=common.text(customer_id))


def _source(payload: Mapping[str, Any], object_id: str) -> Source:
    return Source(
        provider=PROVIDER_NAME,
        event_id=delivery_id(payload),
        event_type=event_type(payload),
        object_id=object_id,
    )


def _required(obj: Mapping[str, Any], key: str) -> str:
    value = common.text(obj.get(key))
    if value is None:
        raise PayloadError(f"data.{key} is required as a non-empty string")
    return value


# --- registration -----------------------------------------------------------------------------------


class PaddleProvider(common.ModuleProvider):
    name: ClassVar[str] = PROVIDER_NAME

    def verify_request(
        self, headers: Mapping[str, str], body: bytes, secret: Mapping[str, Any], tolerance_seconds: int
    ) -> None:
        verify(headers, body, webhook_secrets(secret), tolerance_seconds)


PROVIDER = PaddleProvider(__name__)
