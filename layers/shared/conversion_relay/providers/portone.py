"""PortOne (포트원) V2: verify the Standard Webhooks signature, fetch the payment, map it.

The webhook body (version 2024-04-25) is thin: `{"type", "timestamp", "data": {"paymentId", "storeId",
"transactionId", "cancellationId"?}}`. Amounts, currency, customer and `customData` are read from
`GET {PORTONE_API_BASE_URL}/payments/{paymentId}` with `Authorization: PortOne <api_secret>`, as
PortOne's own sample does; nothing in the body but the ids is used. The legacy body of version
2024-01-01 (`{"payment_id", "tx_id", "status"}`, JSON only) is read the same way.

Mapping (event_id is stable across webhook retries AND across two webhooks for the same fact):
- Transaction.Paid, payment status PAID (or already PARTIAL_CANCELLED / CANCELLED: the payment did
  happen) -> purchase "portone:purchase:<paymentId>"; subscription_renewal
  "portone:subscription_renewal:<paymentId>" when the payment carries a `billingKey` or a `scheduleId`
  (a billing-key or scheduled charge). Value `amount.total`, tax `amount.vat`.
- Transaction.Cancelled / Transaction.PartialCancelled -> refund of THAT cancellation: the entry of
  `cancellations[]` whose id is the webhook's `cancellationId` (status SUCCEEDED), value its
  `totalAmount`; event_id "portone:refund:<paymentId>:<cancellationId>". A cancellation PortOne
  does not list is a 404 (nothing enqueued); a REQUESTED or FAILED one is ignored.
- Other types (Ready, VirtualAccountIssued, Failed, Confirm, BillingKey.*, ...) -> ignored, unfetched.

Amounts are int64 minor units scaled by ISO 4217 (KRW 0 decimals, USD 2, ...). Browser identifiers come
from `customData`, a STRING the merchant sets to a JSON object (`{"ga_client_id": ..., "fbp": ...}`)
under the key names of config.metadata_key. The billing key itself is never copied into an event: it is
a credential that can charge the customer's card.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import quote

import requests

from conversion_relay.config import ConfigError
from conversion_relay.errors import ObjectNotFound
from conversion_relay.model import (
    PURCHASE,
    REFUND,
    SUBSCRIPTION_RENEWAL,
    ConversionEvent,
    Item,
    Person,
    Source,
)
from conversion_relay.providers import common, standard_webhooks
from conversion_relay.signatures import PayloadError, header

PROVIDER_NAME = "portone"
SECRET_FIELD = "webhook_secrets"  # list of whsec_ strings (PortOne allows two active at once)
API_SECRET_FIELD = "api_secret"  # the V2 API secret, for the payment fetch
BASE_URL_VARIABLE = "PORTONE_API_BASE_URL"
DEFAULT_BASE_URL = "https://api.portone.io"
PAID = "Transaction.Paid"
CANCELLED = ("Transaction.Cancelled", "Transaction.PartialCancelled")
_PAID_STATUSES = frozenset({"PAID", "PARTIAL_CANCELLED", "CANCELLED"})


# --- authenticity -----------------------------------------------------------------------------------


def webhook_secrets(secret: Mapping[str, Any]) -> tuple[str, ...]:
    raw = secret.get(SECRET_FIELD)
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw or not all(isinstance(s, str) and s.strip() for s in raw):
        raise ConfigError(f"the portone secret must hold {SECRET_FIELD}, a non-empty list of whsec_ strings")
    return tuple(raw)


def api_secret(secret: Mapping[str, Any]) -> str:
    value = secret.get(API_SECRET_FIELD)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"the portone secret must hold {API_SECRET_FIELD} (the V2 API secret)")
    return value.strip()


def verify(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    tolerance_seconds: int = standard_webhooks.DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> str:
    """The webhook-id once the Standard Webhooks signature checks out; SignatureError otherwise."""
    return standard_webhooks.verify(headers, body, secrets, tolerance_seconds, now, sender="PortOne")


# --- parsing and fetching ---------------------------------------------------------------------------


def parse(body: bytes) -> dict[str, Any]:
    """The webhook body normalised to the 2024-04-25 shape; PayloadError if it is not a PortOne webhook."""
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError):
        raise PayloadError(
            "body is not JSON (set the webhook version to 2024-04-25, or send 2024-01-01 as JSON)"
        ) from None
    if not isinstance(raw, dict):
        raise PayloadError("body is not a JSON object, so not a PortOne webhook")
    if "type" not in raw and isinstance(raw.get("payment_id"), str) and isinstance(raw.get("status"), str):
        # Webhook version 2024-01-01: {"payment_id", "tx_id", "status"}.
        raw = {
            "type": f"Transaction.{raw['status']}",
            "data": {"paymentId": raw["payment_id"], "transactionId": raw.get("tx_id")},
        }
    event_type = raw.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise PayloadError("type is required as a non-empty string in a PortOne webhook")
    data = raw.get("data")
    if event_type.startswith("Transaction.") and not (
        isinstance(data, dict) and common.text(data.get("paymentId"))
    ):
        raise PayloadError("data.paymentId is required as a non-empty string in a Transaction webhook")
    return raw


def fetch(
    payload: Mapping[str, Any],
    headers: Mapping[str, str],
    secret: Mapping[str, Any],
    session: requests.Session,
) -> dict[str, Any]:
    """{"webhook": body, "webhook_id": header, "payment": PortOne payment or None when not needed}."""
    webhook_id = standard_webhooks_id(headers)
    event_type = str(payload.get("type"))
    payment = None
    if event_type == PAID or event_type in CANCELLED:
        data = payload["data"]
        payment_id = str(data["paymentId"])
        params = {"storeId": str(data["storeId"])} if common.text(data.get("storeId")) else None
        payment = common.get_json(
            session,
            f"{common.base_url(BASE_URL_VARIABLE, DEFAULT_BASE_URL)}/payments/{quote(payment_id, safe='')}",
            headers={"Authorization": f"PortOne {api_secret(secret)}", "Accept": "application/json"},
            params=params,
            provider="PortOne",
            what="payment",
        )
        if common.text(payment.get("id")) not in (None, payment_id):
            raise PayloadError("the PortOne API answered with a different payment than the webhook names")
    return {"webhook": dict(payload), "webhook_id": webhook_id, "payment": payment}


def standard_webhooks_id(headers: Mapping[str, str]) -> str:
    value = header(headers, standard_webhooks.ID_HEADER)
    if not value:
        raise PayloadError("webhook-id header is required")
    return value


def delivery_id(payload: Mapping[str, Any]) -> str:
    """The `webhook-id` header: the same on every retry (the Standard Webhooks idempotency key)."""
    return str(payload["webhook_id"])


def event_type(payload: Mapping[str, Any]) -> str:
    return str(payload.get("webhook", payload).get("type", ""))


# --- mapping ----------------------------------------------------------------------------------------


def to_events(payload: Mapping[str, Any]) -> list[ConversionEvent]:
    webhook = common.as_dict(payload.get("webhook"))
    payment = payload.get("payment")
    if not isinstance(payment, dict):
        return []
    kind = str(webhook.get("type"))
    if kind == PAID:
        return _paid(payload, webhook, payment)
    if kind in CANCELLED:
        return _cancelled(payload, webhook, payment)
    return []


def _paid(
    payload: Mapping[str, Any], webhook: dict[str, Any], payment: dict[str, Any]
) -> list[ConversionEvent]:
    if payment.get("status") not in _PAID_STATUSES:
        return []  # e.g. FAILED or VIRTUAL_ACCOUNT_ISSUED by the time we read it: nothing was paid
    payment_id = str(webhook["data"]["paymentId"])
    code = common.currency(payment.get("currency"), "payment.currency")
    amount = common.as_dict(payment.get("amount"))
    metadata = common.json_string_map(payment.get("customData"))
    recurring = bool(common.text(payment.get("billingKey")) or common.text(payment.get("scheduleId")))
    name = SUBSCRIPTION_RENEWAL if recurring else PURCHASE
    vat = amount.get("vat")
    return [
        ConversionEvent(
            event_id=f"{PROVIDER_NAME}:{name}:{payment_id}",
            name=name,
            occurred_at=common.first_time(
                (payment.get("paidAt"), "payment.paidAt"),
                (payment.get("statusChangedAt"), "payment.statusChangedAt"),
            ),
            source=_source(payload, webhook, payment_id, payment),
            value=common.money(amount.get("total"), code, "payment.amount.total"),
            currency=code,
            transaction_id=payment_id,
            items=_items(payment.get("products"), code),
            tax=common.money(vat, code, "payment.amount.vat") if common.is_int(vat) else None,
            subscription_id=metadata.get("subscription_id") or common.text(payment.get("scheduleId")),
            person=_person(payment, metadata),
            context=common.context(metadata),
            consent=common.consent(metadata),
        )
    ]


def _cancelled(
    payload: Mapping[str, Any], webhook: dict[str, Any], payment: dict[str, Any]
) -> list[ConversionEvent]:
    payment_id = str(webhook["data"]["paymentId"])
    cancellations = [c for c in payment.get("cancellations") or [] if isinstance(c, dict)]
    wanted = common.text(webhook["data"].get("cancellationId"))
    if wanted is not None:
        cancellation = next((c for c in cancellations if common.text(c.get("id")) == wanted), None)
        if cancellation is None:
            raise ObjectNotFound(
                "the PortOne payment does not list the cancellation this webhook names; PortOne will retry"
            )
    else:  # legacy webhooks carry no cancellationId: the newest succeeded cancellation is the one
        succeeded = [c for c in cancellations if c.get("status") == "SUCCEEDED" and common.text(c.get("id"))]
        if not succeeded:
            return []
        cancellation = max(succeeded, key=lambda c: str(c.get("cancelledAt") or c.get("requestedAt") or ""))
    if cancellation.get("status") != "SUCCEEDED":
        return []  # REQUESTED or FAILED: no money went back (yet); PortOne sends another webhook when it does
    cancellation_id = str(cancellation["id"])
    code = common.currency(payment.get("currency"), "payment.currency")
    amount = common.money(cancellation.get("totalAmount"), code, "payment.cancellations[].totalAmount")
    if amount <= 0:
        return []
    metadata = common.json_string_map(payment.get("customData"))
    return [
        ConversionEvent(
            event_id=f"{PROVIDER_NAME}:{REFUND}:{payment_id}:{cancellation_id}",
            name=REFUND,
            occurred_at=common.first_time(
                (cancellation.get("cancelledAt"), "payment.cancellations[].cancelledAt"),
                (cancellation.get("requestedAt"), "payment.cancellations[].requestedAt"),
            ),
            source=_source(payload, webhook, cancellation_id, payment),
            value=amount,
            currency=code,
            transaction_id=payment_id,
            subscription_id=metadata.get("subscription_id") or common.text(payment.get("scheduleId")),
            person=_person(payment, metadata),
            context=common.context(metadata),
            consent=common.consent(metadata),
        )
    ]


def _items(products: Any, code: str) -> tuple[Item, ...]:
    if not isinstance(products, list):
        return ()
    items = []
    for product in products:
        if not isinstance(product, dict):
            continue
        quantity = product.get("quantity")
        unit = product.get("amount")
        items.append(
            Item(
                id=common.text(product.get("id")) or common.text(product.get("code")),
                name=common.text(product.get("name")),
                price=common.money(unit, code, "payment.products[].amount") if common.is_int(unit) else None,
                quantity=quantity if common.is_int(quantity) and quantity > 0 else 1,
                category=common.text(product.get("tag")),
            )
        )
    return tuple(items)


def _person(payment: Mapping[str, Any], metadata: Mapping[str, str]) -> Person:
    customer = common.as_dict(payment.get("customer"))
    address = common.as_dict(customer.get("address"))
    name = customer.get("name")
    if isinstance(name, dict):  # some API versions split the name
        full = common.text(name.get("full"))
        first, last = common.text(name.get("first")), common.text(name.get("last"))
    else:
        full, first, last = common.text(name), None, None
    if full and not (first or last):
        first, _, rest = full.partition(" ")
        last = rest.strip() or None
    return common.person_from_metadata(
        metadata,
        email=common.text(customer.get("email")),
        phone=common.text(customer.get("phoneNumber")),
        first_name=first,
        last_name=last,
        gender=common.text(customer.get("gender")),
        city=common.text(address.get("city")),
        state=common.text(address.get("province")),
        zip=common.text(customer.get("zipcode")),
        country=common.text(address.get("country")),
        external_id=common.text(customer.get("id")),
    )


def _source(
    payload: Mapping[str, Any], webhook: Mapping[str, Any], object_id: str, payment: Mapping[str, Any]
) -> Source:
    channel_type = common.as_dict(payment.get("channel")).get("type")
    return Source(
        provider=PROVIDER_NAME,
        event_id=str(payload.get("webhook_id") or ""),
        event_type=str(webhook.get("type")),
        object_id=object_id,
        livemode=channel_type != "TEST",
    )


# --- registration -----------------------------------------------------------------------------------


class PortOneProvider(common.ModuleProvider):
    name: ClassVar[str] = PROVIDER_NAME

    def verify_request(
        self, headers: Mapping[str, str], body: bytes, secret: Mapping[str, Any], tolerance_seconds: int
    ) -> None:
        verify(headers, body, webhook_secrets(secret), tolerance_seconds)

    def resolve(
        self,
        payload: Mapping[str, Any],
        headers: Mapping[str, str],
        secret: Mapping[str, Any],
        session: requests.Session,
    ) -> dict[str, Any]:
        return fetch(payload, headers, secret, session)


PROVIDER = PortOneProvider(__name__)
