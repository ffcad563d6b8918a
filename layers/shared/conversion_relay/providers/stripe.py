"""Stripe: verify the `Stripe-Signature` header, parse the event, map it to canonical conversion events.

Verification follows stripe-python's `WebhookSignature.verify_header` step for step (parse the header,
match the signature, then check the timestamp) so that our answer and the SDK's always agree; the
contract test holds us to that. Several secrets may be configured while one is being rolled.

Mapping (classic "snapshot" events: `data.object` is the full object as it was when the event happened):

- checkout.session.completed (paid) and checkout.session.async_payment_succeeded -> purchase,
  value amount_total, event_id "stripe:purchase:<cs_id>".
- invoice.paid with billing_reason subscription_create -> subscription_start, subscription_cycle ->
  subscription_renewal; value amount_paid; event_id "stripe:<name>:<in_id>".
- charge.refunded -> refund with the amount of THIS refund; event_id "stripe:refund:<re_id>", or
  "stripe:refund:<ch_id>:<cumulative amount_refunded>" when the refund object is not in the payload.
- anything else -> nothing (ignored).

Decisions worth knowing:
- Both checkout events of one session share one event_id, so a session reported twice counts once.
- Checkout is counted only when `payment_status == "paid"`. "unpaid" (a delayed method: wait for
  async_payment_succeeded) and "no_payment_required" (free orders, setup mode) are ignored.
- Checkout sessions in `mode == "subscription"` are ignored: Stripe also sends invoice.paid with
  billing_reason subscription_create for the same first payment, and counting both would double the
  revenue. Merchants should copy the browser identifiers into `subscription_data.metadata` so that they
  reach the invoice (parent.subscription_details.metadata).
- invoice.paid with any other billing_reason (subscription_update, manual, ...) is ignored. A trial start
  (amount_paid 0) is still a subscription_start, with value 0.
- charge.refunded carries the CUMULATIVE `amount_refunded`. The amount of this refund is, in order:
  the newest refund in `refunds.data` (only present when the endpoint's API version or an expand
  includes it); else amount_refunded minus `previous_attributes.amount_refunded`; else amount_refunded
  itself, which is right for a first refund and overstates any later one when neither is available.
  API versions since 2022-11-15 send neither, so `resolve` (below) fills `refunds.data` from
  `GET /v1/refunds?charge=` when the stripe secret holds an optional `api_key`; see `resolve`.
- A refund's transaction_id is the charge's payment_intent (else the charge id), which is the
  transaction_id the purchase had when the checkout created that payment intent.
- Amounts are minor units converted with Stripe's own exponent table (ISK is two-decimal on Stripe).
- Person: name is split on the first space into first/last ("김민수" stays whole in first_name).
  external_id is the Stripe customer (cus_...) or, failing that, the checkout's client_reference_id.
- Context and consent come from metadata under the key names in config.metadata_key(); consent values
  "granted"/"true" and "denied"/"false" (any case) become True/False, anything else None.
- A raw browser Cookie header under metadata_key("cookies") fills the GA4 / Meta / AppsFlyer ids the
  explicit keys left empty (conversion_relay.cookies); malformed cookies are counted, never an error.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

import requests
from aws_lambda_powertools.metrics import MetricUnit

from conversion_relay.config import ConfigError
from conversion_relay.errors import ProviderUnavailable
from conversion_relay.model import (
    PURCHASE,
    REFUND,
    SUBSCRIPTION_RENEWAL,
    SUBSCRIPTION_START,
    Context,
    ConversionEvent,
    Item,
    Person,
    Source,
)
from conversion_relay.money import normalize_currency, to_major_units
from conversion_relay.observability import logger, metrics
from conversion_relay.providers import common
from conversion_relay.signatures import (
    PayloadError,
    SignatureError,
    constant_time_equal,
    header,
    hmac_sha256_hex,
)

__all__ = [
    "DEFAULT_TOLERANCE_SECONDS",
    "PROVIDER",
    "PROVIDER_NAME",
    "SECRET_FIELD",
    "SIGNATURE_HEADER",
    "PayloadError",
    "SignatureError",
    "StripeProvider",
    "delivery_id",
    "parse",
    "resolve",
    "to_events",
    "verify",
    "webhook_secrets",
]

PROVIDER_NAME = "stripe"
SIGNATURE_HEADER = "stripe-signature"
SECRET_FIELD = "webhook_secrets"  # field of the stripe secret (JSON) holding the list of whsec_ strings
DEFAULT_TOLERANCE_SECONDS = 300  # stripe-python Webhook.DEFAULT_TOLERANCE
_SCHEME = "v1"
_CURRENCY_TABLE = "stripe"

API_KEY_FIELD = "api_key"  # optional field of the stripe secret: a restricted key with Refunds: Read
BASE_URL_VARIABLE = "STRIPE_API_BASE_URL"
DEFAULT_BASE_URL = "https://api.stripe.com"
REFUND_AMBIGUOUS_METRIC = "StripeRefundAmountAmbiguous"
REFUND_INEXACT_METRIC = "StripeRefundAmountInexact"
_REFUND_PAGE_SIZE = 100  # the List API's maximum
_MAX_REFUND_PAGES = 10  # 1,000 refunds of one charge; beyond that the oldest are not read
# A failed refund's amount goes back to the balance, and canceling is a kind of failure (Stripe's refunds
# guide), so neither counts toward the charge's amount_refunded; pending and requires_action ones do.
_UNCOUNTED_REFUND_STATUSES = frozenset({"failed", "canceled"})


# --- authenticity -----------------------------------------------------------------------------------


def verify(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Raise SignatureError unless some v1 signature in the header matches some configured secret.

    `body` must be the raw request bytes. A tolerance of 0 disables the age check, as in the SDK;
    timestamps in the future are accepted, as in the SDK.
    """
    value = header(headers, SIGNATURE_HEADER)
    if not value:
        raise SignatureError("missing Stripe-Signature header")
    keys = [secret for secret in secrets if isinstance(secret, str) and secret.strip()]
    if not keys:
        raise SignatureError(f"no Stripe webhook secret configured: fill {SECRET_FIELD} in the stripe secret")
    timestamp, signatures = _parse_signature_header(value)
    if not signatures:
        raise SignatureError("no v1 signature in header")
    # The SDK signs "%d.%s" % (int(t), body): the normalised integer, not the header's spelling of it.
    signed = b"%d." % timestamp + (body.encode("utf-8") if isinstance(body, str) else bytes(body))
    expected = [hmac_sha256_hex(key.encode("utf-8"), signed) for key in keys]
    if not any(constant_time_equal(digest, candidate) for digest in expected for candidate in signatures):
        raise SignatureError("signature does not match any configured webhook secret")
    current = time.time() if now is None else now
    if tolerance_seconds and timestamp < current - tolerance_seconds:
        age = int(current - timestamp)
        raise SignatureError(
            f"timestamp outside the tolerance ({age} s old, limit {tolerance_seconds} s):"
            " check this host's clock, or resend the event from the Stripe Dashboard"
        )


def _parse_signature_header(value: str) -> tuple[int, list[str]]:
    # Mirrors the SDK: split on ",", then split("=", 2) and take the second part; unknown schemes
    # (v0, ...) are ignored; a t or v1 item without "=" makes the header unreadable; the first t wins.
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in value.split(","):
        parts = item.split("=", 2)
        if parts[0] not in ("t", _SCHEME):
            continue
        if len(parts) < 2:
            raise SignatureError(f"malformed Stripe-Signature header: {parts[0]} has no value")
        (timestamps if parts[0] == "t" else signatures).append(parts[1])
    if not timestamps:
        raise SignatureError("malformed Stripe-Signature header: no t= timestamp")
    try:
        timestamp = int(timestamps[0])
    except ValueError:
        raise SignatureError("malformed Stripe-Signature header: t= is not an integer") from None
    return timestamp, signatures


def webhook_secrets(secret: Mapping[str, Any]) -> tuple[str, ...]:
    """The configured whsec_ strings from the stripe secret (JSON), in order; ConfigError if unusable."""
    raw = secret.get(SECRET_FIELD)
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw or not all(isinstance(s, str) and s.strip() for s in raw):
        raise ConfigError(f"the stripe secret must hold {SECRET_FIELD}, a non-empty list of whsec_ strings")
    return tuple(raw)


# --- parsing ----------------------------------------------------------------------------------------


def parse(body: bytes) -> dict[str, Any]:
    """The event as a dict; PayloadError if the body is not a Stripe snapshot event."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise PayloadError("body is not JSON") from None
    if not isinstance(payload, dict):
        raise PayloadError("body is not a JSON object, so not a Stripe event")
    if payload.get("object") == "v2.core.event":
        raise PayloadError(
            "thin event notification (object v2.core.event) is not supported: send snapshot events"
            " (a classic webhook endpoint) to the relay"
        )
    if payload.get("object", "event") != "event":
        raise PayloadError("object is not 'event', so not a Stripe event")
    for key in ("id", "type"):
        if not isinstance(payload.get(key), str) or not payload[key]:
            raise PayloadError(f"{key} is required as a non-empty string in a Stripe event")
    data = payload.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise PayloadError("data.object is required as a JSON object in a Stripe event")
    return payload


def delivery_id(payload: Mapping[str, Any]) -> str:
    """The dedupe key for a delivery: the event id (evt_...), the same on every retry."""
    return str(payload["id"])


# --- mapping ----------------------------------------------------------------------------------------


def to_events(payload: Mapping[str, Any]) -> list[ConversionEvent]:
    """Canonical events for a parsed Stripe event; an empty list means the event is ignored."""
    handler = _HANDLERS.get(str(payload.get("type")))
    return [] if handler is None else handler(payload)


def _checkout_session(payload: Mapping[str, Any]) -> list[ConversionEvent]:
    session = payload["data"]["object"]
    if payload["type"] == "checkout.session.completed" and session.get("payment_status") != "paid":
        return []
    if session.get("mode") == "subscription":
        return []  # invoice.paid (subscription_create) reports the same payment; see the module docstring
    session_id = _required_id(session)
    currency = _currency(session.get("currency"))
    details = _dict(session.get("customer_details"))
    totals = _dict(session.get("total_details"))
    metadata = _merge_metadata(session.get("metadata"))
    return [
        ConversionEvent(
            event_id=f"stripe:{PURCHASE}:{session_id}",
            name=PURCHASE,
            # The event's own time is when the payment completed; the session was created earlier.
            occurred_at=_occurred_at(payload.get("created"), session.get("created")),
            source=_source(payload, session_id),
            value=_money(session.get("amount_total"), currency, "amount_total"),
            currency=currency,
            transaction_id=_id(session.get("payment_intent")) or session_id,
            items=_items(session.get("line_items"), currency),
            tax=_money(totals.get("amount_tax"), currency, "total_details.amount_tax"),
            shipping=_money(totals.get("amount_shipping"), currency, "total_details.amount_shipping"),
            subscription_id=_id(session.get("subscription")),
            person=_person(
                email=_text(details.get("email")) or _text(session.get("customer_email")),
                phone=details.get("phone"),
                name=details.get("name"),
                address=details.get("address"),
                external_id=_id(session.get("customer")) or _text(session.get("client_reference_id")),
            ),
            context=_context(metadata, payload.get("created")),
            consent=common.consent(metadata),
        )
    ]


_BILLING_REASONS = {"subscription_create": SUBSCRIPTION_START, "subscription_cycle": SUBSCRIPTION_RENEWAL}


def _invoice_paid(payload: Mapping[str, Any]) -> list[ConversionEvent]:
    invoice = payload["data"]["object"]
    name = _BILLING_REASONS.get(str(invoice.get("billing_reason")))
    if name is None:
        return []
    invoice_id = _required_id(invoice)
    currency = _currency(invoice.get("currency"))
    # API 2025-03-31.basil moved subscription fields under parent.subscription_details.
    current = _dict(_dict(invoice.get("parent")).get("subscription_details"))
    legacy = _dict(invoice.get("subscription_details"))
    metadata = _merge_metadata(current.get("metadata"), legacy.get("metadata"), invoice.get("metadata"))
    paid_at = _dict(invoice.get("status_transitions")).get("paid_at")
    return [
        ConversionEvent(
            event_id=f"stripe:{name}:{invoice_id}",
            name=name,
            occurred_at=_occurred_at(paid_at, payload.get("created")),
            source=_source(payload, invoice_id),
            value=_money(invoice.get("amount_paid"), currency, "amount_paid"),
            currency=currency,
            transaction_id=invoice_id,
            items=_items(invoice.get("lines"), currency),
            tax=_invoice_tax(invoice, currency),
            subscription_id=_id(current.get("subscription")) or _id(invoice.get("subscription")),
            person=_person(
                email=invoice.get("customer_email"),
                phone=invoice.get("customer_phone"),
                name=invoice.get("customer_name"),
                address=invoice.get("customer_address"),
                external_id=_id(invoice.get("customer")),
            ),
            context=_context(metadata, payload.get("created")),
            consent=common.consent(metadata),
        )
    ]


def _charge_refunded(payload: Mapping[str, Any]) -> list[ConversionEvent]:
    charge = payload["data"]["object"]
    charge_id = _required_id(charge)
    currency = _currency(charge.get("currency"))
    refund = _newest_refund(charge.get("refunds"))
    if refund is not None:
        refund_id = str(refund["id"])
        amount = _int(refund.get("amount"), "refunds.data[].amount")
        event_id, object_id = f"stripe:{REFUND}:{refund_id}", refund_id
        refund_created = refund.get("created")
        refund_metadata = refund.get("metadata")
    else:
        cumulative = _int(charge.get("amount_refunded"), "amount_refunded")
        if cumulative is None:
            raise PayloadError("data.object.amount_refunded is required as an integer on charge.refunded")
        previous = _dict(payload["data"].get("previous_attributes")).get("amount_refunded")
        amount = cumulative - previous if _is_int(previous) else cumulative
        event_id, object_id = f"stripe:{REFUND}:{charge_id}:{cumulative}", charge_id
        refund_created, refund_metadata = None, None
    if amount is None or amount <= 0:
        return []
    billing = _dict(charge.get("billing_details"))
    metadata = _merge_metadata(refund_metadata, charge.get("metadata"))
    return [
        ConversionEvent(
            event_id=event_id,
            name=REFUND,
            occurred_at=_occurred_at(refund_created, payload.get("created")),
            source=_source(payload, object_id),
            value=_money(amount, currency, "refund amount"),
            currency=currency,
            transaction_id=_id(charge.get("payment_intent")) or charge_id,
            person=_person(
                email=_text(billing.get("email")) or _text(charge.get("receipt_email")),
                phone=billing.get("phone"),
                name=billing.get("name"),
                address=billing.get("address"),
                external_id=_id(charge.get("customer")),
            ),
            context=_context(metadata, payload.get("created")),
            consent=common.consent(metadata),
        )
    ]


_HANDLERS = {
    "checkout.session.completed": _checkout_session,
    "checkout.session.async_payment_succeeded": _checkout_session,
    "invoice.paid": _invoice_paid,
    "charge.refunded": _charge_refunded,
}


def _newest_refund(refunds: Any) -> dict[str, Any] | None:
    data = _dict(refunds).get("data")
    if not isinstance(data, list):
        return None
    candidates = [r for r in data if isinstance(r, dict) and _text(r.get("id")) and _is_int(r.get("created"))]
    if not candidates:
        return None
    # Stripe lists newest first, so on a tie of `created` (same second) the earlier list entry wins.
    newest = candidates[0]
    for refund in candidates[1:]:
        if refund["created"] > newest["created"]:
            newest = refund
    return newest


def _items(lines: Any, currency: str | None) -> tuple[Item, ...]:
    """Checkout `line_items.data` (only present when expanded) or invoice `lines.data`."""
    data = _dict(lines).get("data")
    if not isinstance(data, list):
        return ()
    items: list[Item] = []
    for line in data:
        if not isinstance(line, dict):
            continue
        price = _dict(line.get("price"))
        price_details = _dict(_dict(line.get("pricing")).get("price_details"))  # invoices since basil
        quantity = line.get("quantity") if _is_int(line.get("quantity")) and line["quantity"] > 0 else 1
        # Checkout line items: amount_subtotal is before discounts and tax; invoice lines: amount.
        line_amount = line.get("amount_subtotal") if "amount_subtotal" in line else line.get("amount")
        unit = price.get("unit_amount")
        if not _is_int(unit):
            unit = line_amount // quantity if _is_int(line_amount) and line_amount % quantity == 0 else None
        items.append(
            Item(
                id=_text(price.get("id")) or _text(price_details.get("price")) or _text(line.get("id")),
                name=_text(line.get("description")),
                price=_money(unit, currency, "line item amount"),
                quantity=quantity,
            )
        )
    return tuple(items)


def _invoice_tax(invoice: Mapping[str, Any], currency: str | None) -> Decimal | None:
    if _is_int(invoice.get("tax")):  # before basil
        return _money(invoice["tax"], currency, "tax")
    taxes = invoice.get("total_taxes")
    if isinstance(taxes, list) and taxes:
        amounts = [t.get("amount") for t in taxes if isinstance(t, dict)]
        if amounts and all(_is_int(a) for a in amounts):
            return _money(sum(amounts), currency, "total_taxes")
    return None


def _person(*, email: Any, phone: Any, name: Any, address: Any, external_id: str | None) -> Person:
    first, last = _split_name(_text(name))
    place = _dict(address)
    return Person(
        email=_text(email),
        phone=_text(phone),
        first_name=first,
        last_name=last,
        street=_text(place.get("line1")),
        city=_text(place.get("city")),
        state=_text(place.get("state")),
        zip=_text(place.get("postal_code")),
        country=_text(place.get("country")),
        external_id=external_id,
    )


def _split_name(name: str | None) -> tuple[str | None, str | None]:
    if not name:
        return None, None
    first, _, last = name.partition(" ")
    return first or None, last.strip() or None


def _context(metadata: Mapping[str, str], created: Any = None) -> Context:
    # An fbclid in event_source_url is stamped with the event's own time so that every retry maps alike.
    return common.context(metadata, stamp_ms=created * 1000 if _is_int(created) and created > 0 else None)


def _merge_metadata(*sources: Any) -> dict[str, str]:
    """Earlier sources win; Stripe metadata values are strings, anything else (or blank) is dropped."""
    merged: dict[str, str] = {}
    for source in sources:
        for key, value in _dict(source).items():
            text = _text(value)
            if text is not None:
                merged.setdefault(key, text)
    return merged


def _source(payload: Mapping[str, Any], object_id: str) -> Source:
    livemode = payload.get("livemode")
    if not isinstance(livemode, bool):
        livemode = payload["data"]["object"].get("livemode")
    return Source(
        provider=PROVIDER_NAME,
        event_id=str(payload["id"]),
        event_type=str(payload["type"]),
        object_id=object_id,
        livemode=livemode if isinstance(livemode, bool) else True,
    )


def _occurred_at(*candidates: Any) -> datetime:
    for candidate in candidates:
        if _is_int(candidate) and candidate > 0:
            return datetime.fromtimestamp(candidate, UTC)
    raise PayloadError("created is required as unix seconds (event or object timestamp)")


def _currency(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return normalize_currency(value)
    except ValueError:
        raise PayloadError("data.object.currency must be a 3-letter ISO 4217 code") from None


def _money(amount: Any, currency: str | None, path: str) -> Decimal | None:
    if amount is None or currency is None:
        return None
    if not _is_int(amount):
        raise PayloadError(f"data.object.{path} must be an integer amount in minor units")
    return to_major_units(amount, currency, _CURRENCY_TABLE)


def _int(value: Any, path: str) -> int | None:
    if value is None:
        return None
    if not _is_int(value):
        raise PayloadError(f"data.object.{path} must be an integer amount in minor units")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _required_id(obj: Mapping[str, Any]) -> str:
    value = _text(obj.get("id"))
    if value is None:
        raise PayloadError("data.object.id is required as a non-empty string")
    return value


def _id(value: Any) -> str | None:
    """An id field that may also arrive expanded into the full object."""
    if isinstance(value, dict):
        value = value.get("id")
    return _text(value)


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# --- completing charge.refunded from the API -------------------------------------------------------


def api_key(secret: Mapping[str, Any]) -> str | None:
    """The optional API key of the stripe secret (None when absent or blank); ConfigError if not a string."""
    value = secret.get(API_KEY_FIELD)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise ConfigError(
            f"the stripe secret's {API_KEY_FIELD} must be a string (a restricted key rk_... with"
            " Refunds: Read), or absent"
        )
    return value.strip()


def resolve(
    payload: Mapping[str, Any], secret: Mapping[str, Any], session: requests.Session
) -> dict[str, Any]:
    """The event, with `data.object.refunds.data` = [the refund this charge.refunded reports] when the
    payload alone cannot tell it apart from earlier refunds of the same charge.

    Only a charge.refunded without `refunds.data` and without `previous_attributes.amount_refunded`
    (API versions since 2022-11-15 drop the refunds list from Charge objects) is completed, and only
    when the stripe secret holds `api_key`; otherwise the mapping falls back to the cumulative
    amount_refunded, counted as StripeRefundAmountAmbiguous when the charge is only partly refunded.
    Raises errors.ProviderUnavailable (503, Stripe retries), errors.ObjectNotFound (404),
    PayloadError (400) or ConfigError (500) as common.get_json classifies the API's answer.
    """
    if payload.get("type") != "charge.refunded":
        return dict(payload)
    data = payload["data"]
    charge = data["object"]
    cumulative = charge.get("amount_refunded")
    if (
        _newest_refund(charge.get("refunds")) is not None
        or _is_int(_dict(data.get("previous_attributes")).get("amount_refunded"))
        or not _is_int(cumulative)
        or cumulative <= 0
        or _text(charge.get("id")) is None
    ):
        return dict(payload)  # the mapping knows this refund's amount already, or will reject the event
    key = api_key(secret)
    if key is None or _key_mode_differs(key, payload):
        _count_ambiguous(payload, charge, cumulative, key)
        return dict(payload)
    refunds, complete = _list_refunds(session, str(charge["id"]).strip(), key)
    refund = _refund_for(payload, refunds, complete, cumulative)
    if refund is None:
        return dict(payload)
    resolved_charge = {**charge, "refunds": {"object": "list", "data": [dict(refund)], "has_more": False}}
    return {**payload, "data": {**data, "object": resolved_charge}}


def _count_ambiguous(
    payload: Mapping[str, Any], charge: Mapping[str, Any], cumulative: int, key: str | None
) -> None:
    captured = (
        charge.get("amount_captured") if _is_int(charge.get("amount_captured")) else charge.get("amount")
    )
    if not _is_int(captured) or cumulative >= captured:
        return  # fully refunded: most often one refund of everything, which the cumulative amount is
    metrics.add_metric(REFUND_AMBIGUOUS_METRIC, MetricUnit.Count, 1)
    logger.warning(
        "partial refund without the refund in the payload: its amount is the cumulative amount_refunded,"
        " which overstates it if the charge was refunded before",
        extra={
            "provider": PROVIDER_NAME,
            "event_id": str(payload.get("id")),
            "fix": (
                f"add {API_KEY_FIELD} (a restricted key with Refunds: Read) to the stripe secret"
                if key is None
                else f"the stripe secret's {API_KEY_FIELD} is for the other mode (test/live) than this event"
            ),
        },
    )


def _key_mode_differs(key: str, payload: Mapping[str, Any]) -> bool:
    """A test-mode key cannot read live charges and the reverse (sk_/rk_ + test_/live_ prefixes).

    One relay may serve a test and a live endpoint; their events must not all fail with a 404.
    """
    livemode = payload.get("livemode")
    if not isinstance(livemode, bool):
        return False
    if "_live_" in key[:8]:
        return not livemode
    if "_test_" in key[:8]:
        return livemode
    return False


def _list_refunds(session: requests.Session, charge_id: str, key: str) -> tuple[list[dict[str, Any]], bool]:
    """Every refund of the charge (newest first, as Stripe lists them), and whether the list is complete."""
    url = f"{common.base_url(BASE_URL_VARIABLE, DEFAULT_BASE_URL)}/v1/refunds"
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
    refunds: list[dict[str, Any]] = []
    params = {"charge": charge_id, "limit": str(_REFUND_PAGE_SIZE)}
    for _ in range(_MAX_REFUND_PAGES):
        try:
            page = common.get_json(
                session, url, headers=headers, provider="Stripe", what="charge's refunds", params=params
            )
        except ConfigError:
            raise ConfigError(
                f"the Stripe API refused the stripe secret's {API_KEY_FIELD} when listing refunds:"
                " it must be a key of this account and mode with Refunds: Read"
            ) from None
        batch = page.get("data")
        if not isinstance(batch, list):
            raise ProviderUnavailable(
                "the Stripe API answered the refund list without a data list; Stripe will retry"
            )
        listed = [
            r for r in batch if isinstance(r, dict) and _text(r.get("id")) and _is_int(r.get("created"))
        ]
        refunds.extend(listed)
        if page.get("has_more") is not True or not batch:
            return refunds, True
        last = batch[-1].get("id") if isinstance(batch[-1], dict) else None
        if not _text(last):
            return refunds, False
        params = {**params, "starting_after": str(last)}
    return refunds, False


def _counts(refund: Mapping[str, Any]) -> bool:
    return refund.get("status") not in _UNCOUNTED_REFUND_STATUSES and _is_int(refund.get("amount"))


def _refund_for(
    payload: Mapping[str, Any], refunds: list[dict[str, Any]], complete: bool, cumulative: int
) -> dict[str, Any] | None:
    """The refund that brought amount_refunded to `cumulative`, oldest first by (created, id).

    Exact when the running total of the counted refunds meets `cumulative` at one refund. Otherwise
    (a refund in it failed or was canceled since, two refunds in one second, more than 1,000 refunds)
    the newest refund created at or before the event, counted as StripeRefundAmountInexact. A list that
    cannot hold the event's refund yet (its refunds up to the event add up to less than `cumulative`)
    is not final: ProviderUnavailable, so Stripe delivers the event again later.
    """
    ordered = sorted(refunds, key=lambda r: (r["created"], str(r["id"])))
    if complete:
        running = 0
        for refund in ordered:
            if _counts(refund):
                running += refund["amount"]
                if running == cumulative:
                    return refund
    created = payload.get("created")
    before = [r for r in ordered if not _is_int(created) or r["created"] <= created]
    listed_total = sum(r["amount"] for r in before if _is_int(r.get("amount")))
    if complete and listed_total < cumulative:
        raise ProviderUnavailable(
            "the Stripe API does not list the refund this charge.refunded reports yet; Stripe will retry"
        )
    chosen = before[-1] if before else (ordered[0] if ordered else None)
    metrics.add_metric(REFUND_INEXACT_METRIC, MetricUnit.Count, 1)
    logger.warning(
        "no refund of the charge adds up to the event's amount_refunded: took the newest one before it",
        extra={
            "provider": PROVIDER_NAME,
            "event_id": str(payload.get("id")),
            "refund_id": None if chosen is None else str(chosen["id"]),
            "refunds_listed": len(refunds),
            "list_complete": complete,
        },
    )
    return chosen


# --- registration -----------------------------------------------------------------------------------


class StripeProvider(common.ModuleProvider):
    """The module's functions bundled for the ingest's provider registry (`PROVIDER`)."""

    name: ClassVar[str] = PROVIDER_NAME
    signature_header: ClassVar[str] = SIGNATURE_HEADER
    secret_field: ClassVar[str] = SECRET_FIELD

    def verify(
        self,
        headers: Mapping[str, str],
        body: bytes,
        secrets: Sequence[str],
        tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
        now: float | None = None,
    ) -> None:
        verify(headers, body, secrets, tolerance_seconds, now)

    def verify_request(
        self, headers: Mapping[str, str], body: bytes, secret: Mapping[str, Any], tolerance_seconds: int
    ) -> None:
        """The ingest's entry point: the whole stripe secret in, its webhook_secrets checked."""
        verify(headers, body, webhook_secrets(secret), tolerance_seconds)

    def resolve(
        self,
        payload: Mapping[str, Any],
        headers: Mapping[str, str],
        secret: Mapping[str, Any],
        session: requests.Session,
    ) -> dict[str, Any]:
        """Completes a charge.refunded that lacks its refund from the API (see `resolve` above)."""
        return resolve(payload, secret, session)

    def event_type(self, payload: Mapping[str, Any]) -> str:
        return str(payload.get("type", ""))

    def webhook_secrets(self, secret: Mapping[str, Any]) -> tuple[str, ...]:
        return webhook_secrets(secret)


PROVIDER = StripeProvider(__name__)
