"""The sample events in events/ (written by tools/make_events.py) agree with the Stripe provider module."""

import json
from pathlib import Path

import pytest

from conversion_relay.config import DESTINATIONS, destination_event_name
from conversion_relay.model import ConversionEvent
from conversion_relay.providers import stripe

EVENTS = Path(__file__).resolve().parents[2] / "events"
STRIPE_FIXTURES = sorted((EVENTS / "stripe").glob("*.json"))
EXPECTED_NAMES = {
    "checkout_session_completed_krw": ["purchase"],
    "checkout_session_completed_usd": ["purchase"],
    "invoice_paid_subscription_cycle": ["subscription_renewal"],
    "charge_refunded_partial": ["refund"],
    "customer_created_ignored": [],
}


def local_secret() -> str:
    return json.loads((EVENTS / "local-secrets.json").read_text("utf-8"))["stripe"]["webhook_secrets"][0]


def raw_body(fixture: Path) -> bytes:
    return fixture.read_bytes().removesuffix(b"\n")


def test_every_expected_fixture_exists():
    assert sorted(path.stem for path in STRIPE_FIXTURES) == sorted(EXPECTED_NAMES)


@pytest.mark.parametrize("fixture", STRIPE_FIXTURES, ids=lambda path: path.stem)
def test_stripe_fixture_maps_as_named(fixture):
    events = stripe.to_events(stripe.parse(raw_body(fixture)))
    assert [event.name for event in events] == EXPECTED_NAMES[fixture.stem]


def test_krw_checkout_fixture_carries_every_browser_identifier():
    (event,) = stripe.to_events(
        stripe.parse(raw_body(EVENTS / "stripe" / "checkout_session_completed_krw.json"))
    )
    # A web checkout carries every browser identifier; app-only and device fields belong to app events.
    app_or_device_only = {
        "appsflyer_id",
        "app_os_version",
        "att_status",
        "device_category",
        "device_language",
        "screen_resolution",
    }
    missing = [
        n for n in event.context.__slots__ if n not in app_or_device_only and not getattr(event.context, n)
    ]
    assert missing == []
    assert event.consent.ad_user_data is True
    assert event.currency == "KRW"
    assert str(event.value) == "59000"


def test_partial_refund_fixture_is_only_the_second_refund():
    (event,) = stripe.to_events(stripe.parse(raw_body(EVENTS / "stripe" / "charge_refunded_partial.json")))
    assert str(event.value) == "15.00"


@pytest.mark.parametrize("fixture", STRIPE_FIXTURES, ids=lambda path: path.stem)
def test_apigw_event_is_the_signed_fixture(fixture):
    request = json.loads((EVENTS / "apigw" / f"stripe-{fixture.stem}.json").read_text("utf-8"))
    assert request["version"] == "2.0"
    assert request["routeKey"] == "POST /webhooks/{provider}"
    assert request["rawPath"] == "/webhooks/stripe"
    assert request["pathParameters"] == {"provider": "stripe"}
    assert request["isBase64Encoded"] is False
    assert request["requestContext"]["http"]["method"] == "POST"
    assert all(name == name.lower() for name in request["headers"])
    body = request["body"].encode("utf-8")
    assert body == raw_body(fixture)
    # Tolerance 0: the signature must be right even after the timestamp has gone stale.
    stripe.verify(request["headers"], body, [local_secret()], tolerance_seconds=0)


def test_bad_signature_apigw_event_is_rejected():
    request = json.loads((EVENTS / "apigw" / "stripe-bad-signature.json").read_text("utf-8"))
    with pytest.raises(stripe.SignatureError, match="does not match"):
        stripe.verify(
            request["headers"], request["body"].encode("utf-8"), [local_secret()], tolerance_seconds=0
        )


@pytest.mark.parametrize("destination", DESTINATIONS)
def test_sqs_batch_holds_the_canonical_events_the_destination_sends(destination):
    batch = json.loads((EVENTS / "sqs" / f"{destination}-batch.json").read_text("utf-8"))
    expected = [
        event
        for fixture in STRIPE_FIXTURES
        for event in stripe.to_events(stripe.parse(raw_body(fixture)))
        if destination_event_name(destination, event.name) is not None
    ]
    records = batch["Records"]
    assert records, "an empty batch tests nothing"
    assert sorted(ConversionEvent.from_json(r["body"]).event_id for r in records) == sorted(
        e.event_id for e in expected
    )
    for record in records:
        assert record["eventSource"] == "aws:sqs"
        assert record["attributes"]["ApproximateReceiveCount"] == "1"
        assert record["eventSourceARN"].startswith("arn:aws:sqs:")
        event = ConversionEvent.from_json(record["body"])
        assert event == next(e for e in expected if e.event_id == event.event_id)
    assert len({r["messageId"] for r in records}) == len(records)
