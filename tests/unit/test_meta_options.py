"""Meta: the full event model (opt_out, LDU, original_event_data, app_data, predicted_ltv), the options
(action sources, test events, phone country code), several pixels, appsecret_proof, and each error
class end to end through FakeMeta."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests

from conversion_relay import config
from conversion_relay.config import ConfigError
from conversion_relay.destinations.base import Outcome, Prepared, Status
from conversion_relay.destinations.meta import EventFilter, MetaDestination, MetaOptions
from conversion_relay.model import (
    PURCHASE,
    REFUND,
    SUBSCRIPTION_RENEWAL,
    SUBSCRIPTION_START,
    App,
    Consent,
    Context,
    ConversionEvent,
    Original,
    Person,
    Source,
)
from relay_local.fakes.meta import FakeMeta

PIXEL_ID = "1234567890"
OTHER_PIXEL = "5550001111"
ACCESS_TOKEN = "EAAB-meta-test-token-do-not-log"
APP_SECRET = "app-secret-do-not-log"
CREDENTIALS = {"pixel_id": PIXEL_ID, "access_token": ACCESS_TOKEN}
NOW = datetime(2026, 3, 2, 13, 0, 0, tzinfo=UTC)
OCCURRED = datetime(2026, 3, 2, 12, 30, 45, tzinfo=UTC)
URL = "https://shop.example.com/checkout/success"
UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15"
EXTINFO = ("i2", "com.example.app", "1.0", "1.0 long", "17.4", "iPhone15,2", "ko_KR", "KST", "SKT")
EXTINFO = (*EXTINFO, "390", "844", "3", "6", "128", "64", "Asia/Seoul")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def make_event(**overrides: Any) -> ConversionEvent:
    base = ConversionEvent(
        event_id="stripe:purchase:cs_1",
        name=PURCHASE,
        occurred_at=OCCURRED,
        source=Source("stripe", "evt_1", "checkout.session.completed", "cs_1"),
        value=Decimal("59.90"),
        currency="EUR",
        transaction_id="pi_1",
        person=Person(email="jane@example.com"),
    )
    return dataclasses.replace(base, **overrides)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeMeta]:
    server = FakeMeta(access_token=ACCESS_TOKEN, clock=lambda: NOW).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _clean_fake(request: pytest.FixtureRequest) -> None:
    if "fake" in request.fixturenames:
        request.getfixturevalue("fake").reset()


def destination(
    session: requests.Session, base_url: str = "https://graph.facebook.com", **kwargs: Any
) -> MetaDestination:
    credentials = kwargs.pop("credentials", CREDENTIALS)
    return MetaDestination(credentials, session, base_url, clock=lambda: NOW, **kwargs)


def payload(dest: MetaDestination, event: ConversionEvent) -> dict[str, Any]:
    result = dest.prepare(event)
    assert isinstance(result, Prepared), result
    return result.payload


# -- the event model ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("opt_out", "expected"), [(None, None), (True, True), (False, False)])
def test_opt_out_from_the_consent(session, opt_out, expected):
    sent = payload(destination(session), make_event(consent=Consent(opt_out=opt_out)))
    assert sent.get("opt_out") == expected


@pytest.mark.parametrize(
    ("consent", "setting", "expected"),
    [
        (Consent(), "off", {}),
        (
            Consent(),
            "geolocate",
            {
                "data_processing_options": ["LDU"],
                "data_processing_options_country": 0,
                "data_processing_options_state": 0,
            },
        ),
        (
            Consent(),
            "california",
            {
                "data_processing_options": ["LDU"],
                "data_processing_options_country": 1,
                "data_processing_options_state": 1000,
            },
        ),
        # the consent wins over the setting, and an explicit [] disables LDU
        (Consent(data_processing_options=()), "california", {"data_processing_options": []}),
        (
            Consent(data_processing_options=("LDU",)),
            "off",
            {
                "data_processing_options": ["LDU"],
                "data_processing_options_country": 0,
                "data_processing_options_state": 0,
            },
        ),
        (
            Consent(data_processing_options=("LDU",), data_processing_options_country=1),
            "off",
            {
                "data_processing_options": ["LDU"],
                "data_processing_options_country": 1,
                "data_processing_options_state": 0,
            },
        ),
    ],
)
def test_limited_data_use(session, consent, setting, expected):
    dest = destination(session, options=MetaOptions(limited_data_use=setting))
    sent = payload(dest, make_event(consent=consent))
    assert {k: v for k, v in sent.items() if k.startswith("data_processing")} == expected


def test_predicted_ltv_and_custom_data(session):
    event = make_event(name=SUBSCRIPTION_START, predicted_ltv=Decimal("240.00"), properties={"plan": "pro"})
    custom = payload(destination(session), event)["custom_data"]
    assert custom == {
        "value": 59.9,
        "currency": "eur",
        "order_id": "pi_1",
        "predicted_ltv": 240.0,
        "plan": "pro",
    }


def test_a_property_never_overwrites_predicted_ltv(session):
    event = make_event(predicted_ltv=Decimal("1"), properties={"predicted_ltv": "999"})
    assert payload(destination(session), event)["custom_data"]["predicted_ltv"] == 1.0


@pytest.mark.parametrize(
    ("name", "original", "transaction_id", "expected"),
    [
        # a refund points at the purchase it undoes through the payment (order_id)
        (REFUND, Original(), "pi_1", {"order_id": "pi_1", "event_name": "Purchase"}),
        (
            REFUND,
            Original(event_id="stripe:purchase:cs_1", occurred_at="2026-03-01T10:00:00Z"),
            "pi_1",
            {
                "event_id": "stripe:purchase:cs_1",
                "order_id": "pi_1",
                "event_time": int(datetime(2026, 3, 1, 10, tzinfo=UTC).timestamp()),
                "event_name": "Purchase",
            },
        ),
        # a renewal's own invoice is not the original order: only what the provider knows
        (SUBSCRIPTION_RENEWAL, Original(), "in_2", None),
        (
            SUBSCRIPTION_RENEWAL,
            Original(event_id="stripe:subscription_start:in_1", transaction_id="in_1"),
            "in_2",
            {"event_id": "stripe:subscription_start:in_1", "order_id": "in_1", "event_name": "Subscribe"},
        ),
        (PURCHASE, Original(), "pi_1", None),
        (REFUND, Original(occurred_at="not a date"), None, None),
    ],
)
def test_original_event_data(session, monkeypatch, name, original, transaction_id, expected):
    monkeypatch.setenv("MAPPING_OVERRIDES", json.dumps({"event_names": {"meta": {"refund": "Refund"}}}))
    config.mapping.cache_clear()
    event = make_event(name=name, original=original, transaction_id=transaction_id, subscription_id="sub_1")
    assert payload(destination(session), event).get("original_event_data") == expected


def test_app_events_carry_app_data_and_app_identifiers(session):
    app = App(
        extinfo=EXTINFO,
        advertiser_tracking_enabled=True,
        application_tracking_enabled=True,
        anon_id="XZ-install-1",
        madid="38400000-8cf0-11bd-b23e-10b96e40000d",
    )
    sent = payload(destination(session), make_event(app=app))
    assert sent["action_source"] == "app"
    assert sent["app_data"] == {
        "advertiser_tracking_enabled": True,
        "application_tracking_enabled": True,
        "extinfo": list(EXTINFO),
    }
    assert sent["user_data"]["anon_id"] == "XZ-install-1"
    assert sent["user_data"]["madid"] == "38400000-8cf0-11bd-b23e-10b96e40000d"


@pytest.mark.parametrize(
    ("app", "reason"),
    [
        (App(), "app_data.extinfo: required when action_source is app"),
        (App(extinfo=EXTINFO[:15]), "app_data.extinfo: required when action_source is app"),
        (App(extinfo=("x2", *EXTINFO[1:])), "app_data.extinfo: required when action_source is app"),
        (
            App(extinfo=EXTINFO, application_tracking_enabled=True),
            "app_data.advertiser_tracking_enabled: required when action_source is app",
        ),
        (
            App(extinfo=EXTINFO, advertiser_tracking_enabled=False),
            "app_data.application_tracking_enabled: required when action_source is app",
        ),
    ],
)
def test_app_events_are_validated(session, app, reason):
    outcome = destination(session).prepare(make_event(app=app, context=Context(action_source="app")))
    assert isinstance(outcome, Outcome)
    assert outcome.status is Status.REJECT
    assert outcome.reason.startswith(reason)


@pytest.mark.parametrize(
    ("age", "action_source", "ok"),
    [
        (timedelta(days=7), "other", True),
        (timedelta(days=7, seconds=1), "other", False),
        (timedelta(days=62), "physical_store", True),
        (timedelta(days=62, seconds=1), "physical_store", False),
    ],
)
def test_physical_store_events_may_be_62_days_old(session, age, action_source, ok):
    event = make_event(occurred_at=NOW - age, context=Context(action_source=action_source))
    result = destination(session).prepare(event)
    assert isinstance(result, Prepared) is ok
    if not ok:
        assert isinstance(result, Outcome) and result.reason.startswith("event_time: ")


def test_physical_store_events_older_than_7_days_are_accepted_by_the_fake(session, fake):
    dest = destination(session, fake.url)
    event = make_event(occurred_at=NOW - timedelta(days=30), context=Context(action_source="physical_store"))
    assert dest.send([dest.prepare(event)]) == [Outcome.delivered(200)]  # type: ignore[list-item]


# -- options -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "name", "context", "expected"),
    [
        (MetaOptions(default_action_source="system_generated"), PURCHASE, Context(), "system_generated"),
        (
            MetaOptions(default_action_source="system_generated"),
            PURCHASE,
            Context(client_user_agent=UA, event_source_url=URL),
            "website",
        ),
        (
            MetaOptions(renewal_action_source=""),
            SUBSCRIPTION_RENEWAL,
            Context(client_user_agent=UA, event_source_url=URL),
            "website",
        ),
        (MetaOptions(renewal_action_source=""), SUBSCRIPTION_RENEWAL, Context(), "other"),
        (MetaOptions(renewal_action_source="email"), SUBSCRIPTION_RENEWAL, Context(), "email"),
    ],
)
def test_action_source_rules_are_configurable(session, options, name, context, expected):
    sent = payload(destination(session, options=options), make_event(name=name, context=context))
    assert sent["action_source"] == expected


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"META_DEFAULT_ACTION_SOURCE": "web"}, "META_DEFAULT_ACTION_SOURCE"),
        ({"META_RENEWAL_ACTION_SOURCE": "auto"}, "META_RENEWAL_ACTION_SOURCE"),
        ({"META_TEST_EVENTS": "drop"}, "META_TEST_EVENTS"),
        ({"META_DEFAULT_PHONE_COUNTRY_CODE": "8a"}, "META_DEFAULT_PHONE_COUNTRY_CODE"),
        ({"META_DEFAULT_PHONE_COUNTRY_CODE": "1234"}, "META_DEFAULT_PHONE_COUNTRY_CODE"),
        ({"META_LIMITED_DATA_USE": "yes"}, "META_LIMITED_DATA_USE"),
    ],
)
def test_bad_options_name_the_variable(environ, message):
    with pytest.raises(ConfigError, match=message):
        MetaOptions.from_environment(environ)


def test_options_from_the_environment():
    assert MetaOptions.from_environment({}) == MetaOptions()
    assert MetaOptions.from_environment(
        {
            "META_DEFAULT_ACTION_SOURCE": "system_generated",
            "META_RENEWAL_ACTION_SOURCE": "",
            "META_TEST_EVENTS": "skip",
            "META_DEFAULT_PHONE_COUNTRY_CODE": "+82",
            "META_LIMITED_DATA_USE": "geolocate",
        }
    ) == MetaOptions("system_generated", "", "skip", "82", "geolocate")


def test_default_phone_country_code_applies_to_national_numbers(session):
    person = Person(phone="010-1234-5678")
    plain = payload(destination(session), make_event(person=person))["user_data"]["ph"]
    korean = destination(session, options=MetaOptions(default_phone_country_code="82"))
    assert payload(korean, make_event(person=person))["user_data"]["ph"] == [sha("821012345678")]
    assert plain == [sha("1012345678")]  # what the SDK alone makes of it: wrong country, no match


def test_test_mode_events_can_be_skipped(session):
    dest = destination(session, options=MetaOptions(test_events="skip"))
    test_event = make_event(
        source=Source("stripe", "evt_1", "checkout.session.completed", "cs_1", livemode=False)
    )
    result = dest.prepare(test_event)
    assert isinstance(result, Outcome) and result.status is Status.SKIP
    assert isinstance(dest.prepare(make_event()), Prepared)


def test_test_event_code_only_for_test_mode_events(session, fake):
    dest = destination(
        session,
        fake.url,
        credentials={**CREDENTIALS, "test_event_code": "TEST42"},
        options=MetaOptions(test_events="test_event_code"),
    )
    live = dest.prepare(make_event(event_id="live"))
    test = dest.prepare(
        make_event(event_id="test", source=Source("stripe", "e", "t", "cs_2", livemode=False))
    )
    assert isinstance(live, Prepared) and isinstance(test, Prepared)
    assert dest.send([live, test]) == [Outcome.delivered(200)] * 2
    bodies = {r.json()["data"][0]["event_id"]: r.json() for r in fake.received}
    assert "test_event_code" not in bodies["live"]
    assert bodies["test"]["test_event_code"] == "TEST42"


def test_test_event_code_mode_needs_a_code(session):
    with pytest.raises(ConfigError, match="test_event_code"):
        destination(session, options=MetaOptions(test_events="test_event_code"))


# -- several pixels, appsecret_proof -----------------------------------------------------------------
MULTI = {
    **CREDENTIALS,
    "pixels": [
        {"name": "brand_b", "pixel_id": OTHER_PIXEL, "when": {"host": "shop-b.example.com"}},
        {"name": "brand_b_app", "pixel_id": OTHER_PIXEL, "when": {"property.brand": "B"}},
    ],
}


@pytest.mark.parametrize(
    ("context", "properties", "pixel"),
    [
        (Context(event_source_url="https://shop-b.example.com/thanks"), {}, OTHER_PIXEL),
        (Context(event_source_url="https://SHOP-B.example.com/thanks"), {}, OTHER_PIXEL),
        (Context(event_source_url=URL), {}, PIXEL_ID),
        (Context(), {"brand": "b"}, OTHER_PIXEL),
        (Context(), {"brand": "a"}, PIXEL_ID),
    ],
)
def test_pixel_routing_rules_then_the_default(session, context, properties, pixel):
    result = destination(session, credentials=MULTI).prepare(
        make_event(context=context, properties=properties)
    )
    assert isinstance(result, Prepared)
    assert result.group_key == pixel


def test_each_pixel_gets_its_own_request(session, fake):
    dest = destination(session, fake.url, credentials=MULTI)
    batch = [
        dest.prepare(make_event(event_id="a1")),
        dest.prepare(make_event(event_id="b1", properties={"brand": "b"})),
        dest.prepare(make_event(event_id="a2")),
    ]
    assert dest.send(batch) == [Outcome.delivered(200)] * 3  # type: ignore[arg-type]
    sent = {r.path: [e["event_id"] for e in r.json()["data"]] for r in fake.received}
    assert sent == {f"/v25.0/{PIXEL_ID}/events": ["a1", "a2"], f"/v25.0/{OTHER_PIXEL}/events": ["b1"]}


@pytest.mark.parametrize(
    ("credentials", "message"),
    [
        ({**CREDENTIALS, "pixels": {"pixel_id": "1"}}, "pixels must be a list"),
        ({**CREDENTIALS, "pixels": [{"pixel_id": "abc", "when": {"host": "x"}}]}, r"pixels\[0\]\.pixel_id"),
        ({**CREDENTIALS, "pixels": [{"pixel_id": "1"}]}, r"pixels\[0\]\.when is required"),
        ({**CREDENTIALS, "pixels": [{"pixel_id": "1", "when": {"colour": "red"}}]}, "unknown attribute"),
        ({**CREDENTIALS, "pixels": [{"pixel_id": "1", "when": {}}]}, "non-empty object"),
        ({**CREDENTIALS, "pixels": [{"pixel_id": "1", "when": {"host": 3}}]}, "string, a boolean"),
        (
            {
                **CREDENTIALS,
                "pixels": [{"pixel_id": PIXEL_ID, "access_token": "other", "when": {"host": "x"}}],
            },
            "different credentials",
        ),
    ],
)
def test_bad_pixel_configuration_names_the_key(session, credentials, message):
    with pytest.raises(ConfigError, match=message) as caught:
        destination(session, credentials=credentials)
    assert ACCESS_TOKEN not in str(caught.value)


def test_event_filter_semantics():
    rule = EventFilter.parse({"event_name": ["Purchase", "Subscribe"], "livemode": True}, "x")
    assert rule.matches({"event_name": "purchase", "livemode": "true"})
    assert not rule.matches({"event_name": "purchase", "livemode": "false"})
    assert not rule.matches({"event_name": "lead", "livemode": "true"})
    assert not rule.matches({})


def test_appsecret_proof_is_sent_when_the_secret_has_an_app_secret(session):
    server = FakeMeta(access_token=ACCESS_TOKEN, clock=lambda: NOW, app_secret=APP_SECRET).start()
    try:
        with_proof = destination(session, server.url, credentials={**CREDENTIALS, "app_secret": APP_SECRET})
        without = destination(session, server.url)
        assert with_proof.send([with_proof.prepare(make_event())]) == [Outcome.delivered(200)]  # type: ignore[list-item]
        body = server.received[0].json()
        expected = hmac.new(APP_SECRET.encode(), ACCESS_TOKEN.encode(), hashlib.sha256).hexdigest()
        assert body["appsecret_proof"] == expected
        assert APP_SECRET not in server.received[0].body.decode()
        outcome = without.send([without.prepare(make_event())])[0]  # type: ignore[list-item]
        assert (outcome.status, outcome.error_code) == (Status.REJECT, "meta_100")
    finally:
        server.stop()


def test_repr_hides_every_secret(session):
    dest = destination(
        session,
        credentials={
            **CREDENTIALS,
            "app_secret": APP_SECRET,
            "gateway": {"url": "https://g.example", "access_key": "KEY-SECRET", "mode": "gateway_only"},
        },
    )
    text = repr(dest) + repr(dest.pixels) + repr(dest.gateway)
    for secret in (ACCESS_TOKEN, APP_SECRET, "KEY-SECRET"):
        assert secret not in text


# -- each error class through the fake ---------------------------------------------------------------
def test_an_expired_token_is_an_auth_reject_with_its_own_code(session, fake):
    dest = destination(session, fake.url)
    fake.auth_error_next(1)
    outcomes = dest.send([dest.prepare(make_event(event_id=f"e{i}")) for i in range(3)])  # type: ignore[misc]
    assert {(o.status, o.error_code) for o in outcomes} == {(Status.REJECT, "meta_auth_190")}
    assert "access token" in outcomes[0].reason
    assert len(fake.received) == 1  # never bisected


@pytest.mark.parametrize("code", [10, 200, 102])
def test_permission_errors_are_auth_rejects(session, fake, code):
    dest = destination(session, fake.url)
    fake.auth_error_next(1, code=code, subcode=None)
    (outcome,) = dest.send([dest.prepare(make_event())])  # type: ignore[list-item]
    assert (outcome.status, outcome.error_code) == (Status.REJECT, f"meta_auth_{code}")


def test_a_transient_error_is_retried_then_delivered_once(session, fake):
    dest = destination(session, fake.url)
    fake.transient_next(1)
    batch = [dest.prepare(make_event(event_id=f"e{i}")) for i in range(2)]
    first = dest.send(batch)  # type: ignore[arg-type]
    assert {(o.status, o.error_code) for o in first} == {(Status.RETRY, "meta_2")}
    assert dest.send(batch) == [Outcome.delivered(200)] * 2  # type: ignore[arg-type]
    assert [e["event_id"] for e in fake.events] == ["e0", "e1"]


@pytest.mark.parametrize("limit", [1, 3, 1000])
def test_max_events_per_request_is_configurable(session, fake, limit):
    dest = destination(session, fake.url, max_events_per_request=limit)
    batch = [dest.prepare(make_event(event_id=f"e{i}")) for i in range(limit + 1)]
    assert {o.status for o in dest.send(batch)} == {Status.DELIVERED}  # type: ignore[arg-type]
    assert [len(r.json()["data"]) for r in fake.received] == [limit, 1]


@pytest.mark.parametrize("limit", [0, 1001])
def test_max_events_per_request_bounds(session, limit):
    with pytest.raises(ConfigError, match="META_MAX_EVENTS_PER_REQUEST"):
        destination(session, max_events_per_request=limit)
