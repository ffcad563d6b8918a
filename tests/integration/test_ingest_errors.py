"""What the HTTP API answers for webhooks it must not accept, and that none of them enqueues anything."""

from __future__ import annotations

import os
import time

import pytest
import requests

from relay_local.stack import LocalRelay
from tests.integration.webhooks import PostWebhook, checkout_completed, encode, stripe_signature

pytestmark = pytest.mark.integration


def _assert_json_error(response: requests.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body.get("reason"), body  # a person can act on it
    return body


def _nothing_enqueued(relay: LocalRelay) -> bool:
    return relay.queue_depths() == {"ga4": 0, "meta": 0, "appsflyer": 0}


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(
            lambda body: stripe_signature(body, secret="whsec_not_the_configured_one"), id="wrong-secret"
        ),
        pytest.param(lambda body: stripe_signature(body + b" "), id="other-body"),
        pytest.param(lambda body: stripe_signature(body, timestamp=int(time.time()) - 3600), id="stale"),
        pytest.param(lambda body: "t=123", id="no-v1"),
    ],
)
def test_bad_signature_is_401_and_enqueues_nothing(relay: LocalRelay, post_webhook: PostWebhook, signature):
    body = encode(checkout_completed())

    response = post_webhook(body, signature=signature(body))

    _assert_json_error(response, 401)
    assert _nothing_enqueued(relay)


def test_missing_signature_is_401(relay: LocalRelay, post_webhook: PostWebhook):
    response = post_webhook(encode(checkout_completed()), sign=False)

    _assert_json_error(response, 401)
    assert _nothing_enqueued(relay)


def test_unknown_provider_is_404(relay: LocalRelay, post_webhook: PostWebhook):
    response = post_webhook(encode(checkout_completed()), provider="not-a-provider")

    _assert_json_error(response, 404)
    assert _nothing_enqueued(relay)


def test_unknown_route_is_404_json(relay: LocalRelay):
    response = requests.post(f"{relay.api_url}/nowhere", data=b"{}", timeout=30)

    _assert_json_error(response, 404)


@pytest.mark.parametrize(
    "body",
    [b"this is not json", b"[1, 2, 3]", b'{"object": "event"}', b'{"id": "evt_1", "type": "x", "data": 5}'],
    ids=["not-json", "not-an-object", "no-id", "no-data-object"],
)
def test_malformed_signed_body_is_400(relay: LocalRelay, post_webhook: PostWebhook, body: bytes):
    response = post_webhook(body)

    _assert_json_error(response, 400)
    assert _nothing_enqueued(relay)


def test_body_over_the_limit_is_413(relay: LocalRelay, post_webhook: PostWebhook):
    limit = int(os.environ["MAX_BODY_BYTES"])  # from template.yaml, through the local stack
    event = checkout_completed()
    event["data"]["object"]["padding"] = "x" * limit
    body = encode(event)

    response = post_webhook(body)

    _assert_json_error(response, 413)
    assert _nothing_enqueued(relay)


def test_event_type_that_is_not_a_conversion_is_200_ignored(relay: LocalRelay, post_webhook: PostWebhook):
    event = checkout_completed(event_type="customer.created")

    response = post_webhook(encode(event))

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ignored"
    assert response.json().get("reason")
    assert _nothing_enqueued(relay)


def test_unpaid_checkout_is_ignored(relay: LocalRelay, post_webhook: PostWebhook):
    event = checkout_completed()
    event["data"]["object"]["payment_status"] = "unpaid"

    response = post_webhook(encode(event))

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ignored"
    assert _nothing_enqueued(relay)
