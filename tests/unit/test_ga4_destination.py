"""GA4 Measurement Protocol: mapping, identity rules, classification, sending through FakeGa4 (127.0.0.1)."""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import requests

from conversion_relay import config, secrets
from conversion_relay.config import ConfigError
from conversion_relay.destinations.base import Outcome, Prepared, Status
from conversion_relay.destinations.ga4 import (
    DEFAULT_BASE_URL,
    Ga4Destination,
    classify_response,
    encode_body,
    group_key,
    map_event,
    session_id_number,
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
from relay_local.fakes.ga4 import FakeGa4

MEASUREMENT_ID = "G-TEST12345"
API_SECRET = "ga4-test-api-secret-do-not-log"
CREDENTIALS = {"measurement_id": MEASUREMENT_ID, "api_secret": API_SECRET}
NOW = datetime(2026, 3, 2, 13, 0, 0, tzinfo=UTC)
OCCURRED = datetime(2026, 3, 2, 12, 30, 45, 123456, tzinfo=UTC)
OCCURRED_MICROS = 1772454645123456
CLIENT_ID = "1234567890.1700000000"
EMAIL = "jane.doe@example.com"


def make_event(**overrides: Any) -> ConversionEvent:
    base = ConversionEvent(
        event_id="stripe:cs_1:purchase",
        name=PURCHASE,
        occurred_at=OCCURRED,
        source=Source("stripe", "evt_1", "checkout.session.completed", "cs_1"),
        value=Decimal("59.90"),
        currency="EUR",
        transaction_id="pi_1",
        context=Context(ga_client_id=CLIENT_ID),
    )
    return dataclasses.replace(base, **overrides)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGa4]:
    server = FakeGa4(credentials={MEASUREMENT_ID: API_SECRET}, clock=lambda: NOW).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _clean_fake(request: pytest.FixtureRequest) -> None:
    if "fake" in request.fixturenames:
        request.getfixturevalue("fake").reset()


@pytest.fixture
def ga4(session: requests.Session) -> Ga4Destination:
    return Ga4Destination(CREDENTIALS, session, clock=lambda: NOW)


@pytest.fixture
def live(session: requests.Session, fake: FakeGa4) -> Ga4Destination:
    return Ga4Destination(CREDENTIALS, session, fake.url, clock=lambda: NOW)


def prepared(destination: Ga4Destination, event: ConversionEvent) -> Prepared:
    result = destination.prepare(event)
    assert isinstance(result, Prepared), result
    return result


# -- mapping -----------------------------------------------------------------------------------------
def test_purchase_maps_every_field(ga4: Ga4Destination):
    event = make_event(
        tax=Decimal("9.57"),
        shipping=Decimal("4.90"),
        coupon="SPRING",
        items=(
            Item(
                id="sku-1",
                name="Plan Pro",
                price=Decimal("29.95"),
                quantity=2,
                category="plans",
                brand="Acme",
                variant="yearly",
            ),
            Item(price=Decimal("1.00")),  # neither id nor name: GA4 cannot use it
            Item(name="Sticker"),
        ),
        context=Context(ga_client_id=CLIENT_ID, ga_session_id="1700000000", user_id="cust_42"),
        consent=Consent(ad_user_data=True, ad_personalization=False),
        properties={"plan": "pro"},
    )
    result = prepared(ga4, event)
    assert result.payload == {
        "client_id": CLIENT_ID,
        "user_id": "cust_42",
        "timestamp_micros": OCCURRED_MICROS,
        "consent": {"ad_user_data": "GRANTED", "ad_personalization": "DENIED"},
        "events": [
            {
                "name": "purchase",
                "params": {
                    "transaction_id": "pi_1",
                    "value": 59.9,
                    "currency": "EUR",
                    "tax": 9.57,
                    "shipping": 4.9,
                    "coupon": "SPRING",
                    "items": [
                        {
                            "item_id": "sku-1",
                            "item_name": "Plan Pro",
                            "price": 29.95,
                            "quantity": 2,
                            "item_category": "plans",
                            "item_brand": "Acme",
                            "item_variant": "yearly",
                        },
                        {"item_name": "Sticker", "quantity": 1},
                    ],
                    "session_id": 1700000000,
                    "engagement_time_msec": 1,
                    "plan": "pro",
                },
            }
        ],
    }
    assert result.event is event
    assert result.group_key == group_key(result.payload)


def test_minimal_purchase_has_no_optional_fields(ga4: Ga4Destination):
    payload = prepared(ga4, make_event()).payload
    assert payload == {
        "client_id": CLIENT_ID,
        "timestamp_micros": OCCURRED_MICROS,
        "events": [
            {"name": "purchase", "params": {"transaction_id": "pi_1", "value": 59.9, "currency": "EUR"}}
        ],
    }


@pytest.mark.parametrize("value", [Decimal("20.00"), Decimal("-20.00")])
def test_full_refund_has_no_items_and_a_positive_value(ga4: Ga4Destination, value: Decimal):
    event = make_event(name=REFUND, value=value, transaction_id="pi_1", event_id="stripe:re_1:refund")
    params = prepared(ga4, event).payload["events"][0]["params"]
    assert params == {"transaction_id": "pi_1", "value": 20.0, "currency": "EUR"}
    assert prepared(ga4, event).payload["events"][0]["name"] == "refund"


def test_partial_refund_carries_its_items(ga4: Ga4Destination):
    event = make_event(name=REFUND, value=Decimal("10"), items=(Item(id="sku-1", price=Decimal("10")),))
    params = prepared(ga4, event).payload["events"][0]["params"]
    assert params["items"] == [{"item_id": "sku-1", "price": 10.0, "quantity": 1}]


@pytest.mark.parametrize("name", [SUBSCRIPTION_START, SUBSCRIPTION_RENEWAL])
def test_subscription_events_are_sent_as_purchases(ga4: Ga4Destination, name: str):
    event = make_event(name=name, transaction_id="in_1", subscription_id="sub_1")
    event_body = prepared(ga4, event).payload["events"][0]
    assert event_body["name"] == "purchase"
    assert event_body["params"]["transaction_id"] == "in_1"


def test_custom_event_name_passes_through_without_transaction_id(ga4: Ga4Destination):
    event = make_event(name="trial_converted", transaction_id=None, value=None, currency=None)
    assert prepared(ga4, event).payload["events"][0] == {"name": "trial_converted", "params": {}}


def test_event_mapped_to_nothing_is_skipped(ga4: Ga4Destination, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MAPPING_OVERRIDES", json.dumps({"event_names": {"ga4": {"refund": None}}}))
    config.mapping.cache_clear()
    outcome = ga4.prepare(make_event(name=REFUND))
    assert outcome == Outcome.skip(outcome.reason)
    assert "refund" in outcome.reason


def test_mapping_override_renames_the_ga4_event(ga4: Ga4Destination, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(
        "MAPPING_OVERRIDES", json.dumps({"event_names": {"ga4": {"subscription_renewal": "renewal"}}})
    )
    config.mapping.cache_clear()
    event = make_event(name=SUBSCRIPTION_RENEWAL, value=None, currency=None)
    assert prepared(ga4, event).payload["events"][0]["name"] == "renewal"


# -- identity ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("client_id", "code"),
    [
        (None, "VALUE_REQUIRED"),
        ("", "VALUE_REQUIRED"),
        ("GA1.1.1234567890.1700000000", "VALUE_INVALID"),  # the whole _ga cookie, not the client id
        ("1234567890", "VALUE_INVALID"),
        ("1234567890.", "VALUE_INVALID"),
        (".1700000000", "VALUE_INVALID"),
        ("1.2.3", "VALUE_INVALID"),
        ("12a.34", "VALUE_INVALID"),
        (" 1.2", "VALUE_INVALID"),
        (EMAIL, "VALUE_INVALID"),
    ],
)
def test_client_id_missing_or_malformed_is_rejected(ga4: Ga4Destination, client_id: str | None, code: str):
    event = make_event(
        context=Context(ga_client_id=client_id), person=Person(email=EMAIL, phone="+15551234567")
    )
    outcome = ga4.prepare(event)
    assert outcome.status is Status.REJECT
    assert outcome.reason.startswith(f"client_id: {code} (")
    assert "metadata key 'ga_client_id'" in outcome.reason
    assert outcome.error_code == code
    assert EMAIL not in outcome.reason and "jane" not in outcome.reason


@pytest.mark.parametrize("client_id", ["1.2", "0.0", CLIENT_ID, "2044557612.1762966400"])
def test_gtag_client_ids_are_accepted(ga4: Ga4Destination, client_id: str):
    assert (
        prepared(ga4, make_event(context=Context(ga_client_id=client_id))).payload["client_id"] == client_id
    )


def test_person_data_never_reaches_the_body(ga4: Ga4Destination):
    person = Person(email=EMAIL, phone="+15551234567", first_name="Jane", last_name="Doe", city="Berlin")
    encoded = encode_body(prepared(ga4, make_event(person=person)).payload).decode()
    for value in ("jane", "Jane", "5551234567", "Doe", "Berlin"):
        assert value not in encoded


def test_email_as_user_id_is_rejected_without_echoing_it(ga4: Ga4Destination):
    outcome = ga4.prepare(make_event(context=Context(ga_client_id=CLIENT_ID, user_id=EMAIL)))
    assert outcome.status is Status.REJECT
    assert outcome.reason.startswith("user_id: VALUE_INVALID")
    assert EMAIL not in outcome.reason


@pytest.mark.parametrize(
    ("consent", "expected"),
    [
        (Consent(), None),
        (Consent(ad_user_data=True), {"ad_user_data": "GRANTED"}),
        (Consent(ad_personalization=False), {"ad_personalization": "DENIED"}),
        (
            Consent(ad_user_data=False, ad_personalization=True),
            {"ad_user_data": "DENIED", "ad_personalization": "GRANTED"},
        ),
    ],
)
def test_consent_only_for_stated_values(
    ga4: Ga4Destination, consent: Consent, expected: dict[str, str] | None
):
    assert prepared(ga4, make_event(consent=consent)).payload.get("consent") == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1700000000", 1700000000),
        (" 1700000000 ", 1700000000),
        ("GS1.1.1700000000.3.1.1700000100.0.0.0", 1700000000),
        ("GS2.1.s1700000000$o3$g1$t1700000100$j0$l0$h0", 1700000000),
        ("GS2.1.s1700000000", 1700000000),
        ("abc", None),
        ("0", None),
        ("17.5", None),
        ("", None),
        (None, None),
    ],
)
def test_session_id_number(raw: str | None, expected: int | None):
    assert session_id_number(raw) == expected


@pytest.mark.parametrize(("raw", "joins"), [("1700000000", True), ("not-a-session", False), (None, False)])
def test_session_params_only_when_a_session_is_known(ga4: Ga4Destination, raw: str | None, joins: bool):
    params = prepared(ga4, make_event(context=Context(ga_client_id=CLIENT_ID, ga_session_id=raw))).payload[
        "events"
    ][0]["params"]
    assert ("session_id" in params) is joins
    assert ("engagement_time_msec" in params) is joins


# -- field rules -------------------------------------------------------------------------------------
def test_value_without_currency_is_rejected_with_the_validation_server_path(ga4: Ga4Destination):
    outcome = ga4.prepare(make_event(currency=None))
    assert outcome == Outcome.reject(
        "events[0].params.currency: VALUE_REQUIRED (currency is required when value is set)",
        error_code="VALUE_REQUIRED",
    )


@pytest.mark.parametrize(("name", "required"), [(PURCHASE, True), (REFUND, True), ("lead_won", False)])
def test_transaction_id_required_for_purchase_and_refund(ga4: Ga4Destination, name: str, required: bool):
    outcome = ga4.prepare(make_event(name=name, transaction_id=None))
    if required:
        assert outcome.status is Status.REJECT
        assert outcome.reason.startswith("events[0].params.transaction_id: VALUE_REQUIRED")
    else:
        assert isinstance(outcome, Prepared)


def test_property_colliding_with_a_mapped_param_is_rejected(ga4: Ga4Destination):
    outcome = ga4.prepare(make_event(properties={"currency": "USD"}))
    assert outcome.status is Status.REJECT
    assert outcome.reason.startswith("events[0].params.currency: NAME_DUPLICATED")


def test_group_key_is_per_user_and_consent(ga4: Ga4Destination):
    def key(**context: Any) -> str:
        consent = context.pop("consent", Consent())
        return prepared(ga4, make_event(context=Context(**context), consent=consent)).group_key

    same = key(ga_client_id=CLIENT_ID, user_id="u1")
    assert same == key(ga_client_id=CLIENT_ID, user_id="u1", ga_session_id="1700000000")
    assert same != key(ga_client_id="1.2", user_id="u1")
    assert same != key(ga_client_id=CLIENT_ID, user_id="u2")
    assert same != key(ga_client_id=CLIENT_ID)
    assert same != key(ga_client_id=CLIENT_ID, user_id="u1", consent=Consent(ad_user_data=False))
    assert CLIENT_ID not in same and "u1" not in same


# -- construction ------------------------------------------------------------------------------------
def test_repr_hides_the_api_secret(ga4: Ga4Destination):
    assert API_SECRET not in repr(ga4)
    assert MEASUREMENT_ID in repr(ga4)


@pytest.mark.parametrize("missing", ["measurement_id", "api_secret"])
def test_constructor_names_the_missing_credential(session: requests.Session, missing: str):
    credentials = {key: value for key, value in CREDENTIALS.items() if key != missing}
    with pytest.raises(ConfigError, match=missing):
        Ga4Destination(credentials, session)


@pytest.mark.parametrize(
    ("env", "expected"), [(None, DEFAULT_BASE_URL), ("http://127.0.0.1:9/", "http://127.0.0.1:9")]
)
def test_from_environment_reads_the_secret_and_base_url(
    monkeypatch: pytest.MonkeyPatch, session: requests.Session, env: str | None, expected: str
):
    asked: list[str] = []

    def fake_secret(component: str, **_: Any) -> dict[str, str]:
        asked.append(component)
        return dict(CREDENTIALS)

    monkeypatch.setattr(secrets, "get_secret", fake_secret)
    if env is None:
        monkeypatch.delenv("GA4_BASE_URL", raising=False)
    else:
        monkeypatch.setenv("GA4_BASE_URL", env)
    destination = Ga4Destination.from_environment(session)
    assert asked == ["ga4"]
    assert destination.base_url == expected
    assert destination.measurement_id == MEASUREMENT_ID


def test_from_environment_names_a_missing_secret_key(
    monkeypatch: pytest.MonkeyPatch, session: requests.Session
):
    monkeypatch.setattr(secrets, "get_secret", lambda component, **_: {"measurement_id": MEASUREMENT_ID})
    with pytest.raises(ConfigError, match="api_secret"):
        Ga4Destination.from_environment(session)


# -- classification ----------------------------------------------------------------------------------
def _response(status: int, headers: dict[str, str] | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers or {})
    return response


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, Status.DELIVERED),
        (204, Status.DELIVERED),
        (429, Status.RETRY),
        (500, Status.RETRY),
        (502, Status.RETRY),
        (503, Status.RETRY),
        (504, Status.RETRY),
        (301, Status.REJECT),
        (400, Status.REJECT),
        (401, Status.REJECT),
        (403, Status.REJECT),
        (404, Status.REJECT),
        (413, Status.REJECT),
    ],
)
def test_classify_response(status: int, expected: Status):
    outcome = classify_response(_response(status))
    assert outcome.status is expected
    assert outcome.http_status == status


@pytest.mark.parametrize(("header", "seconds"), [("7", 7.0), ("soon", None), ("-1", None)])
def test_429_carries_retry_after(header: str, seconds: float | None):
    assert classify_response(_response(429, {"Retry-After": header})).retry_after_seconds == seconds


class _RaisingSession(requests.Session):
    def __init__(self, error: requests.RequestException) -> None:
        super().__init__()
        self.error = error

    def post(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        raise self.error


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (requests.ConnectTimeout(), Status.RETRY),
        (requests.ReadTimeout(), Status.RETRY),
        (requests.ConnectionError(), Status.RETRY),
        (requests.exceptions.InvalidURL(), Status.REJECT),
        (requests.exceptions.MissingSchema(), Status.REJECT),
    ],
)
def test_transport_errors_are_classified_by_type(error: requests.RequestException, expected: Status):
    destination = Ga4Destination(CREDENTIALS, _RaisingSession(error), clock=lambda: NOW)
    batch = [prepared(destination, make_event()), prepared(destination, make_event(transaction_id="pi_2"))]
    assert [outcome.status for outcome in destination.send(batch)] == [expected, expected]


def test_connection_error_never_leaks_the_api_secret(
    session: requests.Session, caplog: pytest.LogCaptureFixture
):
    with socket.socket() as probe:  # a port nobody listens on: requests' message then embeds the full URL
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    destination = Ga4Destination(CREDENTIALS, session, f"http://127.0.0.1:{closed_port}", clock=lambda: NOW)
    caplog.set_level(logging.DEBUG)
    [outcome] = destination.send([prepared(destination, make_event())])
    assert outcome.status is Status.RETRY
    assert API_SECRET not in outcome.reason
    assert API_SECRET not in caplog.text


# -- through FakeGa4 ---------------------------------------------------------------------------------
def test_request_on_the_wire(live: Ga4Destination, fake: FakeGa4):
    result = prepared(live, make_event())
    assert live.send([result]) == [Outcome.delivered(204)]
    [request] = fake.received
    assert request.method == "POST"
    assert request.path == "/mp/collect"
    assert request.query == {"measurement_id": [MEASUREMENT_ID], "api_secret": [API_SECRET]}
    assert request.headers["content-type"] == "application/json"
    assert request.json() == result.payload
    assert fake.validation_messages == []
    assert [(e["client_id"], e["name"], e["timestamp_micros"]) for e in fake.events] == [
        (CLIENT_ID, "purchase", OCCURRED_MICROS)
    ]


def test_a_mixed_batch_draws_no_validation_message(live: Ga4Destination, fake: FakeGa4):
    events = [
        make_event(
            items=(Item(id="sku-1", name="Pro", price=Decimal("29.95"), quantity=2, category="plans"),),
            tax=Decimal("1.5"),
            shipping=Decimal("0"),
            coupon="SPRING",
            context=Context(ga_client_id=CLIENT_ID, ga_session_id="1700000000", user_id="cust_1"),
            consent=Consent(ad_user_data=True, ad_personalization=True),
        ),
        make_event(name=REFUND, value=Decimal("-59.90"), event_id="stripe:re_1:refund"),
        make_event(name=REFUND, value=Decimal("10"), items=(Item(id="sku-1", price=Decimal("10")),)),
        make_event(name=SUBSCRIPTION_START, transaction_id="in_1", context=Context(ga_client_id="1.2")),
        make_event(name=SUBSCRIPTION_RENEWAL, transaction_id="in_2", context=Context(ga_client_id="1.2")),
        make_event(
            name="trial_converted", value=None, currency=None, properties={"plan": "pro", "seats": "3"}
        ),
        make_event(
            value=Decimal("1500"),
            currency="KRW",
            context=Context(ga_client_id="3.4", ga_session_id="GS1.1.17.1.0"),
        ),
    ]
    batch = [prepared(live, event) for event in events]
    outcomes = live.send(batch)
    assert [outcome.status for outcome in outcomes] == [Status.DELIVERED] * len(events)
    assert fake.requests and fake.validation_messages == []
    assert len(fake.events) == len(events)


def test_events_of_one_user_keep_their_own_times_in_a_shared_request(live: Ga4Destination, fake: FakeGa4):
    first = make_event()
    second = make_event(occurred_at=datetime(2026, 3, 2, 12, 45, tzinfo=UTC), transaction_id="pi_2")
    assert live.send([prepared(live, first), prepared(live, second)]) == [Outcome.delivered(204)] * 2
    [request] = fake.requests
    assert "timestamp_micros" not in request.body
    assert [event["timestamp_micros"] for event in request.body["events"]] == [
        OCCURRED_MICROS,
        1772455500000000,
    ]
    assert fake.validation_messages == []


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, Status.RETRY),
        (500, Status.RETRY),
        (503, Status.RETRY),
        (429, Status.RETRY),
        (400, Status.REJECT),
    ],
)
def test_failures_from_the_fake_are_classified(
    live: Ga4Destination, fake: FakeGa4, status: int | None, expected: Status
):
    fake.fail_next(1, status)
    [outcome] = live.send([prepared(live, make_event())])
    assert outcome.status is expected
    assert API_SECRET not in outcome.reason


def test_wrong_api_secret_still_gets_2xx_but_the_fake_flags_the_drop(
    session: requests.Session, fake: FakeGa4
):
    rotated = {"measurement_id": MEASUREMENT_ID, "api_secret": "rotated-elsewhere"}
    wrong = Ga4Destination(rotated, session, fake.url, clock=lambda: NOW)
    [outcome] = wrong.send([prepared(wrong, make_event())])
    assert outcome.status is Status.DELIVERED  # exactly why GA4 needs checks before sending
    assert [(m["fieldPath"], m["validationCode"]) for m in fake.validation_messages] == [
        ("api_secret", "VALUE_INVALID")
    ]
    assert fake.events == []


def test_the_fake_does_flag_a_bad_body(session: requests.Session, fake: FakeGa4):
    bad = {
        "client_id": "GA1.1.123.456",
        "timestamp_micros": OCCURRED_MICROS,
        "events": [
            {"name": "_purchase", "params": {"value": 10.0, "coupon": "x" * 101, "google_thing": "1"}},
            {"name": "session_start", "params": {"items": [{"price": 1.0}]}},
        ],
    }
    response = session.post(
        f"{fake.url}/mp/collect",
        params={"measurement_id": MEASUREMENT_ID, "api_secret": API_SECRET},
        data=json.dumps(bad),
        timeout=5,
    )
    assert response.status_code == 204  # like Google: 2xx no matter what
    flagged = {(m["fieldPath"], m["validationCode"]) for m in fake.validation_messages}
    assert flagged == {
        ("client_id", "VALUE_INVALID"),
        ("events[0].name", "NAME_INVALID"),
        ("events[0].params.coupon", "VALUE_OUT_OF_BOUNDS"),
        ("events[0].params.google_thing", "NAME_RESERVED"),
        ("events[0].params.currency", "VALUE_REQUIRED"),
        ("events[1].name", "NAME_RESERVED"),
        ("events[1].params.items[0]", "VALUE_REQUIRED"),
    }
    assert fake.events == []


def test_the_fake_flags_duplicated_names(session: requests.Session, fake: FakeGa4):
    raw = b'{"client_id":"1.2","events":[{"name":"x","params":{"a":"1","a":"2"}}]}'
    session.post(f"{fake.url}/debug/mp/collect", data=raw, timeout=5)
    assert [m["validationCode"] for m in fake.validation_messages] == ["NAME_DUPLICATED"]


# -- debug endpoint seam -----------------------------------------------------------------------------
def test_debug_mode_turns_validation_messages_into_rejects(session: requests.Session, fake: FakeGa4):
    debug = Ga4Destination(
        CREDENTIALS, session, fake.url, validate_with_debug_endpoint=True, clock=lambda: NOW
    )
    good = prepared(debug, make_event())
    bad_payload = map_event(make_event(currency=None, context=Context(ga_client_id=CLIENT_ID)), "purchase")
    bad = Prepared(event=good.event, payload=bad_payload, group_key=good.group_key)  # skips our own checks
    outcomes = debug.send([good, bad])
    [request] = fake.requests
    assert request.debug and request.body["validation_behavior"] == "ENFORCE_RECOMMENDATIONS"
    assert outcomes[0].status is Status.SKIP  # validated, and the validation server records nothing
    assert outcomes[1] == Outcome.reject(
        "GA4 validation server: events[1].params.currency: VALUE_REQUIRED",
        http_status=200,
        error_code="VALUE_REQUIRED",
    )
    assert fake.events == []


def test_debug_mode_without_validation_messages_is_a_reject(session: requests.Session, fake: FakeGa4):
    debug = Ga4Destination(
        CREDENTIALS, session, fake.url, validate_with_debug_endpoint=True, clock=lambda: NOW
    )
    fake.fail_next(1, 200, {"unexpected": True})
    [outcome] = debug.send([prepared(debug, make_event())])
    assert outcome.status is Status.REJECT
    assert "validationMessages" in outcome.reason
