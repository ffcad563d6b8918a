"""Paddle Billing: signature edge cases and the mapping of transactions and refund adjustments."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from conversion_relay.config import ConfigError
from conversion_relay.providers import get_provider, paddle
from conversion_relay.signatures import PayloadError, SignatureError

SECRET = "pdl_ntfset_unit_secret"


def transaction(
    *, origin: str = "web", total: str = "65215", tax: str = "5315", currency: str = "USD", **extra: Any
) -> dict[str, Any]:
    data = {
        "id": "txn_01h8",
        "status": "completed",
        "origin": origin,
        "customer_id": "ctm_01",
        "subscription_id": "sub_01" if origin == "subscription_recurring" else None,
        "currency_code": currency,
        "custom_data": {"ga_client_id": "111.222", "fbp": "fb.1.2.3", "af_user_id": "af-1"},
        "billed_at": "2026-01-02T05:46:00Z",
        "details": {
            "totals": {
                "subtotal": "59900",
                "tax": tax,
                "total": total,
                "grand_total": total,
                "currency_code": currency,
            },
            "line_items": [
                {
                    "price_id": "pri_01",
                    "quantity": 1,
                    "unit_totals": {"subtotal": "59900"},
                    "product": {"name": "Pro"},
                }
            ],
        },
        **extra,
    }
    return {
        "event_id": "evt_01",
        "event_type": "transaction.completed",
        "occurred_at": "2026-01-02T05:46:59.366122Z",
        "notification_id": "ntf_01",
        "data": data,
    }


def adjustment(
    *, action="refund", status="approved", total="1000", currency="USD", event="adjustment.updated"
):
    return {
        "event_id": "evt_02",
        "event_type": event,
        "occurred_at": "2026-01-03T00:00:00Z",
        "notification_id": "ntf_02",
        "data": {
            "id": "adj_01",
            "action": action,
            "status": status,
            "transaction_id": "txn_01h8",
            "subscription_id": None,
            "customer_id": "ctm_01",
            "currency_code": currency,
            "totals": {
                "subtotal": total,
                "tax": "0",
                "total": total,
                "fee": "0",
                "earnings": "0",
                "currency_code": currency,
            },
            "created_at": "2026-01-02T23:00:00Z",
            "updated_at": "2026-01-03T00:00:00Z",
        },
    }


def test_registered_under_paddle():
    assert get_provider("paddle") is paddle.PROVIDER


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("", "missing"),
        ("h1=abc", "no ts"),
        ("ts=abc;h1=abc", "not an integer"),
        ("ts=1700000000", "no h1"),
    ],
)
def test_malformed_headers(header, reason):
    with pytest.raises(SignatureError) as caught:
        paddle.verify({"paddle-signature": header}, b"{}", [SECRET], 300, now=1700000000)
    assert reason in caught.value.reason


@pytest.mark.parametrize(("age", "ok"), [(4, True), (299, True), (301, False), (-301, False)])
def test_tolerance_is_configurable(age, ok):
    header = paddle.signature_header(b"{}", SECRET, 1700000000 - age)
    if ok:
        paddle.verify({"paddle-signature": header}, b"{}", [SECRET], 300, now=1700000000)
    else:
        with pytest.raises(SignatureError):
            paddle.verify({"paddle-signature": header}, b"{}", [SECRET], 300, now=1700000000)


def test_sdk_default_tolerance_is_five_seconds():
    header = paddle.signature_header(b"{}", SECRET, 1700000000 - 6)
    with pytest.raises(SignatureError):
        paddle.verify({"paddle-signature": header}, b"{}", [SECRET], now=1700000000)


def test_secret_is_required():
    with pytest.raises(ConfigError):
        paddle.webhook_secrets({})


@pytest.mark.parametrize(
    "body", [b"x", b"[]", b'{"event_type": "x", "data": {}}', b'{"event_id": "e", "event_type": "x"}']
)
def test_unreadable_bodies(body):
    with pytest.raises(PayloadError):
        paddle.parse(body)


def test_delivery_id_is_the_notification_id():
    assert paddle.delivery_id(transaction()) == "ntf_01"


@pytest.mark.parametrize(
    ("currency", "total", "tax", "value", "tax_value"),
    [
        ("USD", "65215", "5315", Decimal("652.15"), Decimal("53.15")),
        ("KRW", "9900", "900", Decimal("9900"), Decimal("900")),
        ("JPY", "1200", "0", Decimal("1200"), Decimal("0")),
        ("KWD", "12345", "0", Decimal("12.345"), Decimal("0.000")),
    ],
)
def test_completed_transaction_is_a_purchase_in_major_units(currency, total, tax, value, tax_value):
    (event,) = paddle.to_events(
        paddle.parse(json.dumps(transaction(total=total, tax=tax, currency=currency)).encode())
    )
    assert event.name == "purchase" and event.event_id == "paddle:purchase:txn_01h8"
    assert event.value == value and event.tax == tax_value and event.currency == currency
    assert event.context.ga_client_id == "111.222" and event.context.af_user_id == "af-1"
    assert event.person.external_id == "ctm_01"
    assert event.source.event_id == "ntf_01"


def test_recurring_origin_is_a_renewal():
    (event,) = paddle.to_events(transaction(origin="subscription_recurring"))
    assert event.name == "subscription_renewal" and event.subscription_id == "sub_01"


def test_payment_method_change_is_not_a_sale():
    assert paddle.to_events(transaction(origin="subscription_payment_method_change")) == []


@pytest.mark.parametrize("bad", ["12.50", "-5", 1250, ""])
def test_amounts_must_be_digit_strings(bad):
    with pytest.raises(PayloadError):
        paddle.to_events(transaction(total=bad))


@pytest.mark.parametrize(
    ("currency", "total", "value"), [("USD", "1000", Decimal("10.00")), ("KRW", "5000", Decimal("5000"))]
)
@pytest.mark.parametrize("event_type", ["adjustment.created", "adjustment.updated"])
def test_approved_refund_adjustment_is_a_refund(currency, total, value, event_type):
    (event,) = paddle.to_events(adjustment(total=total, currency=currency, event=event_type))
    assert event.name == "refund" and event.value == value and event.currency == currency
    assert event.event_id == "paddle:refund:adj_01" and event.transaction_id == "txn_01h8"


@pytest.mark.parametrize(
    ("action", "status"),
    [
        ("refund", "pending_approval"),
        ("refund", "rejected"),
        ("refund", "reversed"),
        ("credit", "approved"),
        ("chargeback", "approved"),
    ],
)
def test_other_adjustments_are_ignored(action, status):
    assert paddle.to_events(adjustment(action=action, status=status)) == []


def test_other_event_types_are_ignored():
    assert paddle.to_events({**transaction(), "event_type": "transaction.paid"}) == []
