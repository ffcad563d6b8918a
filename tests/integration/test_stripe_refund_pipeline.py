"""Two partial refunds of one charge, sent as charge.refunded WITHOUT refunds lists (Stripe API versions
since 2022-11-15): the ingest reads the charge's refunds from the (fake) Stripe API, so each event
carries its own refund's amount, once, whatever order the webhooks arrive in.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from relay_local.stack import LocalRelay
from tests.integration.webhooks import (
    AF_USER_ID,
    GA_CLIENT_ID,
    LOCAL_SECRETS,
    PostWebhook,
    encode,
    unique,
)

pytestmark = pytest.mark.integration

API_KEY = "rk_test_local_refunds_read"
SECRETS: dict[str, dict[str, Any]] = {
    **LOCAL_SECRETS,
    "stripe": {**LOCAL_SECRETS["stripe"], "api_key": API_KEY},
}


@pytest.fixture(scope="module")
def relay() -> Iterator[LocalRelay]:
    with LocalRelay(secrets=SECRETS, fast_retries=True, background_pollers=False) as stack:
        yield stack


def _refund(charge_id: str, amount: int, created: int) -> dict[str, Any]:
    return {
        "id": unique("re"),
        "object": "refund",
        "amount": amount,
        "charge": charge_id,
        "created": created,
        "currency": "usd",
        "metadata": {},
        "payment_intent": None,
        "status": "succeeded",
    }


def _charge_refunded(charge_id: str, cumulative: int, created: int) -> dict[str, Any]:
    """charge.refunded as recent API versions send it: the Charge has no `refunds`, no previous_attributes."""
    return {
        "id": unique("evt_test"),
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": created,
        "livemode": False,
        "type": "charge.refunded",
        "data": {
            "object": {
                "id": charge_id,
                "object": "charge",
                "amount": 5000,
                "amount_captured": 5000,
                "amount_refunded": cumulative,
                "currency": "usd",
                "livemode": False,
                "payment_intent": unique("pi"),
                "metadata": {"ga_client_id": GA_CLIENT_ID, "af_user_id": AF_USER_ID},
                "refunded": False,
            }
        },
    }


def _two_partial_refunds(relay: LocalRelay) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """A charge refunded 12.00 then 7.50 a minute later; the fake Stripe API lists both refunds."""
    now = int(time.time())
    charge_id = unique("ch")
    first, second = _refund(charge_id, 1200, now - 120), _refund(charge_id, 750, now - 60)
    api = relay.provider_apis["stripe"]
    api.put_refund(first)
    api.put_refund(second)
    events = [_charge_refunded(charge_id, 1200, now - 119), _charge_refunded(charge_id, 1950, now - 59)]
    return charge_id, [first, second], events


def _queued(relay: LocalRelay, destination: str = "ga4") -> list[dict[str, Any]]:
    """The canonical events waiting in a destination queue (the ingest's output; consumers not run)."""
    return [json.loads(m["body"]) for m in relay._read_dlq(relay.queue_urls[destination])]


@pytest.mark.parametrize("order", [(0, 1), (1, 0)], ids=["in-order", "out-of-order"])
def test_each_partial_refund_counts_its_own_amount_once(
    relay: LocalRelay, post_webhook: PostWebhook, order: tuple[int, int]
) -> None:
    charge_id, refunds, events = _two_partial_refunds(relay)
    answers = [post_webhook(encode(events[index])) for index in order]
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    # Stripe delivering the second event again changes nothing.
    assert post_webhook(encode(events[1])).json()["status"] == "duplicate"

    queued = {event["event_id"]: event["value"] for event in _queued(relay)}
    assert queued == {
        f"stripe:refund:{refunds[0]['id']}": "12.00",
        f"stripe:refund:{refunds[1]['id']}": "7.50",
    }
    # One refund list per delivery, filtered by the charge (the repeat reads too: resolve runs before dedupe).
    reads = relay.provider_apis["stripe"].received
    assert [r.query["charge"] for r in reads] == [[charge_id]] * 3

    relay.drain()
    ga4 = [e for e in relay.fakes["ga4"].summary() if e["event"] == "refund"]
    appsflyer = [e for e in relay.fakes["appsflyer"].summary() if e["event"] == "af_refund"]
    assert sorted(float(e["value"]) for e in ga4) == [7.5, 12.0]
    assert sorted(float(e["value"]) for e in appsflyer) == [-12.0, -7.5]


def test_stripe_api_down_is_503_with_nothing_enqueued_then_the_retry_counts_once(
    relay: LocalRelay, post_webhook: PostWebhook
) -> None:
    _, refunds, events = _two_partial_refunds(relay)
    api = relay.provider_apis["stripe"]
    api.fail_next(1, 503, {"error": {"type": "api_error", "message": "unavailable"}})
    api.fail_next(1, None)  # then the connection drops
    body = encode(events[1])
    down = post_webhook(body)
    dropped = post_webhook(body)
    assert (down.status_code, dropped.status_code) == (503, 503)
    assert down.json()["error"] == "provider_unavailable"
    assert sum(relay.queue_depths().values()) == 0

    retried = post_webhook(body)  # Stripe's retry of the same event, once the API is back
    assert retried.status_code == 200
    assert [event["event_id"] for event in _queued(relay)] == [f"stripe:refund:{refunds[1]['id']}"]


def test_an_unknown_charge_is_404_and_a_wrong_key_is_500_with_nothing_enqueued(
    relay: LocalRelay, post_webhook: PostWebhook
) -> None:
    now = int(time.time())
    unknown = post_webhook(encode(_charge_refunded(unique("ch"), 500, now - 30)))
    assert unknown.status_code == 404 and unknown.json()["error"] == "object_not_found"

    _, _, events = _two_partial_refunds(relay)
    api = relay.provider_apis["stripe"]
    api.api_key = "rk_test_rotated"  # the relay's key no longer works
    try:
        refused = post_webhook(encode(events[0]))
    finally:
        api.api_key = API_KEY
    assert refused.status_code == 500 and "api_key" in refused.json()["reason"]
    assert API_KEY not in refused.text
    assert sum(relay.queue_depths().values()) == 0
