"""AppsFlyer Web S2S (PBA): mapping, payload budget, classification, concurrency, end to end on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import requests

from conversion_relay import config
from conversion_relay.config import ConfigError
from conversion_relay.destinations import appsflyer
from conversion_relay.destinations.appsflyer import (
    MAX_EVENT_VALUE_CHARS,
    MAX_PAYLOAD_BYTES,
    AmbiguousPolicy,
    AppsflyerDestination,
    classify_response,
    encode_payload,
    event_value_length,
    fit_payload,
)
from conversion_relay.destinations.base import Outcome, Prepared, Status
from conversion_relay.http import new_session
from conversion_relay.model import (
    PURCHASE,
    REFUND,
    SUBSCRIPTION_RENEWAL,
    SUBSCRIPTION_START,
    Context,
    ConversionEvent,
    Item,
    Source,
)
from relay_local.fakes.appsflyer import FakeAppsflyer

BUNDLE = "test-bundle"
DEV_KEY = "test-web-dev-key"
CREDENTIALS = {"bundle_id": BUNDLE, "web_dev_key": DEV_KEY}
OCCURRED = datetime(2026, 3, 2, 12, 30, 45, 123456, tzinfo=UTC)
OCCURRED_MS = 1772454645123


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAppsflyer]:
    server = FakeAppsflyer(bundle_id=BUNDLE, web_dev_key=DEV_KEY).start()
    yield server
    server.stop()


@pytest.fixture
def live(fake: FakeAppsflyer) -> Iterator[FakeAppsflyer]:
    fake.reset()
    yield fake
    fake.reset()


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    pooled = new_session(pool_size=16)
    yield pooled
    pooled.close()


def destination(session: requests.Session | None = None, base_url: str = "http://127.0.0.1:9", **kwargs):
    return AppsflyerDestination(CREDENTIALS, session or requests.Session(), base_url, **kwargs)


def make_event(name: str = PURCHASE, **overrides) -> ConversionEvent:
    context = overrides.pop("context", Context(customer_user_id="cuid-1"))
    base = ConversionEvent(
        event_id=f"evt-{name}",
        name=name,
        occurred_at=OCCURRED,
        source=Source(
            provider="stripe", event_id="evt_1", event_type="checkout.session.completed", object_id="cs_1"
        ),
        context=context,
    )
    return dataclasses.replace(base, **overrides)


def prepared(event: ConversionEvent, dest: AppsflyerDestination | None = None) -> Prepared:
    result = (dest or destination()).prepare(event)
    assert isinstance(result, Prepared), result
    return result


# -- mapping -----------------------------------------------------------------------------------------
def test_purchase_maps_every_field():
    event = make_event(
        PURCHASE,
        value=Decimal("59.97"),
        currency="EUR",
        transaction_id="pi_123",
        coupon="SPRING",
        items=(Item(id="sku-1", quantity=2), Item(id="sku-2"), Item(name="no id")),
        properties={"plan": "pro"},
        context=Context(
            customer_user_id="cuid-1",
            af_user_id="af-cookie-1",
            client_ip="192.0.2.1",
            client_user_agent="Chrome/80.0.3987",
            referrer_url="https://www.google.com/",
        ),
    )
    assert prepared(event).payload == {
        "customerUserId": "cuid-1",
        "afUserId": "af-cookie-1",
        "webDevKey": DEV_KEY,
        "eventType": "EVENT",
        "eventName": "af_purchase",
        "timestamp": OCCURRED_MS,
        "eventRevenue": 59.97,
        "eventRevenueCurrency": "EUR",
        "eventValue": {
            "plan": "pro",
            "af_content_id": "sku-1,sku-2",
            "af_quantity": "4",
            "af_coupon_code": "SPRING",
            "af_order_id": "pi_123",
        },
        "ip": "192.0.2.1",
        "UserAgent": "Chrome/80.0.3987",
        "referrer": "https://www.google.com/",
    }


@pytest.mark.parametrize("value", [Decimal("19.99"), Decimal("-19.99")])
def test_refund_sends_negative_revenue_whatever_the_canonical_sign(value: Decimal):
    payload = prepared(make_event(REFUND, value=value, currency="USD", transaction_id="re_1")).payload
    assert payload["eventName"] == "af_refund"
    assert payload["eventRevenue"] == -19.99
    assert payload["eventRevenueCurrency"] == "USD"
    assert payload["eventValue"] == {"af_order_id": "re_1"}


def test_zero_refund_is_plain_zero_not_negative_zero():
    payload = prepared(make_event(REFUND, value=Decimal("0.00"), currency="USD")).payload
    assert encode_payload({"r": payload["eventRevenue"]}) == b'{"r":0.0}'


@pytest.mark.parametrize("name", [SUBSCRIPTION_START, SUBSCRIPTION_RENEWAL])
def test_subscription_maps_to_af_subscribe_with_subscription_id(name: str):
    event = make_event(
        name, value=Decimal("9.90"), currency="KRW", subscription_id="sub_1", transaction_id="in_1"
    )
    payload = prepared(event).payload
    assert payload["eventName"] == "af_subscribe"
    assert payload["eventRevenue"] == 9.9
    assert payload["eventValue"] == {"subscription_id": "sub_1", "af_order_id": "in_1"}


def test_custom_event_name_passes_through():
    assert prepared(make_event("lead_qualified")).payload["eventName"] == "lead_qualified"


def test_event_mapped_to_null_is_skipped(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MAPPING_OVERRIDES", json.dumps({"event_names": {"appsflyer": {"refund": None}}}))
    config.mapping.cache_clear()
    outcome = destination().prepare(make_event(REFUND, value=Decimal(1), currency="USD"))
    assert isinstance(outcome, Outcome)
    assert outcome.status is Status.SKIP
    assert "event_names.appsflyer.refund" in outcome.reason


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        (Context(customer_user_id="c"), {"customerUserId": "c"}),
        (Context(user_id="u"), {"customerUserId": "u"}),
        (Context(customer_user_id="c", user_id="u"), {"customerUserId": "c"}),
        (Context(af_user_id="a"), {"afUserId": "a"}),
        (Context(user_id="u", af_user_id="a"), {"customerUserId": "u", "afUserId": "a"}),
    ],
)
def test_user_id_rules(context: Context, expected: dict[str, str]):
    payload = prepared(make_event(context=context)).payload
    assert {k: payload[k] for k in ("customerUserId", "afUserId") if k in payload} == expected


def test_event_without_any_user_id_is_rejected_with_the_metadata_keys():
    outcome = destination().prepare(make_event(context=Context(client_ip="192.0.2.1")))
    assert isinstance(outcome, Outcome)
    assert outcome.status is Status.REJECT
    assert outcome.reason.startswith("customerUserId/afUserId: at least one is required")
    for key in ("customer_user_id", "user_id", "af_user_id"):
        assert key in outcome.reason
    assert "192.0.2.1" not in outcome.reason


def test_value_without_currency_is_rejected():
    outcome = destination().prepare(make_event(value=Decimal("10")))
    assert isinstance(outcome, Outcome)
    assert outcome.status is Status.REJECT
    assert outcome.reason.startswith("currency:")


@pytest.mark.parametrize(
    ("value", "currency"),
    [(None, None), (None, "USD")],
)
def test_revenue_fields_are_absent_together_when_value_is_unknown(
    value: Decimal | None, currency: str | None
):
    payload = prepared(make_event(value=value, currency=currency)).payload
    assert "eventRevenue" not in payload
    assert "eventRevenueCurrency" not in payload


@pytest.mark.parametrize(
    ("ip", "sent"),
    [("192.0.2.1", True), ("2001:db8::1", False), ("not-an-ip", False)],
)
def test_only_ipv4_addresses_are_sent(ip: str, sent: bool):
    payload = prepared(make_event(context=Context(customer_user_id="c", client_ip=ip))).payload
    assert ("ip" in payload) is sent


def test_properties_cannot_overwrite_derived_ids():
    event = make_event(transaction_id="pi_real", properties={"af_order_id": "spoofed", "extra": "1"})
    assert prepared(event).payload["eventValue"] == {"af_order_id": "pi_real", "extra": "1"}


# -- payload budget ----------------------------------------------------------------------------------
def _referrer_event(total_bytes: int, **overrides) -> ConversionEvent:
    """An event whose prepared payload is exactly `total_bytes` long before any trimming."""

    def build(padding: int) -> ConversionEvent:
        context = Context(customer_user_id="cuid-1", referrer_url="https://r.test/" + "a" * padding)
        return make_event(context=context, **overrides)

    untrimmed = len(encode_payload(prepared(build(0)).payload))
    return build(total_bytes - untrimmed)


@pytest.mark.parametrize(
    ("total_bytes", "expected_dropped"),
    [
        (MAX_PAYLOAD_BYTES - 1, set()),
        (MAX_PAYLOAD_BYTES, set()),
        # One byte over: the most expendable eventValue key goes first, the referrer stays.
        (MAX_PAYLOAD_BYTES + 1, {"af_quantity"}),
    ],
)
def test_payload_byte_boundary(total_bytes: int, expected_dropped: set[str]):
    overrides = {
        "transaction_id": "pi_1",
        "items": (Item(id="sku-1"),),
        "value": Decimal(5),
        "currency": "USD",
    }
    event = _referrer_event(total_bytes, **overrides)
    full = {"af_content_id": "sku-1", "af_quantity": "1", "af_order_id": "pi_1"}
    payload = prepared(event).payload
    assert len(encode_payload(prepared_untrimmed(event))) == total_bytes
    if not expected_dropped:
        assert len(encode_payload(payload)) == total_bytes
    assert len(encode_payload(payload)) <= MAX_PAYLOAD_BYTES
    assert set(full) - set(payload["eventValue"]) == expected_dropped
    assert payload["referrer"] == event.context.referrer_url
    assert payload["eventRevenue"] == 5.0


def test_over_budget_trims_event_value_then_referrer_then_user_agent():
    event = make_event(
        value=Decimal("1"),
        currency="USD",
        transaction_id="pi_1",
        properties={"note": "n" * 300},
        context=Context(
            customer_user_id="cuid-1",
            af_user_id="af-1",
            client_ip="192.0.2.1",
            referrer_url="https://r.test/" + "r" * 500,
            client_user_agent="UA/" + "u" * 900,
        ),
    )
    fitted, dropped = fit_payload(prepared_untrimmed(event))
    assert dropped == ["eventValue.note", "eventValue.af_order_id", "referrer", "UserAgent"]
    assert len(encode_payload(fitted)) <= MAX_PAYLOAD_BYTES
    kept = {"customerUserId", "afUserId", "webDevKey", "eventType", "eventName", "timestamp", "ip"}
    assert kept | {"eventRevenue", "eventRevenueCurrency"} == set(fitted)


def test_user_agent_survives_when_dropping_the_referrer_is_enough():
    event = make_event(
        context=Context(
            customer_user_id="c", referrer_url="https://r.test/" + "r" * 900, client_user_agent="UA/1"
        )
    )
    payload = prepared(event).payload
    assert "referrer" not in payload
    assert payload["UserAgent"] == "UA/1"


def test_payload_that_cannot_fit_is_rejected_with_size_and_without_values():
    huge_id = "customer-" + "x" * 1100
    outcome = destination().prepare(
        make_event(value=Decimal(3), currency="USD", context=Context(customer_user_id=huge_id))
    )
    assert isinstance(outcome, Outcome)
    assert outcome.status is Status.REJECT
    assert outcome.reason.startswith("payload: ")
    assert "1024-byte limit" in outcome.reason
    assert "customer-" not in outcome.reason


def test_payload_size_counts_utf8_bytes_not_characters():
    # 3 bytes per character: 320 characters are 960 bytes, which no longer fit next to the mandatory fields.
    event = make_event(properties={"name": "가" * 320}, transaction_id="pi_1")
    payload = prepared(event).payload
    assert payload["eventValue"] == {"af_order_id": "pi_1"}


@pytest.mark.parametrize(
    ("chars", "within"),
    [(MAX_EVENT_VALUE_CHARS - 1, True), (MAX_EVENT_VALUE_CHARS, True), (MAX_EVENT_VALUE_CHARS + 1, False)],
)
def test_event_value_character_boundary(chars: int, within: bool):
    # {"k":"..."} has 8 characters of framing.
    event_value = {"k": "v" * (chars - 8)}
    assert event_value_length(event_value) == chars
    assert (event_value_length(event_value) <= MAX_EVENT_VALUE_CHARS) is within


def test_event_value_over_1000_characters_is_trimmed_even_before_the_byte_rule():
    # 1,001 characters of eventValue always exceed 1,024 bytes with the mandatory fields, so both rules
    # agree; this pins that trimming removes whole keys (AppsFlyer would cut the JSON mid-value).
    payload = prepared_untrimmed(make_event(transaction_id="pi_1"))
    payload["eventValue"] = {"k": "v" * (MAX_EVENT_VALUE_CHARS + 1 - 8), "af_order_id": "pi_1"}
    fitted, dropped = fit_payload(payload)
    assert dropped == ["eventValue.k"]
    assert fitted["eventValue"] == {"af_order_id": "pi_1"}


def prepared_untrimmed(event: ConversionEvent) -> dict:
    built = destination().build_payload(event)
    assert isinstance(built, dict), built
    return built


# -- classification ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, Status.DELIVERED),
        (408, Status.RETRY),
        (429, Status.RETRY),
        (500, Status.RETRY),
        (502, Status.RETRY),
        (503, Status.RETRY),
        (400, Status.REJECT),
        (401, Status.REJECT),
        (403, Status.REJECT),
        (404, Status.REJECT),
        (413, Status.REJECT),
        (302, Status.REJECT),
    ],
)
def test_classification_table(status: int, expected: Status):
    outcome = classify_response(
        status, '{"error": "what went wrong", "message": "Bad Request", "status": 400}'
    )
    assert outcome.status is expected
    assert outcome.http_status == status
    if expected is not Status.DELIVERED:
        assert "what went wrong - Bad Request" in outcome.reason


def test_retry_after_is_carried():
    assert classify_response(429, "", "7").retry_after_seconds == 7.0
    assert classify_response(429, "", "Wed, 21 Oct 2026 07:28:00 GMT").retry_after_seconds is None


def test_reject_reason_is_truncated_and_redacted():
    text = json.dumps({"error": "bad customerUserId cuid-secret " + "z" * 500, "message": "Bad Request"})
    outcome = classify_response(400, text, redact=["cuid-secret"])
    assert "cuid-secret" not in outcome.reason
    assert "[redacted]" in outcome.reason
    assert len(outcome.reason) <= len("AppsFlyer answered 400: ") + 200


def test_very_short_values_are_not_redacted_out_of_the_message():
    outcome = classify_response(401, '{"error": "webDevKey is missing or invalid"}', redact=["e", "ab"])
    assert outcome.reason.endswith(": webDevKey is missing or invalid")


def test_plain_text_error_body_is_used_as_is():
    assert (
        classify_response(500, "Internal Server Error").reason
        == "AppsFlyer answered 500: Internal Server Error"
    )


@pytest.mark.parametrize(
    ("status", "body", "expected", "reason_part"),
    [
        (
            400,
            {"error": "eventName is required", "message": "Bad Request", "status": 400},
            Status.REJECT,
            "eventName",
        ),
        (401, {"error": "Unauthorized"}, Status.REJECT, "web_dev_key"),
        (403, "Forbidden", Status.REJECT, "Forbidden"),
        (404, {"error": "bundle ID not found"}, Status.REJECT, "bundle_id"),
        (429, "Too Many Requests", Status.RETRY, "429"),
        (500, None, Status.RETRY, "500"),
        (503, "unavailable", Status.RETRY, "unavailable"),
    ],
)
def test_http_statuses_over_the_wire(live: FakeAppsflyer, session, status, body, expected, reason_part):
    live.fail_next(1, status, body)
    dest = destination(session, live.url)
    [outcome] = dest.send([prepared(make_event(), dest)])
    assert outcome.status is expected
    assert outcome.http_status == status
    assert reason_part in outcome.reason
    assert DEV_KEY not in outcome.reason


def test_dropped_connection_is_dead_lettered_as_uncertain_by_default(live: FakeAppsflyer, session):
    # The request may have been recorded; AppsFlyer does not de-duplicate, so no blind resend.
    live.fail_next(1, None)
    dest = destination(session, live.url)
    [outcome] = dest.send([prepared(make_event(), dest)])
    assert (outcome.status, outcome.error_code) == (Status.REJECT, "uncertain")
    assert outcome.reason.startswith("uncertain: network error")
    assert "relay replay --reason uncertain" in outcome.reason


def test_dropped_connection_is_retried_when_the_policy_says_retry(live: FakeAppsflyer, session):
    live.fail_next(1, None)
    dest = destination(session, live.url, ambiguous_policy=AmbiguousPolicy.RETRY)
    [outcome] = dest.send([prepared(make_event(), dest)])
    assert (outcome.status, outcome.error_code) == (Status.RETRY, "ambiguous")
    assert outcome.reason.startswith("network error")


def test_a_refused_connection_is_retried_whatever_the_policy(session):
    # Nothing listens on port 9: no byte reached AppsFlyer, so a retry cannot double count.
    dest = destination(session, "http://127.0.0.1:9")
    [outcome] = dest.send([prepared(make_event(), dest)])
    assert (outcome.status, outcome.error_code) == (Status.RETRY, "not_sent")


@pytest.mark.parametrize(
    ("policy", "expected"),
    [(AmbiguousPolicy.DEAD_LETTER, Status.REJECT), (AmbiguousPolicy.RETRY, Status.RETRY)],
)
def test_read_timeout_follows_the_ambiguous_policy(policy, expected):
    # Its own fake and session: the handler keeps sleeping after we give up on it.
    own = FakeAppsflyer(bundle_id=BUNDLE, web_dev_key=DEV_KEY).start()
    own.fail_next(1, 200, {"status": "OK"}, delay_seconds=1.0)
    try:
        with requests.Session() as fresh:
            dest = destination(fresh, own.url, timeout=(2.0, 0.2), ambiguous_policy=policy)
            [outcome] = dest.send([prepared(make_event(), dest)])
    finally:
        own.stop()
    assert outcome.status is expected
    assert "Timeout" in outcome.reason


def test_real_rules_of_the_fake_are_classified(live: FakeAppsflyer, session):
    wrong_bundle = AppsflyerDestination({"bundle_id": "other", "web_dev_key": DEV_KEY}, session, live.url)
    wrong_key = AppsflyerDestination({"bundle_id": BUNDLE, "web_dev_key": "nope"}, session, live.url)
    [not_found] = wrong_bundle.send([prepared(make_event(), wrong_bundle)])
    [unauthorized] = wrong_key.send([prepared(make_event(), wrong_key)])
    assert (not_found.status, not_found.http_status) == (Status.REJECT, 404)
    assert (unauthorized.status, unauthorized.http_status) == (Status.REJECT, 401)
    assert "nope" not in unauthorized.reason


# -- send: concurrency, order, end to end -------------------------------------------------------------
def test_concurrency_never_exceeds_max_workers(session):
    # Its own fake: a request another test left in flight (e.g. the timeout test) must not count here.
    own = FakeAppsflyer(bundle_id=BUNDLE, web_dev_key=DEV_KEY).start()
    try:
        own.latency_seconds = 0.15
        dest = destination(session, own.url, max_workers=3)
        batch = [prepared(make_event(transaction_id=f"pi_{i}"), dest) for i in range(9)]
        outcomes = dest.send(batch)
    finally:
        own.stop()
    assert [o.status for o in outcomes] == [Status.DELIVERED] * 9
    assert 1 < own.max_in_flight <= 3
    assert len(own.events) == 9


def test_outcomes_come_back_in_input_order(live: FakeAppsflyer, session):
    live.latency_seconds = 0.05
    dest = destination(session, live.url, max_workers=4)
    batch = [prepared(make_event(transaction_id=f"pi_{i}"), dest) for i in range(8)]
    broken = {1, 4, 6}
    for index in broken:  # the fake answers 400 when eventName is missing
        payload = {k: v for k, v in batch[index].payload.items() if k != "eventName"}
        batch[index] = dataclasses.replace(batch[index], payload=payload)
    outcomes = dest.send(batch)
    assert [i for i, o in enumerate(outcomes) if o.status is Status.REJECT] == sorted(broken)
    assert all(o.status is Status.DELIVERED for i, o in enumerate(outcomes) if i not in broken)


def test_empty_batch_sends_nothing(live: FakeAppsflyer, session):
    assert destination(session, live.url).send([]) == []
    assert live.received == []


def test_end_to_end_batch_through_the_fake(live: FakeAppsflyer, session):
    dest = destination(session, live.url)
    events = [
        make_event(
            PURCHASE, value=Decimal("59.97"), currency="EUR", transaction_id="pi_1", items=(Item(id="a"),)
        ),
        make_event(REFUND, value=Decimal("10"), currency="EUR", transaction_id="re_1"),
        make_event(
            SUBSCRIPTION_START,
            value=Decimal(9900),
            currency="KRW",
            subscription_id="sub_1",
            context=Context(af_user_id="af-1", client_user_agent="UA/1", client_ip="192.0.2.7"),
        ),
        make_event(
            SUBSCRIPTION_RENEWAL,
            value=Decimal(9900),
            currency="KRW",
            subscription_id="sub_1",
            context=Context(user_id="u-1", referrer_url="https://example.test/"),
        ),
    ]
    batch = [prepared(event, dest) for event in events]
    outcomes = dest.send(batch)
    assert outcomes == [Outcome.delivered(200)] * 4
    assert sorted(live.events, key=json.dumps) == sorted((p.payload for p in batch), key=json.dumps)
    assert {e["eventName"] for e in live.events} == {"af_purchase", "af_refund", "af_subscribe"}
    assert all(r.path == f"/v1/{BUNDLE}/event" for r in live.received)
    assert all(r.headers["content-type"] == "application/json" for r in live.received)
    assert live.truncated == []


# -- construction ------------------------------------------------------------------------------------
def test_from_environment_reads_secret_and_base_url(monkeypatch: pytest.MonkeyPatch, session):
    monkeypatch.setattr(appsflyer, "get_secret", lambda component: {"appsflyer": CREDENTIALS}[component])
    monkeypatch.setenv("APPSFLYER_BASE_URL", "http://127.0.0.1:8123/")
    dest = AppsflyerDestination.from_environment(session, max_workers=2)
    assert dest.url == f"http://127.0.0.1:8123/v1/{BUNDLE}/event"
    assert dest.max_workers == 2


def test_from_environment_defaults_to_the_public_endpoint(monkeypatch: pytest.MonkeyPatch, session):
    monkeypatch.setattr(appsflyer, "get_secret", lambda component: CREDENTIALS)
    monkeypatch.delenv("APPSFLYER_BASE_URL", raising=False)
    assert (
        AppsflyerDestination.from_environment(session).url
        == f"https://webs2s.appsflyer.com/v1/{BUNDLE}/event"
    )


def test_missing_secret_key_names_the_key_not_the_value():
    with pytest.raises(ConfigError) as caught:
        AppsflyerDestination({"bundle_id": "b-secretish"}, requests.Session())
    assert "web_dev_key" in str(caught.value)
    assert "b-secretish" not in str(caught.value)


@pytest.mark.parametrize(
    ("echoed", "kept"),
    [
        ("bad ip 192.0.2.1", "bad ip [redacted]"),
        ("for pii.canary@example.net", "for [redacted]"),
        ("address 2001:db8::1 refused", "address [redacted] refused"),
        ("phone +82 10-1234-5678 invalid", "phone [redacted] invalid"),
        ("at 12:30:45 eventName is required", "at 12:30:45 eventName is required"),
    ],
)
def test_personal_data_shapes_never_reach_a_reason_even_when_we_did_not_send_them(echoed: str, kept: str):
    assert classify_response(400, json.dumps({"error": echoed})).reason == f"AppsFlyer answered 400: {kept}"
