"""PortOne, Toss, Paddle and POST /events through the whole local stack (fake provider APIs included)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from conversion_relay.providers import paddle, standard_webhooks
from relay_local.stack import LocalRelay
from tests.integration.webhooks import LOCAL_SECRETS
from tests.unit.test_paddle_provider import adjustment, transaction
from tests.unit.test_portone_provider import cancellation, payment
from tests.unit.test_toss_provider import cancel
from tests.unit.test_toss_provider import payment as toss_payment

pytestmark = pytest.mark.integration

SECRETS: dict[str, dict[str, Any]] = {
    **LOCAL_SECRETS,
    "portone": {
        "webhook_secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
        "api_secret": "local-portone-secret",
    },
    "toss": {"secret_key": "test_sk_local_toss"},
    "paddle": {"webhook_secrets": ["pdl_ntfset_local"]},
    "events": {"signing_secrets": ["whsec_bG9jYWwtZmlyc3QtcGFydHktc2lnbmluZy1zZWNyZXQ="]},
}


@pytest.fixture(scope="module")
def relay() -> Iterator[LocalRelay]:
    with LocalRelay(secrets=SECRETS, fast_retries=True, background_pollers=False) as stack:
        yield stack


def _recent(pay: dict[str, Any], *keys: str) -> dict[str, Any]:
    # Destinations refuse old events: date everything a minute ago.
    moment = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    return {**pay, **dict.fromkeys(keys, moment)}


def _enqueued(relay: LocalRelay) -> int:
    return sum(relay.queue_depths().values())


def _queued(relay: LocalRelay, destination: str = "ga4") -> list[dict[str, Any]]:
    """The canonical events waiting in a destination queue (the ingest's output; consumers not run)."""
    return [json.loads(m["body"]) for m in relay._read_dlq(relay.queue_urls[destination])]


def _post_standard(
    relay: LocalRelay, path: str, body: dict[str, Any], secret: str, msg_id: str | None = None
):
    raw = json.dumps(body, ensure_ascii=False).encode()
    headers = standard_webhooks.sign_headers(
        secret, msg_id or f"msg_{uuid.uuid4().hex}", int(time.time()), raw
    )
    return requests.post(
        f"{relay.api_url}{path}",
        data=raw,
        headers={**headers, "Content-Type": "application/json"},
        timeout=30,
    )


# --- PortOne ----------------------------------------------------------------------------------------

PORTONE_SECRET = SECRETS["portone"]["webhook_secrets"][0]


def _portone(relay, kind="Transaction.Paid", payment_id="order-1", msg_id=None, **data):
    body = {
        "type": kind,
        "timestamp": "2026-01-02T05:46:59Z",
        "data": {"paymentId": payment_id, "transactionId": "tx", **data},
    }
    return _post_standard(relay, "/webhooks/portone", body, PORTONE_SECRET, msg_id)


@pytest.mark.parametrize(("currency", "total", "value"), [("KRW", 59000, "59000"), ("USD", 4999, "49.99")])
def test_portone_paid_reaches_every_destination(relay, currency, total, value):
    relay.provider_apis["portone"].put_payment(
        _recent(payment("order-1", total=total, currency=currency), "paidAt")
    )
    response = _portone(relay)
    assert response.status_code == 200, response.text
    assert response.json()["event_ids"] == ["portone:purchase:order-1"]
    assert relay.queue_depths() == {"ga4": 1, "meta": 1, "appsflyer": 1}
    (queued,) = _queued(relay)
    assert queued["value"] == value and queued["currency"] == currency
    assert queued["context"]["ga_client_id"] == "111.222"


def test_portone_partial_cancel_and_duplicate_delivery(relay):
    pay = payment("order-2", status="PARTIAL_CANCELLED", cancellations=[cancellation("c1", 10000)])
    relay.provider_apis["portone"].put_payment(_recent(pay, "paidAt"))
    first = _portone(relay, "Transaction.PartialCancelled", "order-2", msg_id="msg_dup", cancellationId="c1")
    again = _portone(relay, "Transaction.PartialCancelled", "order-2", msg_id="msg_dup", cancellationId="c1")
    assert first.json()["status"] == "accepted" and first.json()["event_ids"] == ["portone:refund:order-2:c1"]
    assert again.status_code == 200 and again.json()["status"] == "duplicate"


def test_portone_api_down_is_503_and_not_found_is_404_with_nothing_enqueued(relay):
    api = relay.provider_apis["portone"]
    api.fail_next(1, 503)
    down = _portone(relay, payment_id="order-3")
    missing = _portone(relay, payment_id="order-unknown")
    assert down.status_code == 503 and down.json()["error"] == "provider_unavailable"
    assert missing.status_code == 404 and missing.json()["error"] == "object_not_found"
    assert _enqueued(relay) == 0


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h: {**h, "webhook-signature": h["webhook-signature"].replace("v1,", "v1,A")},
        lambda h: {**h, "webhook-timestamp": str(int(time.time()) - 600)},
        lambda h: standard_webhooks.sign_headers(
            "whsec_" + "QUJD" * 8, h["webhook-id"], int(h["webhook-timestamp"]), b"{}"
        ),
    ],
    ids=["tampered", "stale", "wrong-secret"],
)
def test_portone_bad_signatures_are_401(relay, tamper):
    raw = b'{"type":"Transaction.Paid","data":{"paymentId":"order-1"}}'
    headers = tamper(standard_webhooks.sign_headers(PORTONE_SECRET, "msg_x", int(time.time()), raw))
    response = requests.post(f"{relay.api_url}/webhooks/portone", data=raw, headers=headers, timeout=30)
    assert response.status_code == 401 and response.json()["reason"]
    assert relay.provider_apis["portone"].received == []  # nothing fetched for an unauthenticated request


# --- Toss -------------------------------------------------------------------------------------------


def _toss(relay, status="DONE", key="pk_1", transmission_id=None):
    body = {
        "eventType": "PAYMENT_STATUS_CHANGED",
        "createdAt": "2026-01-02T14:46:59",
        "data": {"paymentKey": key, "status": status},
    }
    headers = {"Content-Type": "application/json"}
    if transmission_id:
        headers["tosspayments-webhook-transmission-id"] = transmission_id
    return requests.post(
        f"{relay.api_url}/webhooks/toss", data=json.dumps(body).encode(), headers=headers, timeout=30
    )


def test_toss_done_and_partial_refund(relay):
    api = relay.provider_apis["toss"]
    api.put_payment(_recent(toss_payment("pk_1"), "approvedAt"))
    done = _toss(relay, transmission_id="t-1")
    assert done.status_code == 200 and done.json()["event_ids"] == ["toss:purchase:pk_1"]
    assert _toss(relay, transmission_id="t-1").json()["status"] == "duplicate"
    api.put_payment(
        _recent(toss_payment("pk_1", status="PARTIAL_CANCELED", cancels=[cancel("c1", 10000)]), "approvedAt")
    )
    refund = _toss(relay, "PARTIAL_CANCELED")
    assert refund.json()["event_ids"] == ["toss:refund:pk_1:c1"]
    queued = {e["event_id"]: e for e in _queued(relay)}
    assert queued["toss:purchase:pk_1"]["value"] == "59000"
    assert queued["toss:refund:pk_1:c1"]["value"] == "10000"


def test_toss_forged_webhook_for_an_unknown_payment_is_404(relay):
    response = _toss(relay, key="pk_forged")
    assert response.status_code == 404 and _enqueued(relay) == 0


def test_toss_api_down_is_503(relay):
    relay.provider_apis["toss"].put_payment(toss_payment("pk_2"))
    relay.provider_apis["toss"].fail_next(1, None)  # connection dropped
    response = _toss(relay, key="pk_2")
    assert response.status_code == 503 and _enqueued(relay) == 0


# --- Paddle -----------------------------------------------------------------------------------------


def _paddle(relay, body, secret="pdl_ntfset_local", ts=None):
    raw = json.dumps(body).encode()
    header = paddle.signature_header(raw, secret, ts or int(time.time()))
    return requests.post(
        f"{relay.api_url}/webhooks/paddle", data=raw, headers={"Paddle-Signature": header}, timeout=30
    )


def test_paddle_purchase_renewal_and_refund(relay):
    purchase = transaction(currency="KRW", total="9900", tax="900")
    purchase["occurred_at"] = _recent({}, "t")["t"]
    renewal = {
        **transaction(origin="subscription_recurring"),
        "notification_id": "ntf_r",
        "occurred_at": purchase["occurred_at"],
    }
    renewal["data"] = {**renewal["data"], "id": "txn_02"}
    refund = adjustment()
    refund["data"]["updated_at"] = purchase["occurred_at"]
    answers = [_paddle(relay, body).json() for body in (purchase, renewal, refund)]
    assert [a["event_ids"] for a in answers] == [
        ["paddle:purchase:txn_01h8"],
        ["paddle:subscription_renewal:txn_02"],
        ["paddle:refund:adj_01"],
    ]
    assert _paddle(relay, purchase).json()["status"] == "duplicate"


@pytest.mark.parametrize(
    "kwargs", [{"secret": "pdl_ntfset_wrong"}, {"ts": 1_600_000_000}], ids=["wrong-secret", "stale"]
)
def test_paddle_bad_signature_is_401(relay, kwargs):
    response = _paddle(relay, transaction(), **kwargs)
    assert response.status_code == 401 and _enqueued(relay) == 0


# --- first-party events -----------------------------------------------------------------------------

EVENTS_SECRET = SECRETS["events"]["signing_secrets"][0]


def _event(**overrides):
    moment = _recent({}, "t")["t"]
    return {
        "event_id": f"offline-{uuid.uuid4().hex[:8]}",
        "name": "purchase",
        "occurred_at": moment,
        "value": "120000",
        "currency": "KRW",
        "context": {"ga_client_id": "111.222"},
        **overrides,
    }


def test_events_api_accepts_many_and_dedupes_on_webhook_id(relay):
    body = {"events": [_event(), _event(value="19.99", currency="USD")]}
    first = _post_standard(relay, "/events", body, EVENTS_SECRET, "msg_batch_1")
    again = _post_standard(relay, "/events", body, EVENTS_SECRET, "msg_batch_1")
    assert first.status_code == 200 and len(first.json()["event_ids"]) == 2
    assert again.json()["status"] == "duplicate"
    assert sorted(e["value"] for e in _queued(relay)) == ["120000", "19.99"]


def test_events_api_invalid_event_enqueues_nothing(relay):
    body = {"events": [_event(), _event(currency=None), _event(name="Bad Name")]}
    body["events"][1].pop("currency")
    response = _post_standard(relay, "/events", body, EVENTS_SECRET)
    assert response.status_code == 400
    answer = response.json()
    assert answer["error"] == "invalid_events"
    assert [(e["index"], e["path"]) for e in answer["errors"]] == [
        (1, "events[1].currency"),
        (2, "events[2].name"),
    ]
    assert _enqueued(relay) == 0


def test_events_api_wrong_secret_is_401(relay):
    response = _post_standard(relay, "/events", {"events": [_event()]}, "whsec_" + "QUJD" * 8)
    assert response.status_code == 401 and _enqueued(relay) == 0


def test_events_is_not_a_webhook_provider(relay):
    response = _post_standard(relay, "/webhooks/events", {"events": [_event()]}, EVENTS_SECRET)
    assert response.status_code == 404
