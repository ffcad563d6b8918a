"""Our Stripe verification agrees with the official stripe-python SDK (a test-only dependency).

The SDK is the oracle: for every header below, `stripe.Webhook.construct_event` and our `verify` must
both accept or both reject. The SDK reads the clock itself, so timestamps are relative to now.
"""

import json
import time
from collections.abc import Callable

import pytest

from conversion_relay.providers.stripe import SignatureError, delivery_id, parse, verify

stripe = pytest.importorskip("stripe")

pytestmark = pytest.mark.contract

SECRET = "whsec_contract_secret"
OTHER = "whsec_some_other_secret"
BODY = json.dumps(
    {
        "id": "evt_contract",
        "object": "event",
        "type": "customer.created",
        "data": {"object": {"id": "cus_1"}},
    },
    indent=2,
)
UTF8_BODY = json.dumps(
    {"id": "evt_utf8", "object": "event", "type": "x", "data": {"object": {"name": "김민수"}}},
    ensure_ascii=False,
)


def sdk_sign(body: str, secret: str, timestamp: int) -> str:
    """The v1 value only, computed by the SDK."""
    return stripe.WebhookSignature._compute_signature(f"{timestamp}.{body}", secret)


HeaderFactory = Callable[[str, int], str]

CASES: list[tuple[str, HeaderFactory, str]] = [
    ("valid", lambda b, now: stripe.WebhookSignature.generate_signature_header(b, SECRET, now), BODY),
    (
        "valid utf-8 body",
        lambda b, now: stripe.WebhookSignature.generate_signature_header(b, SECRET, now),
        UTF8_BODY,
    ),
    ("wrong secret", lambda b, now: stripe.WebhookSignature.generate_signature_header(b, OTHER, now), BODY),
    ("tampered body", lambda b, now: f"t={now},v1={sdk_sign(b + ' ', SECRET, now)}", BODY),
    ("stale", lambda b, now: f"t={now - 301},v1={sdk_sign(b, SECRET, now - 301)}", BODY),
    ("just within tolerance", lambda b, now: f"t={now - 200},v1={sdk_sign(b, SECRET, now - 200)}", BODY),
    ("future", lambda b, now: f"t={now + 3600},v1={sdk_sign(b, SECRET, now + 3600)}", BODY),
    (
        "second v1 matches",
        lambda b, now: f"t={now},v1={sdk_sign(b, OTHER, now)},v1={sdk_sign(b, SECRET, now)}",
        BODY,
    ),
    ("v0 only", lambda b, now: f"t={now},v0={sdk_sign(b, SECRET, now)}", BODY),
    ("v0 and v1", lambda b, now: f"t={now},v0=00,v1={sdk_sign(b, SECRET, now)}", BODY),
    ("no t", lambda b, now: f"v1={sdk_sign(b, SECRET, now)}", BODY),
    ("t not an integer", lambda b, now: f"t=now,v1={sdk_sign(b, SECRET, now)}", BODY),
    ("t with a leading zero", lambda b, now: f"t=0{now},v1={sdk_sign(b, SECRET, now)}", BODY),
    ("two t, first is signed", lambda b, now: f"t={now},t=1,v1={sdk_sign(b, SECRET, now)}", BODY),
    ("two t, second is signed", lambda b, now: f"t=1,t={now},v1={sdk_sign(b, SECRET, now)}", BODY),
    ("v1 without =", lambda b, now: f"t={now},v1", BODY),
    ("space after comma", lambda b, now: f"t={now}, v1={sdk_sign(b, SECRET, now)}", BODY),
    ("upper-case hex", lambda b, now: f"t={now},v1={sdk_sign(b, SECRET, now).upper()}", BODY),
    ("garbage", lambda b, now: "garbage", BODY),
    ("empty", lambda b, now: "", BODY),
]


def sdk_accepts(body: bytes, header: str, secret: str) -> bool:
    try:
        stripe.Webhook.construct_event(body, header, secret)
    except stripe.SignatureVerificationError:
        return False
    return True


def we_accept(body: bytes, header: str, secrets: list[str]) -> bool:
    try:
        verify({"stripe-signature": header}, body, secrets)
    except SignatureError:
        return False
    return True


@pytest.mark.parametrize(("name", "make_header", "body"), CASES, ids=[case[0] for case in CASES])
def test_verify_agrees_with_construct_event(name, make_header, body):
    now = int(time.time())
    header = make_header(body, now)
    raw = body.encode("utf-8")
    assert we_accept(raw, header, [SECRET]) == sdk_accepts(raw, header, SECRET), name


def test_the_table_has_both_outcomes():
    # Guards the test above against an oracle that accepts (or rejects) everything.
    now = int(time.time())
    outcomes = {sdk_accepts(b.encode(), make(b, now), SECRET) for _, make, b in CASES}
    assert outcomes == {True, False}


@pytest.mark.parametrize("signed_with", [SECRET, OTHER, "whsec_third"])
def test_rotation_matches_the_sdk_with_either_secret(signed_with):
    # Two configured secrets accept exactly when the SDK accepts with one of them.
    now = int(time.time())
    header = stripe.WebhookSignature.generate_signature_header(BODY, signed_with, now)
    raw = BODY.encode()
    expected = sdk_accepts(raw, header, SECRET) or sdk_accepts(raw, header, OTHER)
    assert we_accept(raw, header, [SECRET, OTHER]) == expected


def test_sdk_generated_header_and_our_parse_agree_on_the_event():
    header = stripe.WebhookSignature.generate_signature_header(BODY, SECRET)
    event = stripe.Webhook.construct_event(BODY.encode(), header, SECRET)
    verify({"stripe-signature": header}, BODY.encode(), [SECRET])
    assert delivery_id(parse(BODY.encode())) == event.id == "evt_contract"


def test_reference_test_vector_with_the_sdk():
    body = '{"id":"evt_test","object":"event"}'
    expected = "8042376f6ca064adbe037642a718227dfd59047137eb49497a54c49eb0cfb724"
    assert sdk_sign(body, "whsec_test_secret", 1700000000) == expected
    header = stripe.WebhookSignature.generate_signature_header(body, "whsec_test_secret", 1700000000)
    assert header == f"t=1700000000,v1={expected}"
    stripe.WebhookSignature.verify_header(body, header, "whsec_test_secret", tolerance=0)
    verify({"stripe-signature": header}, body.encode(), ["whsec_test_secret"], now=1700000000)


def test_sdk_default_tolerance_matches_ours():
    from conversion_relay.providers.stripe import DEFAULT_TOLERANCE_SECONDS

    assert stripe.Webhook.DEFAULT_TOLERANCE == DEFAULT_TOLERANCE_SECONDS
