"""Toss Payments (토스페이먼츠): PAYMENT_STATUS_CHANGED is unsigned, so re-fetch the payment and map that.

Toss signs only payout.changed / seller.changed; the payment webhook carries no signature. Anyone can
post one, so the body is a hint: only `data.paymentKey` and `data.status` are read from it. The payment
itself comes from `GET {TOSS_API_BASE_URL}/v1/payments/{paymentKey}` with
`Authorization: Basic base64(<secret key> + ":")`; a paymentKey Toss does not know is a 404 and nothing is
enqueued. Optionally, TOSS_ALLOWED_SOURCE_IPS (comma-separated addresses or CIDRs; empty = off) limits
the callers to Toss's published webhook addresses (403 otherwise).

Mapping (event ids are stable, so a retry, a DEPOSIT_CALLBACK-style double, or a late webhook dedupes
downstream):
- webhook status DONE, fetched payment approved (status DONE, or already CANCELED / PARTIAL_CANCELED:
  the sale did happen) -> purchase "toss:purchase:<paymentKey>", value `totalAmount`; a payment of
  `type` BILLING (자동결제) -> subscription_renewal "toss:subscription_renewal:<paymentKey>".
- webhook status CANCELED / PARTIAL_CANCELED -> one refund per completed entry of the fetched
  `cancels[]`, value its `cancelAmount`, event_id "toss:refund:<paymentKey>:<cancel transactionKey>".
  Every cancel is emitted, not only the newest, so two quick partial cancels whose webhooks both read
  the final state still both count; the ones already sent are dropped by the consumers' ledger.
- anything else (WAITING_FOR_DEPOSIT, ABORTED, other event types) -> ignored, unfetched.

Amounts: Toss amounts are numbers in the currency's MAJOR units (KRW integers; overseas easy-pay in
USD carries decimals such as 49.99), so they are taken as they are, never divided by 10^exponent.
Dedupe key: the `tosspayments-webhook-transmission-id` header when present, else
"<paymentKey>:<webhook status>:<fetched lastTransactionKey>".
Browser identifiers, and customer e-mail/phone (absent from Toss's Payment object), come from the
payment's `metadata` under the key names of config.metadata_key (and `email`, `phone`, ... for Person).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar
from urllib.parse import quote

import requests

from conversion_relay.config import ConfigError
from conversion_relay.errors import SourceNotAllowed
from conversion_relay.model import PURCHASE, REFUND, SUBSCRIPTION_RENEWAL, ConversionEvent, Source
from conversion_relay.providers import common
from conversion_relay.signatures import PayloadError, header

PROVIDER_NAME = "toss"
SECRET_FIELD = "secret_key"  # the API secret key (test_sk_... / live_sk_...)
BASE_URL_VARIABLE = "TOSS_API_BASE_URL"
DEFAULT_BASE_URL = "https://api.tosspayments.com"
ALLOWED_IPS_VARIABLE = "TOSS_ALLOWED_SOURCE_IPS"
# docs.tosspayments.com/reference/using-api/http-protocol (re-check: Toss announces changes by e-mail).
PUBLISHED_SOURCE_IPS = ("13.124.18.147", "13.124.108.35", "3.36.173.151", "3.38.81.32")
TRANSMISSION_ID_HEADER = "tosspayments-webhook-transmission-id"
PAYMENT_STATUS_CHANGED = "PAYMENT_STATUS_CHANGED"
DONE = "DONE"
CANCELED = ("CANCELED", "PARTIAL_CANCELED")
_APPROVED = frozenset({DONE, *CANCELED})


# --- authenticity -----------------------------------------------------------------------------------


def secret_key(secret: Mapping[str, Any]) -> str:
    value = secret.get(SECRET_FIELD)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"the toss secret must hold {SECRET_FIELD} (the API secret key, test_sk_/live_sk_)")
    return value.strip()


def allowed_networks() -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    raw = os.environ.get(ALLOWED_IPS_VARIABLE, "")
    networks = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(
                f"{ALLOWED_IPS_VARIABLE} holds {item!r}, which is not an IP address or CIDR"
            ) from None
    return tuple(networks)


def check_source(source_ip: str | None) -> None:
    """SourceNotAllowed unless the caller is in TOSS_ALLOWED_SOURCE_IPS (no-op when that is empty)."""
    networks = allowed_networks()
    if not networks:
        return
    try:
        address = ipaddress.ip_address((source_ip or "").strip())
    except ValueError:
        address = None
    if address is None or not any(address in network for network in networks):
        # The caller's address is a server's, not a customer's, but it is still left out of the reason.
        raise SourceNotAllowed(
            f"the caller is not in {ALLOWED_IPS_VARIABLE}: update it if Toss announced new webhook addresses"
        )


# --- parsing and fetching ---------------------------------------------------------------------------


def parse(body: bytes) -> dict[str, Any]:
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError):
        raise PayloadError("body is not JSON, so not a Toss Payments webhook") from None
    if not isinstance(raw, dict):
        raise PayloadError("body is not a JSON object, so not a Toss Payments webhook")
    event_type = raw.get("eventType")
    if not isinstance(event_type, str) or not event_type:
        raise PayloadError("eventType is required as a non-empty string in a Toss Payments webhook")
    if event_type == PAYMENT_STATUS_CHANGED:
        data = raw.get("data")
        if not isinstance(data, dict) or not common.text(data.get("paymentKey")):
            raise PayloadError("data.paymentKey is required as a non-empty string in PAYMENT_STATUS_CHANGED")
        if not common.text(data.get("status")):
            raise PayloadError("data.status is required as a non-empty string in PAYMENT_STATUS_CHANGED")
    return raw


def _wanted(payload: Mapping[str, Any]) -> bool:
    if payload.get("eventType") != PAYMENT_STATUS_CHANGED:
        return False
    return common.as_dict(payload.get("data")).get("status") in (DONE, *CANCELED)


def fetch(
    payload: Mapping[str, Any],
    headers: Mapping[str, str],
    secret: Mapping[str, Any],
    session: requests.Session,
) -> dict[str, Any]:
    """{"webhook", "transmission_id" (header or None), "payment" (fetched, or None), "livemode"}."""
    payment = None
    key = secret_key(secret)
    if _wanted(payload):
        payment_key = str(payload["data"]["paymentKey"]).strip()
        token = base64.b64encode(f"{key}:".encode()).decode("ascii")
        url = common.base_url(BASE_URL_VARIABLE, DEFAULT_BASE_URL)
        payment = common.get_json(
            session,
            f"{url}/v1/payments/{quote(payment_key, safe='')}",
            headers={"Authorization": f"Basic {token}", "Accept": "application/json"},
            provider="Toss Payments",
            what="payment",
        )
        if common.text(payment.get("paymentKey")) not in (None, payment_key):
            raise PayloadError(
                "the Toss Payments API answered with a different payment than the webhook names"
            )
    return {
        "webhook": dict(payload),
        "transmission_id": common.text(header(headers, TRANSMISSION_ID_HEADER)),
        "payment": payment,
        # Test keys (test_sk_) can only read test payments, so the key tells the mode.
        "livemode": not key.startswith("test_"),
    }


def delivery_id(payload: Mapping[str, Any]) -> str:
    if payload.get("transmission_id"):
        return str(payload["transmission_id"])
    webhook = common.as_dict(payload.get("webhook", payload))
    data = common.as_dict(webhook.get("data"))
    payment = common.as_dict(payload.get("payment"))
    key = common.text(data.get("paymentKey")) or common.text(webhook.get("createdAt")) or "unknown"
    last = (
        common.text(payment.get("lastTransactionKey")) or common.text(data.get("lastTransactionKey")) or "-"
    )
    return f"{key}:{common.text(data.get('status')) or webhook.get('eventType')}:{last}"


def event_type(payload: Mapping[str, Any]) -> str:
    webhook = common.as_dict(payload.get("webhook", payload))
    status = common.as_dict(webhook.get("data")).get("status")
    kind = str(webhook.get("eventType", ""))
    return f"{kind}:{status}" if kind == PAYMENT_STATUS_CHANGED and isinstance(status, str) else kind


# --- mapping ----------------------------------------------------------------------------------------


def to_events(payload: Mapping[str, Any]) -> list[ConversionEvent]:
    webhook = common.as_dict(payload.get("webhook"))
    payment = payload.get("payment")
    if not isinstance(payment, dict) or not _wanted(webhook):
        return []
    if payment.get("status") not in _APPROVED:
        return []
    if webhook["data"]["status"] == DONE:
        return _purchase(payload, webhook, payment)
    return _refunds(payload, webhook, payment)


def _purchase(
    payload: Mapping[str, Any], webhook: dict[str, Any], payment: dict[str, Any]
) -> list[ConversionEvent]:
    payment_key = str(webhook["data"]["paymentKey"]).strip()
    code = common.currency(payment.get("currency") or "KRW", "payment.currency")
    metadata = common.string_map(payment.get("metadata"))
    name = SUBSCRIPTION_RENEWAL if payment.get("type") == "BILLING" else PURCHASE
    vat = payment.get("vat")
    return [
        ConversionEvent(
            event_id=f"{PROVIDER_NAME}:{name}:{payment_key}",
            name=name,
            occurred_at=common.first_time(
                (payment.get("approvedAt"), "payment.approvedAt"),
                (payment.get("requestedAt"), "payment.requestedAt"),
            ),
            source=_source(payload, webhook, payment_key),
            value=_amount(payment.get("totalAmount"), "payment.totalAmount"),
            currency=code,
            transaction_id=common.text(payment.get("orderId")) or payment_key,
            tax=_amount(vat, "payment.vat") if vat is not None else None,
            subscription_id=metadata.get("subscription_id"),
            person=common.person_from_metadata(metadata, external_id=metadata.get("customer_id")),
            context=common.context(metadata),
            consent=common.consent(metadata),
        )
    ]


def _refunds(
    payload: Mapping[str, Any], webhook: dict[str, Any], payment: dict[str, Any]
) -> list[ConversionEvent]:
    payment_key = str(webhook["data"]["paymentKey"]).strip()
    code = common.currency(payment.get("currency") or "KRW", "payment.currency")
    metadata = common.string_map(payment.get("metadata"))
    events = []
    for cancel in payment.get("cancels") or []:
        if not isinstance(cancel, dict) or cancel.get("cancelStatus", DONE) != DONE:
            continue  # a cancel Toss has not completed returned no money yet
        transaction_key = common.text(cancel.get("transactionKey"))
        if transaction_key is None:
            raise PayloadError("payment.cancels[].transactionKey is required to tell refunds apart")
        amount = _amount(cancel.get("cancelAmount"), "payment.cancels[].cancelAmount")
        if amount <= 0:
            continue
        events.append(
            ConversionEvent(
                event_id=f"{PROVIDER_NAME}:{REFUND}:{payment_key}:{transaction_key}",
                name=REFUND,
                occurred_at=common.first_time((cancel.get("canceledAt"), "payment.cancels[].canceledAt")),
                source=_source(payload, webhook, transaction_key),
                value=amount,
                currency=code,
                transaction_id=common.text(payment.get("orderId")) or payment_key,
                subscription_id=metadata.get("subscription_id"),
                person=common.person_from_metadata(metadata, external_id=metadata.get("customer_id")),
                context=common.context(metadata),
                consent=common.consent(metadata),
            )
        )
    return events


def _amount(value: Any, path: str) -> Decimal:
    """Toss amounts are major units already (₩1000 is 1000, $49.99 is 49.99)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PayloadError(f"{path} must be a number")
    try:
        # str() of a float is its shortest round-trip spelling: 49.99 stays 49.99, not 49.98999...
        number = Decimal(str(value))
    except InvalidOperation:
        raise PayloadError(f"{path} must be a number") from None
    if not number.is_finite() or number < 0:
        raise PayloadError(f"{path} must be a finite, non-negative number")
    return number


def _source(payload: Mapping[str, Any], webhook: Mapping[str, Any], object_id: str) -> Source:
    return Source(
        provider=PROVIDER_NAME,
        event_id=delivery_id(payload),
        event_type=event_type(webhook),
        object_id=object_id,
        livemode=payload.get("livemode") is not False,
    )


# --- registration -----------------------------------------------------------------------------------


class TossProvider(common.ModuleProvider):
    name: ClassVar[str] = PROVIDER_NAME

    def check_source(self, source_ip: str | None) -> None:
        check_source(source_ip)

    def verify_request(
        self, headers: Mapping[str, str], body: bytes, secret: Mapping[str, Any], tolerance_seconds: int
    ) -> None:
        # Nothing is signed: authenticity comes from re-fetching the payment with our secret key.
        secret_key(secret)

    def resolve(
        self,
        payload: Mapping[str, Any],
        headers: Mapping[str, str],
        secret: Mapping[str, Any],
        session: requests.Session,
    ) -> dict[str, Any]:
        return fetch(payload, headers, secret, session)


PROVIDER = TossProvider(__name__)
