"""Meta Conversions API: mapping, validation, classification, bisection, sending through FakeMeta."""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests

from conversion_relay import config
from conversion_relay.config import ConfigError
from conversion_relay.destinations import meta
from conversion_relay.destinations.base import Outcome, Prepared, Status
from conversion_relay.destinations.meta import (
    DEFAULT_API_VERSION,
    MetaDestination,
    classify_response,
    retry_after_seconds,
)
from conversion_relay.model import (
    PURCHASE,
    REFUND,
    SUBSCRIPTION_RENEWAL,
    SUBSCRIPTION_START,
    Consent,
    Context,
    ConversionEvent,
    Item,
    Person,
    Source,
)
from relay_local.fakes.meta import FakeMeta

PIXEL_ID = "1234567890"
ACCESS_TOKEN = "EAAB-meta-test-token-do-not-log"
CREDENTIALS = {"pixel_id": PIXEL_ID, "access_token": ACCESS_TOKEN}
NOW = datetime(2026, 3, 2, 13, 0, 0, tzinfo=UTC)
OCCURRED = datetime(2026, 3, 2, 12, 30, 45, 654321, tzinfo=UTC)
EMAIL = "Jane.Doe@Example.com"
URL = "https://shop.example.com/checkout/success"
UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15"
NO_CUSTOMER_INFORMATION = (
    "user_data: no customer information (em, ph, external_id, fbp, fbc, client_ip_address...)"
)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def make_event(**overrides: Any) -> ConversionEvent:
    base = ConversionEvent(
        event_id="stripe:cs_1:purchase",
        name=PURCHASE,
        occurred_at=OCCURRED,
        source=Source("stripe", "evt_1", "checkout.session.completed", "cs_1"),
        value=Decimal("59.90"),
        currency="EUR",
        transaction_id="pi_1",
        person=Person(email=EMAIL),
    )
    return dataclasses.replace(base, **overrides)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeMeta]:
    server = FakeMeta(access_token=ACCESS_TOKEN, pixel_id=PIXEL_ID, clock=lambda: NOW).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _clean_fake(request: pytest.FixtureRequest) -> None:
    if "fake" in request.fixturenames:
        request.getfixturevalue("fake").reset()


@pytest.fixture
def dest(session: requests.Session) -> MetaDestination:
    return MetaDestination(CREDENTIALS, session, clock=lambda: NOW)


@pytest.fixture
def live(session: requests.Session, fake: FakeMeta) -> MetaDestination:
    return MetaDestination(CREDENTIALS, session, fake.url, clock=lambda: NOW)


def prepared(destination: MetaDestination, event: ConversionEvent) -> Prepared:
    result = destination.prepare(event)
    assert isinstance(result, Prepared), result
    return result


def rejected(destination: MetaDestination, event: ConversionEvent) -> Outcome:
    result = destination.prepare(event)
    assert isinstance(result, Outcome), result
    assert result.status is Status.REJECT
    return result


# -- mapping -----------------------------------------------------------------------------------------
def test_purchase_maps_every_field(dest: MetaDestination):
    event = make_event(
        items=(
            Item(
                id="sku-1",
                name="Plan Pro",
                price=Decimal("29.95"),
                quantity=2,
                category="plans",
                brand="Acme",
            ),
            Item(name="Sticker", price=Decimal("1.00")),  # no id: counted, but not a content
        ),
        subscription_id="sub_1",
        person=Person(
            email=EMAIL,
            phone="+1 (650) 555-1212",
            first_name="Valéry",
            last_name="Doe",
            date_of_birth="1990-01-02",
            gender="female",
            city="San Francisco",
            state="CA",
            zip="94105-1234",
            country="US",
            external_id="cus_42",
        ),
        context=Context(
            fbp="fb.1.1700000000000.123456789",
            fbc="fb.1.1700000000000.AbCdEf",
            client_ip="2001:db8::1",
            client_user_agent=UA,
            event_source_url=URL,
            referrer_url="https://www.facebook.com/",
        ),
        consent=Consent(
            data_processing_options=("LDU",),
            data_processing_options_country=1,
            data_processing_options_state=1000,
        ),
        properties={"plan": "pro", "value": "999"},  # a property never overwrites a standard parameter
    )
    result = prepared(dest, event)
    assert result.payload == {
        "event_name": "Purchase",
        "event_time": int(OCCURRED.timestamp()),
        "event_id": "stripe:cs_1:purchase",
        "action_source": "website",
        "event_source_url": URL,
        "referrer_url": "https://www.facebook.com/",
        "user_data": {
            "em": [sha("jane.doe@example.com")],
            "ph": [sha("16505551212")],
            "fn": [sha("valéry")],
            "ln": [sha("doe")],
            "ge": [sha("f")],
            "db": [sha("19900102")],
            "ct": [sha("sanfrancisco")],
            "st": [sha("ca")],
            "zp": [sha("94105")],
            "country": [sha("us")],
            "external_id": [sha("cus_42")],
            "client_ip_address": "2001:db8::1",
            "client_user_agent": UA,
            "fbp": "fb.1.1700000000000.123456789",
            "fbc": "fb.1.1700000000000.AbCdEf",
            "subscription_id": "sub_1",
        },
        "custom_data": {
            "value": 59.9,
            "currency": "eur",
            "order_id": "pi_1",
            "content_ids": ["sku-1"],
            "contents": [
                {
                    "id": "sku-1",
                    "quantity": 2,
                    "item_price": 29.95,
                    "title": "Plan Pro",
                    "category": "plans",
                    "brand": "Acme",
                }
            ],
            "content_type": "product",
            "num_items": 3,
            "plan": "pro",
        },
        "data_processing_options": ["LDU"],
        "data_processing_options_country": 1,
        "data_processing_options_state": 1000,
    }
    assert result.event is event
    assert result.group_key == PIXEL_ID
    assert result.dropped_identifiers == ()
    assert isinstance(result.payload["custom_data"]["value"], float)


def test_minimal_purchase_is_an_other_event_without_optional_fields(dest: MetaDestination):
    assert prepared(dest, make_event()).payload == {
        "event_name": "Purchase",
        "event_time": int(OCCURRED.timestamp()),
        "event_id": "stripe:cs_1:purchase",
        "action_source": "other",
        "user_data": {"em": [sha("jane.doe@example.com")]},
        "custom_data": {"value": 59.9, "currency": "eur", "order_id": "pi_1"},
    }


@pytest.mark.parametrize(
    ("name", "context", "expected"),
    [
        (PURCHASE, Context(event_source_url=URL, client_user_agent=UA), "website"),
        (PURCHASE, Context(event_source_url=URL), "other"),  # a URL alone cannot make a valid website event
        (PURCHASE, Context(client_user_agent=UA), "other"),
        (PURCHASE, Context(), "other"),
        (PURCHASE, Context(action_source="Email"), "email"),
        (
            PURCHASE,
            Context(action_source="physical_store", event_source_url=URL, client_user_agent=UA),
            "physical_store",
        ),
        (SUBSCRIPTION_START, Context(event_source_url=URL, client_user_agent=UA), "website"),
        (SUBSCRIPTION_RENEWAL, Context(event_source_url=URL, client_user_agent=UA), "system_generated"),
        (SUBSCRIPTION_RENEWAL, Context(action_source="website"), "system_generated"),
    ],
)
def test_action_source(dest: MetaDestination, name: str, context: Context, expected: str):
    payload = prepared(dest, make_event(name=name, context=context)).payload
    assert payload["action_source"] == expected


@pytest.mark.parametrize(
    ("name", "meta_name"), [(SUBSCRIPTION_START, "Subscribe"), (SUBSCRIPTION_RENEWAL, "Subscribe")]
)
def test_subscription_events_are_subscribe(dest: MetaDestination, name: str, meta_name: str):
    payload = prepared(dest, make_event(name=name, subscription_id="sub_1")).payload
    assert payload["event_name"] == meta_name
    assert payload["user_data"]["subscription_id"] == "sub_1"


def test_invalid_identifiers_are_dropped_and_reported(dest: MetaDestination):
    event = make_event(person=Person(email="jane.doe", phone="+0000000000", external_id="cus_1"))
    result = prepared(dest, event)
    assert result.payload["user_data"] == {"external_id": [sha("cus_1")]}
    assert result.dropped_identifiers == ("invalid_email", "invalid_phone")


def test_refunds_are_skipped_by_default(dest: MetaDestination):
    assert dest.prepare(make_event(name=REFUND)) == Outcome.skip(
        "refund events are not sent to Meta by default (no standard refund event); set "
        'MAPPING_OVERRIDES {"event_names": {"meta": {"refund": "<custom event name>"}}} to enable'
    )


def test_refunds_are_sent_when_the_mapping_names_an_event(
    dest: MetaDestination, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("MAPPING_OVERRIDES", json.dumps({"event_names": {"meta": {"refund": "Refund"}}}))
    config.mapping.cache_clear()
    payload = prepared(dest, make_event(name=REFUND, event_id="stripe:re_1:refund")).payload
    assert payload["event_name"] == "Refund"
    assert payload["event_id"] == "stripe:re_1:refund"


def test_custom_events_pass_through_with_their_properties(dest: MetaDestination):
    event = make_event(name="TrialConverted", value=None, currency=None, properties={"plan": "pro"})
    payload = prepared(dest, event).payload
    assert payload["event_name"] == "TrialConverted"
    assert payload["custom_data"] == {"order_id": "pi_1", "plan": "pro"}


# -- validation --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("occurred_at", "ok"),
    [
        (NOW - timedelta(days=7), True),
        (NOW - timedelta(days=7, seconds=1), False),
        (NOW + timedelta(seconds=60), True),
        (NOW + timedelta(seconds=61), False),
    ],
)
def test_event_time_window(dest: MetaDestination, occurred_at: datetime, ok: bool):
    result = dest.prepare(make_event(occurred_at=occurred_at))
    if ok:
        assert isinstance(result, Prepared)
    else:
        assert isinstance(result, Outcome)
        assert result.status is Status.REJECT
        assert result.reason.startswith("event_time: ")


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (
            {"context": Context(action_source="website", client_user_agent=UA)},
            "event_source_url: required when action_source is website",
        ),
        (
            {"context": Context(action_source="website", event_source_url=URL)},
            "user_data.client_user_agent: required when action_source is website",
        ),
        ({"value": None}, "custom_data.value: required for Purchase"),
        ({"currency": None}, "custom_data.currency: required for Purchase"),
        ({"person": Person()}, NO_CUSTOMER_INFORMATION),
        (
            {"person": Person(email="jane.doe@", phone="12")},
            f"{NO_CUSTOMER_INFORMATION}; dropped as invalid: invalid_email, invalid_phone",
        ),
        (
            {"context": Context(action_source="carrier pigeon")},
            "action_source: not one of Meta's values ['app', 'business_messaging', 'chat', 'email', "
            "'other', 'phone_call', 'physical_store', 'system_generated', 'website']; fix the "
            "action_source metadata at checkout",
        ),
    ],
)
def test_validation_rejects_name_the_field(dest: MetaDestination, overrides: dict[str, Any], reason: str):
    outcome = rejected(dest, make_event(**overrides))
    assert outcome.reason == reason
    assert outcome.error_code == "meta_validation"


def test_a_browser_identifier_alone_is_enough_customer_information(dest: MetaDestination):
    assert isinstance(dest.prepare(make_event(person=Person(), context=Context(fbp="fb.1.1.1"))), Prepared)


# -- classification ----------------------------------------------------------------------------------
def envelope(code: int, subcode: int | None = None, **extra: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"message": "x", "type": "OAuthException", "code": code, "fbtrace_id": "AbC"}
    if subcode is not None:
        error["error_subcode"] = subcode
    error.update(extra)
    return {"error": error}


USAGE = {"X-Business-Use-Case-Usage": json.dumps({"1": [{"estimated_time_to_regain_access": 5}]})}


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected_status", "error_code", "bisectable", "retry_after"),
    [
        (
            200,
            {"events_received": 3, "messages": [], "fbtrace_id": "A"},
            {},
            Status.DELIVERED,
            None,
            False,
            None,
        ),
        (200, {"ok": True}, {}, Status.RETRY, "meta_unexpected_success", False, None),
        (200, None, {}, Status.RETRY, "meta_unexpected_success", False, None),
        # throttling: retry, honouring the BUC header
        (400, envelope(4), {}, Status.RETRY, "meta_throttled_4", False, None),
        (400, envelope(17, 2446079), USAGE, Status.RETRY, "meta_throttled_17", False, 300.0),
        (400, envelope(32), {}, Status.RETRY, "meta_throttled_32", False, None),
        (400, envelope(613, 1487742), {}, Status.RETRY, "meta_throttled_613", False, None),
        (400, envelope(80000), USAGE, Status.RETRY, "meta_throttled_80000", False, 300.0),
        (400, envelope(80004), {}, Status.RETRY, "meta_throttled_80004", False, None),
        (400, envelope(80014), {}, Status.RETRY, "meta_throttled_80014", False, None),
        # transient
        (500, envelope(1), {}, Status.RETRY, "meta_1", False, None),
        (500, envelope(2), {}, Status.RETRY, "meta_2", False, None),
        (400, envelope(341), {}, Status.RETRY, "meta_341", False, None),
        (400, envelope(368), {}, Status.RETRY, "meta_368", False, None),
        (400, envelope(5000), {}, Status.RETRY, "meta_5000", False, None),
        (400, envelope(21009), {}, Status.RETRY, "meta_21009", False, None),
        (400, envelope(999, is_transient=True), {}, Status.RETRY, "meta_999", False, None),
        (503, envelope(999), {}, Status.RETRY, "meta_999", False, None),
        (502, "<html>Bad gateway</html>", {}, Status.RETRY, "meta_http_502", False, None),
        (429, None, {}, Status.RETRY, "meta_http_429", False, None),
        # auth / permissions: a distinct error_code per code for the alarm
        (400, envelope(190, 463), {}, Status.REJECT, "meta_auth_190", False, None),
        (401, envelope(190), {}, Status.REJECT, "meta_auth_190", False, None),
        (400, envelope(102), {}, Status.REJECT, "meta_auth_102", False, None),
        (400, envelope(104), {}, Status.REJECT, "meta_auth_104", False, None),
        (403, envelope(10), {}, Status.REJECT, "meta_auth_10", False, None),
        (403, envelope(200), {}, Status.REJECT, "meta_auth_200", False, None),
        (403, envelope(299), {}, Status.REJECT, "meta_auth_299", False, None),
        # parameter errors: rejected; bisectable unless they describe the pixel itself
        (400, envelope(100, 2804003), {}, Status.REJECT, "meta_100_2804003", True, None),
        (400, envelope(100), {}, Status.REJECT, "meta_100", True, None),
        (400, envelope(100, 33), {}, Status.REJECT, "meta_100_33", False, None),
        # anything else
        (400, envelope(803), {}, Status.REJECT, "meta_803", False, None),
        (404, "not found", {}, Status.REJECT, "meta_http_404", False, None),
    ],
)
def test_classification(status, body, headers, expected_status, error_code, bisectable, retry_after):
    result = classify_response(status, body, headers)
    assert result.outcome.status is expected_status
    assert result.outcome.error_code == error_code
    assert result.outcome.http_status == status
    assert result.bisectable is bisectable
    assert result.outcome.retry_after_seconds == retry_after


def test_parameter_errors_carry_metas_user_title_and_message_not_its_raw_message():
    body = envelope(
        100,
        2804003,
        message="Invalid parameter jane.doe@example.com",
        error_user_title="Event Timestamp Too Old",
        error_user_msg="The timestamp for this event is too far in the past.",
    )
    reason = classify_response(400, body, {}).outcome.reason
    assert reason == (
        "Meta rejected the event (code 100, subcode 2804003): Event Timestamp Too Old: "
        "The timestamp for this event is too far in the past. [fbtrace_id AbC]"
    )


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("not json", None),
        ("[]", None),
        (json.dumps({"1": [{"estimated_time_to_regain_access": 0}]}), None),
        (json.dumps({"1": [{"estimated_time_to_regain_access": 2}]}), 120.0),
        (
            json.dumps(
                {
                    "1": [{"estimated_time_to_regain_access": 2}, {"estimated_time_to_regain_access": 7}],
                    "2": [{"estimated_time_to_regain_access": 3}],
                }
            ),
            420.0,
        ),
        (json.dumps({"1": [{"estimated_time_to_regain_access": "5"}]}), None),
    ],
)
def test_retry_after_from_the_business_use_case_header(header, seconds):
    headers = {} if header is None else {"X-Business-Use-Case-Usage": header}
    assert retry_after_seconds(headers) == seconds


# -- sending through FakeMeta ------------------------------------------------------------------------
def test_delivers_with_the_token_in_the_body_never_in_the_url(live: MetaDestination, fake: FakeMeta):
    item = prepared(live, make_event())
    assert live.send([item]) == [Outcome.delivered(200)]
    assert fake.events == [item.payload]
    (request,) = fake.received
    assert request.path == f"/{DEFAULT_API_VERSION}/{PIXEL_ID}/events"
    assert request.query == {}
    assert ACCESS_TOKEN not in request.path
    body = request.json()
    assert body == {"data": [item.payload], "access_token": ACCESS_TOKEN}
    assert request.headers["content-type"] == "application/json"


def test_sends_the_test_event_code_from_the_secret(session: requests.Session, fake: FakeMeta):
    destination = MetaDestination(
        {**CREDENTIALS, "test_event_code": "TEST123"}, session, fake.url, clock=lambda: NOW
    )
    assert destination.send([prepared(destination, make_event())])[0].status is Status.DELIVERED
    assert fake.received[0].json()["test_event_code"] == "TEST123"
    assert fake.test_event_codes == ["TEST123"]


def test_one_request_for_up_to_1000_events_then_another(live: MetaDestination, fake: FakeMeta):
    events = [prepared(live, make_event(event_id=f"e{i}")) for i in range(1001)]
    assert {outcome.status for outcome in live.send(events[:1000])} == {Status.DELIVERED}
    assert [len(r.json()["data"]) for r in fake.received] == [1000]
    fake.reset()
    outcomes = live.send(events)
    assert [outcome.status for outcome in outcomes] == [Status.DELIVERED] * 1001
    assert [len(r.json()["data"]) for r in fake.received] == [1000, 1]
    assert [event["event_id"] for event in fake.events] == [f"e{i}" for i in range(1001)]


def broken(destination: MetaDestination, event_id: str, **payload_changes: Any) -> Prepared:
    """An event the fake rejects although prepare() accepted it (what bisection exists for)."""
    good = prepared(destination, make_event(event_id=event_id))
    return dataclasses.replace(good, payload={**good.payload, **payload_changes})


def assert_each_delivered_once(fake: FakeMeta, event_ids: list[str]) -> None:
    counts = collections.Counter(event["event_id"] for event in fake.events)
    assert counts == dict.fromkeys(event_ids, 1)


def test_bisection_isolates_one_bad_event_in_seven(live: MetaDestination, fake: FakeMeta):
    batch = [prepared(live, make_event(event_id=f"e{i}")) for i in range(7)]
    batch[4] = broken(live, "e4", user_data={"em": ["Jane.Doe@Example.com"]})  # unhashed email
    outcomes = live.send(batch)
    assert [outcome.status for outcome in outcomes] == [Status.DELIVERED] * 4 + [Status.REJECT] + [
        Status.DELIVERED
    ] * 2
    bad = outcomes[4]
    assert bad.error_code == "meta_100"
    assert "Invalid Customer Information Parameter" in bad.reason
    assert "user_data.em" in bad.reason
    assert "jane" not in bad.reason.lower()
    assert_each_delivered_once(fake, ["e0", "e1", "e2", "e3", "e5", "e6"])
    assert len(fake.received) <= 1 + 2 * math.ceil(math.log2(7))


def test_bisection_isolates_several_bad_events_with_their_own_reasons(live: MetaDestination, fake: FakeMeta):
    batch = [prepared(live, make_event(event_id=f"e{i}")) for i in range(10)]
    batch[0] = broken(live, "e0", event_time=int((NOW - timedelta(days=8)).timestamp()))
    batch[9] = broken(live, "e9", custom_data={"currency": "eur"})  # Purchase without value
    outcomes = live.send(batch)
    assert outcomes[0].error_code == "meta_100_2804003"
    assert "Event Timestamp Too Old" in outcomes[0].reason
    assert outcomes[9].error_code == "meta_100_2804009"
    assert [outcome.status for outcome in outcomes[1:9]] == [Status.DELIVERED] * 8
    assert_each_delivered_once(fake, [f"e{i}" for i in range(1, 9)])
    assert len(fake.received) <= 1 + 2 * 2 * math.ceil(math.log2(10))


def test_bisection_stops_when_its_request_budget_is_spent(session: requests.Session, fake: FakeMeta):
    destination = MetaDestination(CREDENTIALS, session, fake.url, clock=lambda: NOW, max_bisect_requests=0)
    batch = [prepared(destination, make_event(event_id=f"e{i}")) for i in range(4)]
    batch[1] = broken(destination, "e1", action_source="carrier pigeon")
    outcomes = destination.send(batch)
    assert {outcome.status for outcome in outcomes} == {Status.RETRY}
    assert "bisection budget" in outcomes[0].reason
    assert len(fake.received) == 1
    assert fake.events == []


def test_a_single_bad_event_is_rejected_without_bisection(live: MetaDestination, fake: FakeMeta):
    outcome = live.send([broken(live, "e1", user_data={"ph": "6505551212"})])
    assert outcome[0].status is Status.REJECT
    assert len(fake.received) == 1


def test_errors_about_the_pixel_itself_are_not_bisected(session: requests.Session, fake: FakeMeta):
    destination = MetaDestination({**CREDENTIALS, "pixel_id": "999"}, session, fake.url, clock=lambda: NOW)
    outcomes = destination.send([prepared(destination, make_event(event_id=f"e{i}")) for i in range(8)])
    assert {(o.status, o.error_code) for o in outcomes} == {(Status.REJECT, "meta_100_33")}
    assert len(fake.received) == 1


def test_a_wrong_token_is_an_auth_reject_that_never_echoes_the_token(
    session: requests.Session, fake: FakeMeta
):
    destination = MetaDestination(
        {**CREDENTIALS, "access_token": "EAAB-rotated-away"}, session, fake.url, clock=lambda: NOW
    )
    outcomes = destination.send([prepared(destination, make_event(event_id=f"e{i}")) for i in range(3)])
    assert {(o.status, o.error_code) for o in outcomes} == {(Status.REJECT, "meta_auth_190")}
    assert "EAAB" not in outcomes[0].reason
    assert len(fake.received) == 1


@pytest.mark.parametrize(("code", "minutes"), [(17, 1), (80004, 5)])
def test_throttling_is_retried_after_the_regain_time(
    live: MetaDestination, fake: FakeMeta, code: int, minutes: int
):
    fake.throttle_next(1, code=code, regain_minutes=minutes)
    batch = [prepared(live, make_event(event_id=f"e{i}")) for i in range(3)]
    outcomes = live.send(batch)
    assert {(o.status, o.error_code, o.retry_after_seconds) for o in outcomes} == {
        (Status.RETRY, f"meta_throttled_{code}", minutes * 60.0)
    }
    assert live.send(batch) == [Outcome.delivered(200)] * 3


def test_a_dropped_connection_is_retried(live: MetaDestination, fake: FakeMeta):
    fake.fail_next(1, None)
    outcomes = live.send([prepared(live, make_event())])
    assert outcomes[0].status is Status.RETRY
    assert outcomes[0].reason.startswith("network error")


def test_a_5xx_without_an_envelope_is_retried(live: MetaDestination, fake: FakeMeta):
    fake.fail_next(1, 503, "upstream unavailable")
    assert live.send([prepared(live, make_event())])[0].error_code == "meta_http_503"


def test_send_of_nothing_sends_nothing(live: MetaDestination, fake: FakeMeta):
    assert live.send([]) == []
    assert fake.received == []


# -- configuration -----------------------------------------------------------------------------------
def test_from_environment_reads_the_secret_and_settings(
    monkeypatch: pytest.MonkeyPatch, session: requests.Session
):
    calls: list[tuple[str, bool]] = []

    def fake_secret(component: str, *, force_fetch: bool = False) -> dict[str, Any]:
        calls.append((component, force_fetch))
        return {**CREDENTIALS, "test_event_code": "TEST9"}

    monkeypatch.setattr(meta, "get_secret", fake_secret)
    monkeypatch.setenv("META_BASE_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("META_API_VERSION", "v26.0")
    destination = MetaDestination.from_environment(session, force_fetch=True)
    assert destination.url == f"http://127.0.0.1:9/v26.0/{PIXEL_ID}/events"
    assert calls == [("meta", True)]
    monkeypatch.delenv("META_BASE_URL")
    monkeypatch.delenv("META_API_VERSION")
    assert MetaDestination.from_environment(session).url == (
        f"https://graph.facebook.com/v25.0/{PIXEL_ID}/events"
    )


@pytest.mark.parametrize(
    ("credentials", "message"),
    [
        ({"pixel_id": PIXEL_ID}, "lacks ['access_token']"),
        ({"access_token": ACCESS_TOKEN}, "lacks ['pixel_id']"),
        ({"pixel_id": "https://graph.facebook.com/123", "access_token": ACCESS_TOKEN}, "numeric"),
    ],
)
def test_bad_credentials_fail_with_the_key_name(session: requests.Session, credentials, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")) as caught:
        MetaDestination(credentials, session)
    assert ACCESS_TOKEN not in str(caught.value)


def test_repr_hides_the_token(dest: MetaDestination):
    assert ACCESS_TOKEN not in repr(dest)
    assert PIXEL_ID in repr(dest)
