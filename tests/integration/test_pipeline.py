"""End to end: signed Stripe webhook -> ingest -> SQS -> consumers -> fake GA4, Meta, AppsFlyer."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from relay_local.stack import LocalRelay
from tests.integration.webhooks import (
    AF_USER_ID,
    EMAIL,
    FBP,
    GA_CLIENT_ID,
    PostWebhook,
    checkout_completed,
    encode,
)

pytestmark = pytest.mark.integration

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
META_SERVER_ERROR = {"error": {"message": "An unknown error occurred", "type": "OAuthException", "code": 1}}


def _purchase_id(event: dict) -> str:
    return f"stripe:purchase:{event['data']['object']['id']}"


def _dead_letters(relay: LocalRelay, destination: str, event_id: str) -> list[dict]:
    return [m for m in relay.dlq_messages(destination) if m["attributes"].get("event_id") == event_id]


def test_checkout_reaches_every_destination_once_with_the_right_fields(
    relay: LocalRelay, post_webhook: PostWebhook
):
    event = checkout_completed(amount_total=59000, currency="krw")

    response = post_webhook(encode(event))

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "accepted"
    assert answer["event_ids"] == [_purchase_id(event)]
    assert sorted(answer["destinations"]) == ["appsflyer", "ga4", "meta"]

    relay.drain()

    session = event["data"]["object"]
    ga4, meta, appsflyer = relay.fakes["ga4"], relay.fakes["meta"], relay.fakes["appsflyer"]
    assert ga4.validation_messages == []
    assert len(ga4.events) == 1
    ga4_event = ga4.events[0]
    assert ga4_event["name"] == "purchase"
    assert ga4_event["client_id"] == GA_CLIENT_ID
    assert ga4_event["params"]["value"] == 59000
    assert ga4_event["params"]["currency"] == "KRW"
    assert ga4_event["params"]["transaction_id"] == session["payment_intent"]

    assert len(meta.events) == 1
    meta_event = meta.events[0]
    assert meta_event["event_name"] == "Purchase"
    assert meta_event["event_id"]
    assert meta_event["custom_data"]["value"] == 59000
    assert meta_event["custom_data"]["currency"] == "krw"  # lower-case, as Meta's SDK sends it
    hashed_email = meta_event["user_data"]["em"]
    hashed_email = hashed_email[0] if isinstance(hashed_email, list) else hashed_email
    assert SHA256_HEX.fullmatch(hashed_email)
    assert hashed_email == hashlib.sha256(EMAIL.encode()).hexdigest()
    assert meta_event["user_data"]["fbp"] == FBP

    assert len(appsflyer.events) == 1
    af_event = appsflyer.events[0]
    assert af_event["eventName"] == "af_purchase"
    assert af_event["eventRevenue"] == 59000
    assert af_event["eventRevenueCurrency"] == "KRW"
    assert af_event["afUserId"] == AF_USER_ID

    # Exactly one request each: nothing was retried or sent twice.
    assert [len(fake.received) for fake in (ga4, meta, appsflyer)] == [1, 1, 1]
    assert all(_dead_letters(relay, name, _purchase_id(event)) == [] for name in relay.dlq_urls)


def test_a_redelivered_webhook_is_acknowledged_as_duplicate_and_sent_once(
    relay: LocalRelay, post_webhook: PostWebhook
):
    body = encode(checkout_completed())

    first = post_webhook(body)
    relay.drain()
    second = post_webhook(body)  # Stripe retries with the same event id (and a fresh signature)
    relay.drain()

    assert first.status_code == 200 and first.json()["status"] == "accepted"
    assert second.status_code == 200, second.text
    assert second.json()["status"] == "duplicate"
    assert relay.queue_depths() == {"ga4": 0, "meta": 0, "appsflyer": 0}
    assert [len(relay.fakes[name].accepted) for name in ("ga4", "meta", "appsflyer")] == [1, 1, 1]


def test_a_retried_message_that_reaches_sqs_twice_is_sent_once(relay: LocalRelay, post_webhook: PostWebhook):
    """The ingest may enqueue again after a half-failed delivery; the consumers' ledger drops the copy."""
    event = checkout_completed()
    assert post_webhook(encode(event)).status_code == 200
    copies = {}
    for name, url in relay.queue_urls.items():
        message = relay.sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"][0]
        relay.sqs.change_message_visibility(
            QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
        copies[name] = message
    relay.drain()

    for name, message in copies.items():
        relay.sqs.send_message(
            QueueUrl=relay.queue_urls[name],
            MessageBody=message["Body"],
            MessageAttributes=message["MessageAttributes"],
        )
    relay.drain()

    assert [len(relay.fakes[name].accepted) for name in ("ga4", "meta", "appsflyer")] == [1, 1, 1]


def test_transient_failures_are_retried_until_delivered_once(relay: LocalRelay, post_webhook: PostWebhook):
    failures = 2
    relay.fakes["meta"].fail_next(failures, 500, META_SERVER_ERROR)
    event = checkout_completed()

    assert post_webhook(encode(event)).status_code == 200
    relay.drain()

    meta = relay.fakes["meta"]
    assert len(meta.received) == failures + 1
    assert len(meta.accepted) == 1
    assert [e["event_id"] for e in meta.events] == [meta.events[0]["event_id"]]
    assert _dead_letters(relay, "meta", _purchase_id(event)) == []
    # The other destinations were not held back or repeated by Meta's trouble.
    assert len(relay.fakes["ga4"].received) == 1
    assert len(relay.fakes["appsflyer"].received) == 1


def test_a_destination_that_keeps_failing_ends_in_its_own_dlq_after_max_receive_count(
    relay: LocalRelay, post_webhook: PostWebhook
):
    max_receive_count = relay.settings.consumers["appsflyer"].max_receive_count
    relay.fakes["appsflyer"].fail_next(100, 500)
    event = checkout_completed()

    assert post_webhook(encode(event)).status_code == 200
    relay.drain()

    assert len(relay.fakes["appsflyer"].received) == max_receive_count
    assert relay.fakes["appsflyer"].events == []
    [dead] = _dead_letters(relay, "appsflyer", _purchase_id(event))
    assert dead["attributes"]["failure"] == "retries_exhausted"
    assert dead["attributes"]["attempts"] == str(max_receive_count)
    assert "500" in dead["attributes"]["reason"]
    assert json.loads(dead["body"])["event_id"] == _purchase_id(event)  # the canonical event, to redrive
    assert relay.queue_depths()["appsflyer"] == 0
    # GA4 and Meta delivered once, untouched.
    assert [len(relay.fakes[name].accepted) for name in ("ga4", "meta")] == [1, 1]
    assert _dead_letters(relay, "ga4", _purchase_id(event)) == []
    assert _dead_letters(relay, "meta", _purchase_id(event)) == []


@pytest.mark.parametrize(
    ("destination", "body"),
    [
        ("appsflyer", {"error": "invalid event", "message": "Bad Request", "status": 400}),
        (
            "meta",
            {
                "error": {
                    "message": "Invalid parameter",
                    "type": "OAuthException",
                    "code": 100,
                    "error_subcode": 2804003,
                    "fbtrace_id": "AbCdEf",
                }
            },
        ),
    ],
)
def test_a_permanent_rejection_goes_to_the_dlq_after_one_attempt(
    relay: LocalRelay, post_webhook: PostWebhook, destination: str, body: dict
):
    relay.fakes[destination].fail_next(1, 400, body)
    event = checkout_completed()

    assert post_webhook(encode(event)).status_code == 200
    relay.drain()

    assert len(relay.fakes[destination].received) == 1
    [dead] = _dead_letters(relay, destination, _purchase_id(event))
    assert dead["attributes"]["failure"] == "rejected"
    assert dead["attributes"]["attempts"] == "1"
    assert dead["attributes"]["reason"]
    assert dead["attributes"].get("http_status") == "400"
    others = [name for name in ("ga4", "meta", "appsflyer") if name != destination]
    assert [len(relay.fakes[name].accepted) for name in others] == [1, 1]
