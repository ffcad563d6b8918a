"""Toss Payments: the unsigned webhook is only a hint; the read-back, the allow-list and the mapping."""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

import pytest
import requests
import responses

from conversion_relay.config import ConfigError
from conversion_relay.errors import ObjectNotFound, ProviderUnavailable, SourceNotAllowed
from conversion_relay.providers import get_provider, toss
from conversion_relay.signatures import PayloadError

SECRET_DICT = {"secret_key": "test_sk_unit"}
BASE = "https://api.toss.test"
METADATA = {"ga_client_id": "111.222", "fbp": "fb.1.2.3", "email": "minsu@example.com"}


def webhook(status: str = "DONE", payment_key: str = "pk_1", **data: Any) -> dict[str, Any]:
    return {
        "eventType": "PAYMENT_STATUS_CHANGED",
        "createdAt": "2026-01-02T14:46:59.653270",
        # A forged body may say anything here; only paymentKey and status are read.
        "data": {"paymentKey": payment_key, "status": status, "totalAmount": 1, "orderId": "forged", **data},
    }


def payment(
    payment_key: str = "pk_1",
    *,
    status: str = "DONE",
    total: float | int = 59000,
    currency: str = "KRW",
    kind: str = "NORMAL",
    cancels: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "mId": "tvivarepublica",
        "paymentKey": payment_key,
        "orderId": "order-1001",
        "orderName": "Premium plan",
        "lastTransactionKey": "txk_last",
        "status": status,
        "type": kind,
        "method": "카드",
        "currency": currency,
        "totalAmount": total,
        "balanceAmount": total,
        "vat": 5364 if currency == "KRW" else 0,
        "requestedAt": "2026-01-02T14:45:00+09:00",
        "approvedAt": "2026-01-02T14:46:59+09:00",
        "metadata": METADATA,
        "cancels": cancels,
    }


def cancel(key: str, amount: float | int, when: str = "2026-01-03T10:00:00+09:00") -> dict[str, Any]:
    return {"transactionKey": key, "cancelAmount": amount, "canceledAt": when, "cancelStatus": "DONE"}


def resolved(hook, pay, transmission_id="tx-id-1"):
    return {"webhook": hook, "transmission_id": transmission_id, "payment": pay, "livemode": False}


def test_registered_under_toss():
    assert get_provider("toss") is toss.PROVIDER


def test_nothing_to_verify_but_the_secret_key_must_exist():
    toss.PROVIDER.verify_request({}, b"{}", SECRET_DICT, 300)
    with pytest.raises(ConfigError):
        toss.PROVIDER.verify_request({}, b"{}", {}, 300)


# --- allow-list -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allowed", "source", "ok"),
    [
        ("", "198.51.100.7", True),
        (",".join(toss.PUBLISHED_SOURCE_IPS), "13.124.18.147", True),
        (",".join(toss.PUBLISHED_SOURCE_IPS), "198.51.100.7", False),
        ("13.124.0.0/16", "13.124.108.35", True),
        ("13.124.18.147", None, False),
        ("13.124.18.147", "not-an-ip", False),
    ],
)
def test_source_allow_list(monkeypatch, allowed, source, ok):
    monkeypatch.setenv(toss.ALLOWED_IPS_VARIABLE, allowed)
    if ok:
        toss.check_source(source)
    else:
        with pytest.raises(SourceNotAllowed) as caught:
            toss.check_source(source)
        assert caught.value.status == 403 and (source or "x") not in caught.value.reason


def test_a_bad_allow_list_is_a_config_error(monkeypatch):
    monkeypatch.setenv(toss.ALLOWED_IPS_VARIABLE, "13.124.18.147,nonsense")
    with pytest.raises(ConfigError):
        toss.check_source("13.124.18.147")


# --- parsing and the read-back ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"x", b"[]", b'{"data": {}}', b'{"eventType": "PAYMENT_STATUS_CHANGED", "data": {"status": "DONE"}}'],
    ids=str,
)
def test_unreadable_bodies(body):
    with pytest.raises(PayloadError):
        toss.parse(body)


@pytest.fixture
def api(monkeypatch):
    monkeypatch.setenv(toss.BASE_URL_VARIABLE, BASE)
    with responses.RequestsMock() as mock:
        yield mock


def test_fetch_uses_basic_auth_with_the_secret_key(api):
    api.get(f"{BASE}/v1/payments/pk_1", json=payment())
    payload = toss.fetch(
        webhook(), {"tosspayments-webhook-transmission-id": "t-1"}, SECRET_DICT, requests.Session()
    )
    expected = "Basic " + base64.b64encode(b"test_sk_unit:").decode()
    assert api.calls[0].request.headers["Authorization"] == expected
    assert payload["transmission_id"] == "t-1" and payload["livemode"] is False


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ({"status": 404, "json": {"code": "NOT_FOUND_PAYMENT"}}, ObjectNotFound),
        ({"status": 500, "json": {}}, ProviderUnavailable),
        ({"body": requests.Timeout("slow")}, ProviderUnavailable),
        ({"status": 401, "json": {"code": "UNAUTHORIZED_KEY"}}, ConfigError),
    ],
    ids=["not-found", "toss-down", "timeout", "bad-key"],
)
def test_fetch_failures(api, answer, error):
    api.get(f"{BASE}/v1/payments/pk_1", **answer)
    with pytest.raises(error) as caught:
        toss.fetch(webhook(), {}, SECRET_DICT, requests.Session())
    assert "test_sk_unit" not in str(caught.value)


def test_other_event_types_are_not_fetched(api):
    payload = toss.fetch({"eventType": "DEPOSIT_CALLBACK", "data": {}}, {}, SECRET_DICT, requests.Session())
    assert payload["payment"] is None and toss.to_events(payload) == []


@pytest.mark.parametrize("status", ["WAITING_FOR_DEPOSIT", "ABORTED", "EXPIRED"])
def test_other_statuses_are_not_fetched(api, status):
    payload = toss.fetch(webhook(status), {}, SECRET_DICT, requests.Session())
    assert payload["payment"] is None and toss.to_events(payload) == []


# --- dedupe -----------------------------------------------------------------------------------------


def test_delivery_id_is_the_transmission_id_when_sent():
    assert toss.delivery_id(resolved(webhook(), payment(), "t-9")) == "t-9"


def test_delivery_id_without_transmission_id_is_key_status_last_transaction():
    assert (
        toss.delivery_id(resolved(webhook("PARTIAL_CANCELED"), payment(), None))
        == "pk_1:PARTIAL_CANCELED:txk_last"
    )


# --- mapping ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "total", "value"),
    [("KRW", 59000, Decimal("59000")), ("USD", 49.99, Decimal("49.99"))],
)
def test_done_is_a_purchase_from_the_fetched_payment(currency, total, value):
    (event,) = toss.to_events(resolved(webhook(), payment(total=total, currency=currency)))
    assert event.name == "purchase" and event.event_id == "toss:purchase:pk_1"
    assert event.value == value and event.currency == currency
    assert event.transaction_id == "order-1001"  # the fetched orderId, not the forged one
    assert event.context.ga_client_id == "111.222" and event.person.email == "minsu@example.com"
    assert event.source.livemode is False


def test_billing_payment_is_a_renewal():
    (event,) = toss.to_events(resolved(webhook(), payment(kind="BILLING")))
    assert event.name == "subscription_renewal" and event.event_id == "toss:subscription_renewal:pk_1"


def test_done_webhook_for_a_payment_that_is_not_approved_is_ignored():
    assert toss.to_events(resolved(webhook(), payment(status="WAITING_FOR_DEPOSIT"))) == []


@pytest.mark.parametrize(
    ("status", "currency", "cancels", "values"),
    [
        ("PARTIAL_CANCELED", "KRW", [cancel("c1", 10000)], [Decimal("10000")]),
        ("CANCELED", "KRW", [cancel("c1", 59000)], [Decimal("59000")]),
        (
            "PARTIAL_CANCELED",
            "USD",
            [cancel("c1", 10.5), cancel("c2", 4.25)],
            [Decimal("10.5"), Decimal("4.25")],
        ),
    ],
)
def test_cancels_are_refunds(status, currency, cancels, values):
    events = toss.to_events(
        resolved(webhook(status), payment(status=status, currency=currency, cancels=cancels))
    )
    assert [e.name for e in events] == ["refund"] * len(values)
    assert [e.value for e in events] == values
    assert [e.event_id for e in events] == [f"toss:refund:pk_1:{c['transactionKey']}" for c in cancels]


def test_an_incomplete_cancel_is_skipped():
    pending = {**cancel("c2", 500), "cancelStatus": "IN_PROGRESS"}
    events = toss.to_events(
        resolved(
            webhook("PARTIAL_CANCELED"),
            payment(status="PARTIAL_CANCELED", cancels=[cancel("c1", 100), pending]),
        )
    )
    assert [e.event_id for e in events] == ["toss:refund:pk_1:c1"]
