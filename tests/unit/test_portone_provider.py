"""PortOne V2: verification, the payment read-back and its failures, and the mapping of each event type."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
import requests
import responses

from conversion_relay.config import ConfigError
from conversion_relay.errors import ObjectNotFound, ProviderUnavailable
from conversion_relay.providers import get_provider, portone, standard_webhooks
from conversion_relay.signatures import PayloadError, SignatureError

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SECRET_DICT = {"webhook_secrets": [SECRET], "api_secret": "portone-api-secret"}
BASE = "https://api.portone.test"
CUSTOM_DATA = json.dumps({"ga_client_id": "111.222", "fbp": "fb.1.2.3", "consent_ad_user_data": "granted"})


def webhook(kind: str = "Transaction.Paid", payment_id: str = "order-1001", **data: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "timestamp": "2026-01-02T05:46:59.000Z",
        "data": {"paymentId": payment_id, "storeId": "store-1", "transactionId": "tx-1", **data},
    }


def payment(
    payment_id: str = "order-1001",
    *,
    total: int = 59000,
    currency: str = "KRW",
    status: str = "PAID",
    cancellations: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "status": status,
        "id": payment_id,
        "transactionId": "tx-1",
        "storeId": "store-1",
        "channel": {"type": "TEST", "pgProvider": "TOSSPAYMENTS"},
        "orderName": "Premium plan",
        "amount": {"total": total, "paid": total, "cancelled": 0, "vat": total // 11, "discount": 0},
        "currency": currency,
        "customer": {
            "id": "cust-1",
            "name": "김민수",
            "email": "minsu@example.com",
            "phoneNumber": "01012345678",
        },
        "customData": CUSTOM_DATA,
        "products": [{"id": "p1", "name": "Premium", "amount": total, "quantity": 1}],
        "requestedAt": "2026-01-02T05:45:00Z",
        "statusChangedAt": "2026-01-02T05:46:58Z",
        "paidAt": "2026-01-02T05:46:58Z",
        "cancellations": cancellations or [],
        **extra,
    }


def cancellation(cancel_id: str, amount: int, status: str = "SUCCEEDED") -> dict[str, Any]:
    return {
        "status": status,
        "id": cancel_id,
        "totalAmount": amount,
        "taxFreeAmount": 0,
        "vatAmount": 0,
        "reason": "고객 요청",
        "requestedAt": "2026-01-03T01:00:00Z",
        "cancelledAt": "2026-01-03T01:00:05Z",
    }


def resolved(hook: dict[str, Any], pay: dict[str, Any] | None, webhook_id: str = "msg_1") -> dict[str, Any]:
    return {"webhook": hook, "webhook_id": webhook_id, "payment": pay}


# --- verification -----------------------------------------------------------------------------------


def _signed(body: bytes, secrets=SECRET, ts: int = 1_800_000_000) -> dict[str, str]:
    return standard_webhooks.sign_headers(secrets, "msg_1", ts, body)


def test_registered_under_portone():
    assert get_provider("portone") is portone.PROVIDER


@pytest.mark.parametrize(
    ("headers", "body", "ok"),
    [
        pytest.param(_signed(b"{}"), b"{}", True, id="valid"),
        pytest.param(_signed(b"{}"), b"{ }", False, id="tampered"),
        pytest.param(_signed(b"{}", ts=1_800_000_000 - 400), b"{}", False, id="stale"),
        pytest.param(_signed(b"{}", ts=1_800_000_000 + 400), b"{}", False, id="future"),
        pytest.param(_signed(b"{}", secrets="whsec_" + "QUJD" * 8), b"{}", False, id="wrong-secret"),
        pytest.param({}, b"{}", False, id="unsigned"),
    ],
)
def test_verification(headers, body, ok):
    def check():
        portone.verify(headers, body, [SECRET], 300, now=1_800_000_000)

    if ok:
        check()
    else:
        with pytest.raises(SignatureError):
            check()


def test_two_active_secrets_rotate_without_downtime():
    new = "whsec_" + "QUJD" * 8
    headers = _signed(b"{}", secrets=new)
    portone.verify(headers, b"{}", [SECRET, new], 300, now=1_800_000_000)


def test_verify_request_needs_webhook_secrets():
    with pytest.raises(ConfigError):
        portone.PROVIDER.verify_request(_signed(b"{}"), b"{}", {"api_secret": "x"}, 300)


# --- parsing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body", [b"nope", b"[]", b'{"data": {}}', b'{"type": "Transaction.Paid", "data": {}}'], ids=str
)
def test_unreadable_bodies_are_payload_errors(body):
    with pytest.raises(PayloadError):
        portone.parse(body)


def test_legacy_2024_01_01_body_is_normalised():
    parsed = portone.parse(b'{"payment_id": "order-9", "tx_id": "tx-9", "status": "Paid"}')
    assert parsed["type"] == "Transaction.Paid" and parsed["data"]["paymentId"] == "order-9"


def test_unknown_types_parse_and_are_ignored_without_a_fetch():
    parsed = portone.parse(b'{"type": "BillingKey.Issued", "data": {"billingKey": "bk"}}')
    session = requests.Session()  # any request would fail: nothing is mocked
    with responses.RequestsMock():
        payload = portone.fetch(parsed, {"webhook-id": "msg_9"}, SECRET_DICT, session)
    assert payload["payment"] is None and portone.to_events(payload) == []
    assert portone.delivery_id(payload) == "msg_9"


# --- the read-back ----------------------------------------------------------------------------------


@pytest.fixture
def api(monkeypatch):
    monkeypatch.setenv(portone.BASE_URL_VARIABLE, BASE)
    with responses.RequestsMock() as mock:
        yield mock


def test_fetch_reads_the_payment_with_the_api_secret(api):
    api.get(f"{BASE}/payments/order%2F1001", json=payment("order/1001"))
    payload = portone.fetch(
        webhook(payment_id="order/1001"), {"webhook-id": "msg_1"}, SECRET_DICT, requests.Session()
    )
    request = api.calls[0].request
    assert request.headers["Authorization"] == "PortOne portone-api-secret"
    assert "storeId=store-1" in request.url
    assert payload["payment"]["id"] == "order/1001" and payload["webhook_id"] == "msg_1"


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        pytest.param({"status": 404, "json": {"type": "PAYMENT_NOT_FOUND"}}, ObjectNotFound, id="not-found"),
        pytest.param({"status": 503, "json": {}}, ProviderUnavailable, id="portone-down"),
        pytest.param({"status": 429, "json": {}}, ProviderUnavailable, id="throttled"),
        pytest.param({"body": requests.ConnectionError("refused")}, ProviderUnavailable, id="unreachable"),
        pytest.param({"status": 401, "json": {"type": "UNAUTHORIZED"}}, ConfigError, id="bad-api-secret"),
        pytest.param({"status": 400, "json": {"type": "INVALID_REQUEST"}}, PayloadError, id="bad-id"),
        pytest.param({"status": 200, "body": "<html>"}, ProviderUnavailable, id="not-json"),
    ],
)
def test_fetch_failures_are_classified(api, answer, error):
    api.get(f"{BASE}/payments/order-1001", **answer)
    with pytest.raises(error) as caught:
        portone.fetch(webhook(), {"webhook-id": "msg_1"}, SECRET_DICT, requests.Session())
    assert "portone-api-secret" not in str(caught.value) and "order-1001" not in str(caught.value)


def test_http_status_of_fetch_errors():
    assert ObjectNotFound.status == 404 and ProviderUnavailable.status == 503


# --- mapping ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "total", "value"),
    [("KRW", 59000, Decimal("59000")), ("USD", 4999, Decimal("49.99")), ("JPY", 1200, Decimal("1200"))],
)
def test_paid_is_a_purchase_in_major_units(currency, total, value):
    (event,) = portone.to_events(resolved(webhook(), payment(total=total, currency=currency)))
    assert event.name == "purchase" and event.event_id == "portone:purchase:order-1001"
    assert event.value == value and event.currency == currency
    assert event.transaction_id == "order-1001"
    assert event.context.ga_client_id == "111.222" and event.context.fbp == "fb.1.2.3"
    assert event.consent.ad_user_data is True
    assert event.person.email == "minsu@example.com" and event.person.external_id == "cust-1"
    assert event.source.event_id == "msg_1" and event.source.livemode is False
    assert event.items[0].price == value


@pytest.mark.parametrize("marker", [{"billingKey": "billing-key-abc"}, {"scheduleId": "sched-1"}])
def test_billing_key_or_schedule_is_a_renewal(marker):
    (event,) = portone.to_events(resolved(webhook(), payment(**marker)))
    assert event.name == "subscription_renewal"
    assert event.event_id == "portone:subscription_renewal:order-1001"
    assert "billing-key-abc" not in event.to_json()  # a credential that can charge the card


@pytest.mark.parametrize("status", ["FAILED", "VIRTUAL_ACCOUNT_ISSUED", "READY"])
def test_paid_webhook_for_an_unpaid_payment_is_ignored(status):
    assert portone.to_events(resolved(webhook(), payment(status=status))) == []


def test_a_paid_payment_already_cancelled_still_counts_the_purchase():
    (event,) = portone.to_events(resolved(webhook(), payment(status="CANCELLED")))
    assert event.name == "purchase"


@pytest.mark.parametrize(
    ("kind", "currency", "amount", "value"),
    [
        ("Transaction.PartialCancelled", "KRW", 10000, Decimal("10000")),
        ("Transaction.Cancelled", "KRW", 59000, Decimal("59000")),
        ("Transaction.PartialCancelled", "USD", 1250, Decimal("12.50")),
    ],
)
def test_cancel_is_a_refund_of_that_cancellation(kind, currency, amount, value):
    pay = payment(
        currency=currency,
        status="PARTIAL_CANCELLED",
        cancellations=[cancellation("c-old", 5000), cancellation("c-new", amount)],
    )
    (event,) = portone.to_events(resolved(webhook(kind, cancellationId="c-new"), pay))
    assert event.name == "refund" and event.value == value and event.currency == currency
    assert event.event_id == "portone:refund:order-1001:c-new"
    assert event.transaction_id == "order-1001"


def test_two_partial_cancels_are_two_refunds():
    pay = payment(
        cancellations=[cancellation("c1", 1000), cancellation("c2", 2000)], status="PARTIAL_CANCELLED"
    )
    first = portone.to_events(resolved(webhook("Transaction.PartialCancelled", cancellationId="c1"), pay))
    second = portone.to_events(
        resolved(webhook("Transaction.PartialCancelled", cancellationId="c2"), pay, "m2")
    )
    assert [e.value for e in first + second] == [Decimal("1000"), Decimal("2000")]
    assert first[0].event_id != second[0].event_id


def test_a_cancellation_portone_does_not_list_is_not_found():
    pay = payment(cancellations=[cancellation("c1", 1000)])
    with pytest.raises(ObjectNotFound):
        portone.to_events(resolved(webhook("Transaction.Cancelled", cancellationId="c-unknown"), pay))


def test_a_failed_cancellation_is_ignored():
    pay = payment(cancellations=[cancellation("c1", 1000, status="FAILED")])
    assert portone.to_events(resolved(webhook("Transaction.Cancelled", cancellationId="c1"), pay)) == []


def test_legacy_cancel_without_id_takes_the_newest_succeeded():
    old, new = cancellation("c1", 1000), cancellation("c2", 3000)
    new["cancelledAt"] = "2026-01-04T00:00:00Z"
    (event,) = portone.to_events(
        resolved(webhook("Transaction.Cancelled"), payment(cancellations=[new, old]))
    )
    assert event.event_id.endswith(":c2") and event.value == Decimal("3000")


@pytest.mark.parametrize("custom", [None, "", "not json", "[1]", '{"ga_client_id": 5}'])
def test_unreadable_custom_data_never_fails_the_webhook(custom):
    (event,) = portone.to_events(resolved(webhook(), payment(customData=custom)))
    assert event.context.fbp is None


def test_same_payment_in_two_deliveries_has_one_event_id():
    a = portone.to_events(resolved(webhook(), payment(), "msg_a"))
    b = portone.to_events(resolved(webhook(), payment(), "msg_b"))
    assert a[0].event_id == b[0].event_id and a[0].source.event_id != b[0].source.event_id
