"""GA4 limits at their boundaries, checked twice: our prepare() and FakeGa4's independent validator agree.

For every case on the allowed side we send through FakeGa4 on 127.0.0.1 and assert it recorded no
validation message; for every case on the refused side we post the body we refused to send and
assert the fake flags the same field path and code, so neither side of the boundary is our opinion only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests

from conversion_relay import config
from conversion_relay.destinations.base import Outcome, Prepared, Status
from conversion_relay.destinations.ga4 import (
    Ga4Destination,
    Ga4Options,
    encode_body,
    map_event,
    merge_bodies,
    rules,
    validate_body,
)
from conversion_relay.model import PURCHASE, Consent, Context, ConversionEvent, Item, Source
from relay_local.fakes import ga4 as fake_ga4
from relay_local.fakes.ga4 import MAX_VALUE_360, FakeGa4

MEASUREMENT_ID = "G-LIMITS0001"
API_SECRET = "ga4-limits-secret"
CREDENTIALS = {"measurement_id": MEASUREMENT_ID, "api_secret": API_SECRET}
NOW = datetime(2026, 3, 2, 13, 0, 0, tzinfo=UTC)
CLIENT_ID = "1234567890.1700000000"
RULES = rules()


def make_event(**overrides: Any) -> ConversionEvent:
    base = ConversionEvent(
        event_id="stripe:cs_1:purchase",
        name=PURCHASE,
        occurred_at=NOW - timedelta(minutes=30),
        source=Source("stripe", "evt_1", "checkout.session.completed", "cs_1"),
        value=Decimal("10.00"),
        currency="USD",
        transaction_id="pi_1",
        context=Context(ga_client_id=CLIENT_ID),
    )
    return dataclasses.replace(base, **overrides)


def custom(name: str, **overrides: Any) -> ConversionEvent:
    return make_event(name=name, value=None, currency=None, transaction_id=None, **overrides)


def with_params(total: int) -> ConversionEvent:
    # A purchase maps to 3 params (transaction_id, value, currency); the rest are custom properties.
    return make_event(properties={f"p{index}": "x" for index in range(total - 3)})


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGa4]:
    server = FakeGa4(credentials={MEASUREMENT_ID: API_SECRET}, clock=lambda: NOW).start()
    yield server
    server.stop()


@pytest.fixture
def ga4(session: requests.Session, fake: FakeGa4) -> Ga4Destination:
    fake.reset()
    return Ga4Destination(CREDENTIALS, session, fake.url, clock=lambda: NOW)


def post_raw(session: requests.Session, fake: FakeGa4, body: dict[str, Any]) -> set[tuple[str, str]]:
    response = session.post(
        f"{fake.url}/mp/collect",
        params={"measurement_id": MEASUREMENT_ID, "api_secret": API_SECRET},
        data=encode_body(body),
        timeout=5,
    )
    assert response.status_code == 204
    return {
        (message["fieldPath"], message["validationCode"]) for message in fake.requests[-1].validation_messages
    }


def assert_sent_clean(ga4: Ga4Destination, fake: FakeGa4, batch: list[Prepared]) -> list[Outcome]:
    outcomes = ga4.send(batch)
    assert [outcome.status for outcome in outcomes] == [Status.DELIVERED] * len(batch)
    assert fake.validation_messages == []
    return outcomes


# -- per-event boundaries ------------------------------------------------------------------------------
P = "events[0].params"
BOUNDARIES = [
    # (id, event, None = allowed, or (our field path, code, the fake's field path))
    ("event name 40 chars", custom("e" * 40), None),
    ("event name 41 chars", custom("e" * 41), ("events[0].name", "VALUE_OUT_OF_BOUNDS", "events[0].name")),
    ("event name digit first", custom("1st_purchase"), ("events[0].name", "NAME_INVALID", "events[0].name")),
    (
        "event name underscore first",
        custom("_purchase"),
        ("events[0].name", "NAME_INVALID", "events[0].name"),
    ),
    ("event name with hyphen", custom("trial-won"), ("events[0].name", "NAME_INVALID", "events[0].name")),
    ("event name with digits", custom("step_2_done"), None),
    (
        "reserved session_start",
        custom("session_start"),
        ("events[0].name", "NAME_RESERVED", "events[0].name"),
    ),
    ("reserved first_visit", custom("first_visit"), ("events[0].name", "NAME_RESERVED", "events[0].name")),
    ("reserved error", custom("error"), ("events[0].name", "NAME_RESERVED", "events[0].name")),
    ("app-only screen_view", custom("screen_view"), ("events[0].name", "NAME_RESERVED", "events[0].name")),
    (
        "app-only in_app_purchase",
        custom("in_app_purchase"),
        ("events[0].name", "NAME_RESERVED", "events[0].name"),
    ),
    ("25 params", with_params(25), None),
    ("26 params", with_params(26), (P, "EXCEEDED_MAX_ENTITIES", P)),
    ("param name 40 chars", make_event(properties={"p" * 40: "x"}), None),
    (
        "param name 41 chars",
        make_event(properties={"p" * 41: "x"}),
        (f"{P}.{'p' * 41}", "VALUE_OUT_OF_BOUNDS", None),
    ),
    ("param name digit first", make_event(properties={"9lives": "x"}), (f"{P}.9lives", "NAME_INVALID", None)),
    ("param name with dash", make_event(properties={"a-b": "x"}), (f"{P}.a-b", "NAME_INVALID", None)),
    *[
        (f"reserved param {name}", make_event(properties={name: "x"}), (f"{P}.{name}", "NAME_RESERVED", None))
        for name in ("_x", "firebase_x", "ga_session", "google_x", "gtag.x", "firebase_conversion")
    ],
    ("property value 100 chars", make_event(properties={"note": "v" * 100}), None),
    (
        "property value 101 chars",
        make_event(properties={"note": "v" * 101}),
        (f"{P}.note", "VALUE_OUT_OF_BOUNDS", None),
    ),
    ("coupon 100 chars", make_event(coupon="c" * 100), None),
    ("coupon 101 chars", make_event(coupon="c" * 101), (f"{P}.coupon", "VALUE_OUT_OF_BOUNDS", None)),
    ("transaction_id 100 chars", make_event(transaction_id="t" * 100), None),
    (
        "transaction_id 101 chars",
        make_event(transaction_id="t" * 101),
        (f"{P}.transaction_id", "VALUE_OUT_OF_BOUNDS", None),
    ),
    ("item_name 100 chars", make_event(items=(Item(name="n" * 100),)), None),
    (
        "item_name 101 chars",
        make_event(items=(Item(name="n" * 101),)),
        (f"{P}.items[0].item_name", "VALUE_OUT_OF_BOUNDS", None),
    ),
    ("multibyte value 100 chars", make_event(coupon="쿠" * 100), None),
    ("occurred exactly 72 h ago", make_event(occurred_at=NOW - timedelta(hours=72)), None),
    (
        "occurred 72 h + 1 us ago",
        make_event(occurred_at=NOW - timedelta(hours=72, microseconds=1)),
        ("timestamp_micros", "VALUE_OUT_OF_BOUNDS", None),
    ),
    ("occurred 60 s ahead (clock skew)", make_event(occurred_at=NOW + timedelta(seconds=60)), None),
    (
        "occurred 60 s + 1 us ahead",
        make_event(occurred_at=NOW + timedelta(seconds=60, microseconds=1)),
        ("timestamp_micros", "VALUE_OUT_OF_BOUNDS", None),
    ),
    ("value without currency", make_event(currency=None), (f"{P}.currency", "VALUE_REQUIRED", None)),
    ("currency not ISO 4217", make_event(currency="usd"), (f"{P}.currency", "VALUE_INVALID", None)),
    # user properties: 25 of them, names <= 24, values <= 36, reserved names and prefixes
    ("user property name 24 chars", make_event(user_properties={"u" * 24: "x"}), None),
    (
        "user property name 25 chars",
        make_event(user_properties={"u" * 25: "x"}),
        (f"user_properties.{'u' * 25}", "VALUE_OUT_OF_BOUNDS", None),
    ),
    ("user property value 36 chars", make_event(user_properties={"plan": "v" * 36}), None),
    (
        "user property value 37 chars",
        make_event(user_properties={"plan": "v" * 37}),
        ("user_properties.plan.value", "VALUE_OUT_OF_BOUNDS", None),
    ),
    ("25 user properties", make_event(user_properties={f"u{i}": "x" for i in range(25)}), None),
    (
        "26 user properties",
        make_event(user_properties={f"u{i}": "x" for i in range(26)}),
        ("user_properties", "EXCEEDED_MAX_ENTITIES", None),
    ),
    (
        "user property name digit first",
        make_event(user_properties={"1tier": "x"}),
        ("user_properties.1tier", "NAME_INVALID", None),
    ),
    *[
        (
            f"reserved user property {name}",
            make_event(user_properties={name: "x"}),
            (f"user_properties.{name}", "NAME_RESERVED", None),
        )
        for name in ("first_open_time", "user_id", "_x", "firebase_x", "ga_x", "google_x")
    ],
    ("user_id 256 chars", make_event(context=Context(ga_client_id=CLIENT_ID, user_id="u" * 256)), None),
    (
        "user_id 257 chars",
        make_event(context=Context(ga_client_id=CLIENT_ID, user_id="u" * 257)),
        ("user_id", "VALUE_OUT_OF_BOUNDS", None),
    ),
    (
        "app_store_subscription_ name",
        custom("app_store_subscription_renew"),
        ("events[0].name", "NAME_RESERVED", None),
    ),
    (
        "purchase without transaction_id",
        make_event(transaction_id=None),
        (f"{P}.transaction_id", "VALUE_REQUIRED", None),
    ),
]


@pytest.mark.parametrize(
    ("event", "expected"), [case[1:] for case in BOUNDARIES], ids=[case[0] for case in BOUNDARIES]
)
def test_boundary(
    ga4: Ga4Destination,
    fake: FakeGa4,
    session: requests.Session,
    event: ConversionEvent,
    expected: tuple[str, str, str | None] | None,
):
    outcome = ga4.prepare(event)
    if expected is None:
        assert isinstance(outcome, Prepared), outcome
        assert_sent_clean(ga4, fake, [outcome])
        assert len(fake.events) == 1
        return
    path, code, fake_path = expected
    assert outcome.status is Status.REJECT
    assert outcome.reason.startswith(f"{path}: {code} (")
    assert outcome.error_code == code
    # The second opinion: the body we refused is one Google would indeed flag, at the same place.
    event_name = config.destination_event_name("ga4", event.name)
    assert event_name is not None
    assert (fake_path or path, code) in post_raw(session, fake, map_event(event, event_name))


def test_every_violation_is_reported_not_just_the_first(ga4: Ga4Destination):
    outcome = ga4.prepare(make_event(currency=None, coupon="c" * 101, properties={"_x": "1"}))
    assert outcome.status is Status.REJECT
    for fragment in (
        f"{P}.coupon: VALUE_OUT_OF_BOUNDS",
        f"{P}._x: NAME_RESERVED",
        f"{P}.currency: VALUE_REQUIRED",
    ):
        assert fragment in outcome.reason


# -- body size -----------------------------------------------------------------------------------------
def _event_with_items(count: int) -> ConversionEvent:
    items = tuple(
        Item(id=f"{index:06d}" + "i" * 94, name="n" * 100, price=Decimal("1.25")) for index in range(count)
    )
    return make_event(items=items)


def _largest_item_count_under_the_cap() -> int:
    low, high = 1, 1000  # 1 item fits, 1000 items do not
    while high - low > 1:
        middle = (low + high) // 2
        size = len(encode_body(map_event(_event_with_items(middle), "purchase")))
        low, high = (middle, high) if size < RULES.max_body_bytes_exclusive else (low, middle)
    return low


def test_body_size_boundary(ga4: Ga4Destination, fake: FakeGa4, session: requests.Session):
    fits = _largest_item_count_under_the_cap()
    under = ga4.prepare(_event_with_items(fits))
    assert isinstance(under, Prepared)
    assert len(encode_body(under.payload)) < RULES.max_body_bytes_exclusive
    assert_sent_clean(ga4, fake, [under])

    over_event = _event_with_items(fits + 1)
    over = ga4.prepare(over_event)
    assert over.status is Status.REJECT
    assert over.reason.startswith("body: VALUE_OUT_OF_BOUNDS")
    assert ("", "VALUE_OUT_OF_BOUNDS") in post_raw(session, fake, map_event(over_event, "purchase"))


# -- requests per user ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("count", "sizes"), [(1, [1]), (24, [24]), (25, [25]), (26, [25, 1]), (51, [25, 25, 1])]
)
def test_events_of_one_user_split_at_25(ga4: Ga4Destination, fake: FakeGa4, count: int, sizes: list[int]):
    batch = [ga4.prepare(make_event(transaction_id=f"pi_{index}")) for index in range(count)]
    assert all(isinstance(item, Prepared) for item in batch)
    assert [len(indexes) for indexes in ga4.plan_requests(batch)] == sizes  # type: ignore[arg-type]
    assert_sent_clean(ga4, fake, batch)  # type: ignore[arg-type]
    # Requests go out concurrently, so the fake may see them in any order.
    assert sorted(len(request.body["events"]) for request in fake.requests) == sorted(sizes)
    assert sorted(event["params"]["transaction_id"] for event in fake.events) == sorted(
        f"pi_{index}" for index in range(count)
    )


IDENTITIES = [  # (context, consent, the consent object GA4 should receive)
    (Context(ga_client_id="1.1"), Consent(), None),
    (Context(ga_client_id="2.2"), Consent(), None),
    (Context(ga_client_id="1.1", user_id="u1"), Consent(), None),
    (Context(ga_client_id="1.1", user_id="u2"), Consent(), None),
    (Context(ga_client_id="1.1"), Consent(ad_user_data=True), {"ad_user_data": "GRANTED"}),
    (Context(ga_client_id="1.1"), Consent(ad_user_data=False), {"ad_user_data": "DENIED"}),
]


def test_different_users_never_share_a_request(ga4: Ga4Destination, fake: FakeGa4):
    # Interleaved on purpose: three events per identity, mixed in one SQS-like batch.
    batch = [
        ga4.prepare(make_event(transaction_id=f"pi_{round_}_{index}", context=context, consent=consent))
        for round_ in range(3)
        for index, (context, consent, _) in enumerate(IDENTITIES)
    ]
    assert_sent_clean(ga4, fake, batch)  # type: ignore[arg-type]
    assert len(fake.requests) == len(IDENTITIES)
    for request in fake.requests:
        owners = {event["params"]["transaction_id"].rsplit("_", 1)[1] for event in request.body["events"]}
        assert len(owners) == 1, "events of different identities in one request"
        assert len(request.body["events"]) == 3
        context, _, consent_body = IDENTITIES[int(owners.pop())]
        assert request.body["client_id"] == context.ga_client_id
        assert request.body.get("user_id") == context.user_id
        assert request.body.get("consent") == consent_body


def test_outcomes_follow_input_order_when_one_request_fails(ga4: Ga4Destination, fake: FakeGa4):
    first_user = {"context": Context(ga_client_id="1.1")}
    second_user = {"context": Context(ga_client_id="2.2")}
    batch = [
        ga4.prepare(make_event(transaction_id="a1", **first_user)),
        ga4.prepare(make_event(transaction_id="b1", **second_user)),
        ga4.prepare(make_event(transaction_id="a2", **first_user)),
    ]
    fake.fail_next(1, 503)  # whichever request arrives first (requests go out concurrently)
    statuses = [outcome.status for outcome in ga4.send(batch)]  # type: ignore[arg-type]
    # User 1.1's events 0 and 2 share one request and so one outcome; user 2.2 got the other.
    assert statuses[0] == statuses[2]
    assert {statuses[0], statuses[1]} == {Status.RETRY, Status.DELIVERED}


def test_large_events_of_one_user_split_by_size(ga4: Ga4Destination, fake: FakeGa4):
    # ~9 kB each: 25 of them would be ~225 kB, far over the cap, although within the event count.
    batch = [
        ga4.prepare(make_event(transaction_id=f"pi_{i}", items=_event_with_items(40).items))
        for i in range(25)
    ]
    assert all(isinstance(item, Prepared) for item in batch)
    assert_sent_clean(ga4, fake, batch)  # type: ignore[arg-type]
    sizes = [len(request.body) for request in fake.received]
    assert len(sizes) > 1
    assert all(size < RULES.max_body_bytes_exclusive for size in sizes)
    assert sum(len(request.body["events"]) for request in fake.requests) == 25


def test_merged_request_passes_our_own_validation(ga4: Ga4Destination):
    batch = [ga4.prepare(make_event(transaction_id=f"pi_{i}")) for i in range(3)]
    merged = merge_bodies([item.payload for item in batch])  # type: ignore[union-attr]
    assert validate_body(merged, now=NOW) == []
    assert [event["params"]["transaction_id"] for event in merged["events"]] == ["pi_0", "pi_1", "pi_2"]


def test_rules_file_matches_googles_documented_limits():
    # Guards the data file against an edit that would let through what Google drops.
    assert (RULES.max_events_per_request, RULES.max_params_per_event) == (25, 25)
    assert (RULES.max_event_name_length, RULES.max_param_name_length, RULES.max_param_value_length) == (
        40,
        40,
        100,
    )
    assert RULES.max_body_bytes_exclusive <= 130 * 1000
    assert RULES.max_backdate == timedelta(hours=72)
    assert {"session_start", "first_visit", "user_engagement"} <= RULES.reserved_event_names
    assert set(RULES.reserved_param_prefixes) == {"_", "firebase_", "ga_", "google_", "gtag."}
    assert (RULES.max_user_properties, RULES.max_user_property_name_length) == (25, 24)
    assert RULES.max_user_property_value_length == 36
    assert RULES.max_item_custom_params == 10
    assert dict(RULES.user_data_limits) == {"sha256_email_address": 3, "sha256_phone_number": 3, "address": 2}
    assert "app_store_subscription_" in RULES.reserved_event_name_prefixes


# -- limits only a raw body can reach (the canonical model cannot express them) -------------------------
def _body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "user_id": "cust_1",
        "timestamp_micros": 1772451000000000,
        "events": [
            {"name": "purchase", "params": {"transaction_id": "pi_1", "value": 1.0, "currency": "USD"}}
        ],
    }
    body.update(overrides)
    return body


def _item_with_custom(count: int) -> dict[str, Any]:
    item: dict[str, Any] = {"item_id": "sku-1", "price": 1.0, "quantity": 1}
    item.update({f"c{index}": "x" for index in range(count)})
    return _body(events=[{"name": "purchase", "params": {"transaction_id": "t", "items": [item]}}])


HASH = "a" * 64
RAW_BOUNDARIES = [
    # (id, body, None = allowed, or (field path, code) both validators must report)
    ("item with 10 custom params", _item_with_custom(10), None),
    ("item with 11 custom params", _item_with_custom(11), (f"{P}.items[0]", "EXCEEDED_MAX_ENTITIES")),
    ("25 events", _body(events=[{"name": "lead", "params": {}}] * 25), None),
    ("26 events", _body(events=[{"name": "lead", "params": {}}] * 26), ("events", "EXCEEDED_MAX_ENTITIES")),
    ("3 hashed emails", _body(user_data={"sha256_email_address": [HASH] * 3}), None),
    (
        "4 hashed emails",
        _body(user_data={"sha256_email_address": [HASH] * 4}),
        ("user_data.sha256_email_address", "EXCEEDED_MAX_ENTITIES"),
    ),
    ("3 hashed phones", _body(user_data={"sha256_phone_number": [HASH] * 3}), None),
    (
        "4 hashed phones",
        _body(user_data={"sha256_phone_number": [HASH] * 4}),
        ("user_data.sha256_phone_number", "EXCEEDED_MAX_ENTITIES"),
    ),
    ("2 addresses", _body(user_data={"address": [{"country": "US"}] * 2}), None),
    (
        "3 addresses",
        _body(user_data={"address": [{"country": "US"}] * 3}),
        ("user_data.address", "EXCEEDED_MAX_ENTITIES"),
    ),
    (
        "unhashed email",
        _body(user_data={"sha256_email_address": ["jane@example.com"]}),
        ("user_data.sha256_email_address[0]", "VALUE_INVALID"),
    ),
    (
        "user_data without user_id",
        {
            key: value
            for key, value in _body(user_data={"sha256_email_address": HASH}).items()
            if key != "user_id"
        },
        ("user_id", "VALUE_REQUIRED"),
    ),
    ("user_location", _body(user_location={"country_id": "US", "region_id": "US-CA"}), None),
    (
        "user_location region not ISO 3166-2",
        _body(user_location={"region_id": "California"}),
        ("user_location.region_id", "VALUE_INVALID"),
    ),
    ("device category mobile", _body(device={"category": "mobile"}), None),
    ("device category phone", _body(device={"category": "phone"}), ("device.category", "VALUE_INVALID")),
    ("ip_override v6", _body(ip_override="2001:db8::1"), None),
    ("ip_override not an address", _body(ip_override="local"), ("ip_override", "VALUE_INVALID")),
    (
        "unknown top-level field",
        _body(non_personalized_ads_x=True),
        ("non_personalized_ads_x", None),
    ),
]


def _fake_flags(body: dict[str, Any], max_value_length: int = 100) -> set[tuple[str, str]]:
    messages = fake_ga4._Messages()
    fake_ga4.validate(encode_body(body), NOW, messages, max_value_length=max_value_length)
    return {(message["fieldPath"], message["validationCode"]) for message in messages.items}


@pytest.mark.parametrize(
    ("body", "expected"), [case[1:] for case in RAW_BOUNDARIES], ids=[case[0] for case in RAW_BOUNDARIES]
)
def test_raw_boundary_both_validators_agree(body: dict[str, Any], expected: tuple[str, str | None] | None):
    ours = {(v.field_path, v.code) for v in validate_body(body, now=NOW)}
    theirs = _fake_flags(body)
    if expected is None:
        assert ours == set() and theirs == set()
        return
    path, code = expected
    if code is None:  # an unknown field: both flag the path, each with its own code
        assert path in {p for p, _ in ours} and path in {p for p, _ in theirs}
        return
    assert (path, code) in ours
    assert (path, code) in theirs


# -- GA4 360: 500-character values as an option ----------------------------------------------------------
@pytest.mark.parametrize(
    ("max_length", "length", "allowed"),
    [(100, 100, True), (100, 101, False), (500, 500, True), (500, 501, False)],
)
def test_param_value_length_is_100_or_500_for_ga4_360(
    session: requests.Session, max_length: int, length: int, allowed: bool
):
    destination = Ga4Destination(
        CREDENTIALS, session, options=Ga4Options(max_param_value_length=max_length), clock=lambda: NOW
    )
    event = make_event(coupon="c" * length, properties={"note": "n" * length})
    outcome = destination.prepare(event)
    fake_flags = _fake_flags(map_event(event, "purchase"), max_value_length=max_length)
    if allowed:
        assert isinstance(outcome, Prepared), outcome
        assert fake_flags == set()
    else:
        assert outcome.status is Status.REJECT
        assert outcome.reason.startswith(
            f"{P}.coupon: VALUE_OUT_OF_BOUNDS ({length} characters; at most {max_length})"
        )
        assert (f"{P}.note", "VALUE_OUT_OF_BOUNDS") in fake_flags


def test_ga4_360_limit_is_data_and_the_fake_knows_it():
    assert RULES.max_param_value_length_360 == MAX_VALUE_360 == 500
