"""GA4 features beyond the basic mapping: client_id policy, user_data hashing, location and device,
user properties, measurement streams and routing, debug mode for test events, the shadow check.

Every request that reaches FakeGa4 (127.0.0.1) is also judged by its independent validator.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
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
    DEBUG_COLLECT_PATH,
    Ga4Destination,
    Ga4Options,
    StreamRouter,
    derive_client_id,
    encode_body,
    map_event,
    normalize_email,
    normalize_phone,
)
from conversion_relay.model import (
    PURCHASE,
    SUBSCRIPTION_RENEWAL,
    Consent,
    Context,
    ConversionEvent,
    Person,
    Source,
)
from relay_local.fakes.ga4 import FakeGa4

NOW = datetime(2026, 3, 2, 13, 0, 0, tzinfo=UTC)
CLIENT_ID = "1234567890.1700000000"
SINGLE = {"measurement_id": "G-SINGLE0001", "api_secret": "single-secret-do-not-log"}
MULTI = {
    "streams": [
        {"name": "kr", "measurement_id": "G-KR00000001", "api_secret": "kr-secret-do-not-log"},
        {"name": "jp", "measurement_id": "G-JP00000001", "api_secret": "jp-secret-do-not-log"},
        {"name": "portone", "measurement_id": "G-PO00000001", "api_secret": "po-secret-do-not-log"},
    ],
    "default_stream": "kr",
    "routing": [
        {"field": "properties.site", "equals": "jp", "stream": "jp"},
        {"field": "source.provider", "in": ["portone"], "stream": "portone"},
        {"field": "site_host", "equals": "shop.jp", "stream": "jp"},
    ],
}
EMAIL = "Jane.Doe@GMail.com"
PHONE = "010-1234-5678"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def make_event(**overrides: Any) -> ConversionEvent:
    base = ConversionEvent(
        event_id="stripe:purchase:cs_1",
        name=PURCHASE,
        occurred_at=datetime(2026, 3, 2, 12, 30, tzinfo=UTC),
        source=Source("stripe", "evt_1", "checkout.session.completed", "cs_1"),
        value=Decimal("59.90"),
        currency="EUR",
        transaction_id="pi_1",
        context=Context(ga_client_id=CLIENT_ID),
    )
    return dataclasses.replace(base, **overrides)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGa4]:
    server = FakeGa4.from_secret(MULTI, clock=lambda: NOW)
    server.credentials[SINGLE["measurement_id"]] = SINGLE["api_secret"]
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _clean_fake(request: pytest.FixtureRequest) -> None:
    if "fake" in request.fixturenames:
        request.getfixturevalue("fake").reset()


def destination(
    session: requests.Session, base_url: str = "https://www.google-analytics.com", **kwargs: Any
) -> Ga4Destination:
    credentials = kwargs.pop("credentials", SINGLE)
    options = Ga4Options(**kwargs.pop("options", {}))
    return Ga4Destination(credentials, session, base_url, options=options, clock=lambda: NOW, **kwargs)


def prepared(ga4: Ga4Destination, event: ConversionEvent) -> Prepared:
    result = ga4.prepare(event)
    assert isinstance(result, Prepared), result
    return result


# -- options -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, Ga4Options()),
        (
            {
                "GA4_CLIENT_ID_POLICY": "derive",
                "GA4_DEBUG_MODE": "test_events",
                "GA4_SHADOW_SAMPLE_RATE": "0.05",
                "GA4_MAX_PARAM_VALUE_LENGTH": "500",
                "GA4_USER_DATA": "enabled",
            },
            Ga4Options("derive", "test_events", 0.05, 500, True),
        ),
        ({"GA4_DEBUG_MODE": "ALL", "GA4_USER_DATA": "Disabled"}, Ga4Options(debug_mode="all")),
    ],
)
def test_options_from_environment(env: dict[str, str], expected: Ga4Options):
    assert Ga4Options.from_env(env) == expected


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"GA4_CLIENT_ID_POLICY": "email"}, "GA4_CLIENT_ID_POLICY"),
        ({"GA4_DEBUG_MODE": "on"}, "GA4_DEBUG_MODE"),
        ({"GA4_SHADOW_SAMPLE_RATE": "1.5"}, "GA4_SHADOW_SAMPLE_RATE"),
        ({"GA4_SHADOW_SAMPLE_RATE": "nan"}, "GA4_SHADOW_SAMPLE_RATE"),
        ({"GA4_SHADOW_SAMPLE_RATE": "often"}, "GA4_SHADOW_SAMPLE_RATE"),
        ({"GA4_MAX_PARAM_VALUE_LENGTH": "200"}, "GA4_MAX_PARAM_VALUE_LENGTH"),
        ({"GA4_USER_DATA": "yes"}, "GA4_USER_DATA"),
    ],
)
def test_bad_options_name_the_variable(env: dict[str, str], names: str):
    with pytest.raises(ConfigError, match=names):
        Ga4Options.from_env(env)


# -- client_id policy --------------------------------------------------------------------------------
def test_derived_client_id_is_gtag_shaped_stable_and_keyed():
    first = derive_client_id("cus_123", "salt-a")
    assert first == derive_client_id("cus_123", "salt-a")
    assert first != derive_client_id("cus_124", "salt-a")
    assert first != derive_client_id("cus_123", "salt-b")
    left, right = first.split(".")
    assert left.isdigit() and right.isdigit() and int(left) > 0 and int(right) > 0


@pytest.mark.parametrize(
    ("person", "context", "source_of_id"),
    [
        (Person(external_id="cus_1"), Context(user_id="u_1"), "u_1"),  # user_id first: joins the site's user
        (Person(external_id="cus_1"), Context(), "cus_1"),
        (Person(), Context(customer_user_id="c_9"), "c_9"),
        (Person(email=EMAIL, external_id=EMAIL), Context(), EMAIL),  # hashed: the email never shows
    ],
)
def test_derive_policy_sends_a_pseudonymous_id(
    session: requests.Session, person: Person, context: Context, source_of_id: str
):
    ga4 = destination(session, options={"client_id_policy": "derive"})
    result = prepared(ga4, make_event(person=person, context=context))
    client_id = result.payload["client_id"]
    assert client_id == derive_client_id(source_of_id, f"conversion-relay:{SINGLE['measurement_id']}")
    assert EMAIL.lower() not in encode_body(result.payload).decode().lower()


def test_derive_policy_uses_the_secret_salt(session: requests.Session):
    ga4 = destination(
        session, credentials={**SINGLE, "client_id_salt": "s3"}, options={"client_id_policy": "derive"}
    )
    result = prepared(ga4, make_event(person=Person(external_id="cus_1"), context=Context()))
    assert result.payload["client_id"] == derive_client_id("cus_1", "s3")
    assert "s3" not in repr(ga4)


@pytest.mark.parametrize(
    ("policy", "event_context", "person", "fragment"),
    [
        ("reject", Context(), Person(external_id="cus_1"), "GA4_CLIENT_ID_POLICY is reject"),
        ("derive", Context(), Person(), "no user_id or customer id"),
    ],
)
def test_missing_client_id_rejects_with_an_actionable_reason(
    session: requests.Session, policy: str, event_context: Context, person: Person, fragment: str
):
    ga4 = destination(session, options={"client_id_policy": policy})
    outcome = ga4.prepare(make_event(context=event_context, person=person))
    assert outcome.status is Status.REJECT
    assert outcome.reason.startswith("client_id: VALUE_REQUIRED (")
    assert fragment in outcome.reason and "metadata key 'ga_client_id'" in outcome.reason


def test_a_malformed_client_id_is_rejected_even_under_derive(session: requests.Session):
    ga4 = destination(session, options={"client_id_policy": "derive"})
    event = make_event(context=Context(ga_client_id="GA1.1.1.2"), person=Person(external_id="cus_1"))
    assert ga4.prepare(event).status is Status.REJECT


# -- user-provided data ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Jane.Doe@GMail.com", "janedoe@gmail.com"),
        (" j.a.n.e@googlemail.com ", "jane@googlemail.com"),
        ("jane.doe@example.com", "jane.doe@example.com"),  # dots kept outside gmail
        ("Jane Doe@Example.COM", "janedoe@example.com"),  # spaces removed
        ("jane+shop@gmail.com", "jane+shop@gmail.com"),  # Google removes dots only, not +tags
        ("no-at-sign", None),
        ("@example.com", None),
        ("jane@localhost", None),
        ("...@gmail.com", None),
        (None, None),
    ],
)
def test_normalize_email(raw: str | None, expected: str | None):
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("+82 10-1234-5678", None, "+821012345678"),
        ("0082 10 1234 5678", None, "+821012345678"),
        ("010-1234-5678", "KR", "+821012345678"),  # national: trunk 0 dropped, country code added
        ("(555) 123-4567", "US", "+15551234567"),
        ("1 555 123 4567", "US", "+15551234567"),  # already international without the +
        ("06 1234 5678", "IT", "+390612345678"),  # Italy keeps the leading 0
        ("010-1234-5678", None, None),  # national with no known country: never guessed
        ("010-1234-5678", "XX", None),
        ("+12", None, None),  # too short for E.164
        ("+1234567890123456", None, None),  # too long
        ("", "US", None),
    ],
)
def test_normalize_phone_to_e164(raw: str, country: str | None, expected: str | None):
    assert normalize_phone(raw, country) == expected


FULL_PERSON = Person(
    email=EMAIL,
    phone=PHONE,
    first_name=" Jane3! ",
    last_name="O'Doe",
    street="1600 Amphitheatre Pkwy.",
    city="Mountain View 1",
    state="CA",
    zip="94043~",
    country="us",
    external_id="cus_1",
)


def test_user_data_is_hashed_per_googles_rules(session: requests.Session):
    ga4 = destination(session, options={"user_data": True})
    person = dataclasses.replace(FULL_PERSON, phone="(650) 253-0000")
    result = prepared(ga4, make_event(person=person, context=Context(ga_client_id=CLIENT_ID, user_id="u_1")))
    assert result.payload["user_data"] == {
        "sha256_email_address": [sha("janedoe@gmail.com")],
        "sha256_phone_number": [sha("+16502530000")],
        "address": [
            {
                "sha256_first_name": sha("jane"),
                "sha256_last_name": sha("odoe"),
                "city": "mountain view",
                "region": "ca",
                "sha256_street": sha("1600 amphitheatre pkwy"),
                "postal_code": "94043",
                "country": "US",
            }
        ],
    }
    assert result.dropped_identifiers == ()


@pytest.mark.parametrize(
    ("options", "user_id", "consent", "sent", "dropped"),
    [
        ({}, "u_1", Consent(), False, ()),  # disabled by default
        ({"user_data": True}, None, Consent(), False, ("ga4_user_data_without_user_id",)),
        ({"user_data": True}, "u_1", Consent(ad_user_data=False), False, ()),
        ({"user_data": True}, "u_1", Consent(ad_user_data=True), True, ()),
    ],
)
def test_user_data_needs_the_option_a_user_id_and_no_denied_consent(
    session: requests.Session,
    options: dict[str, Any],
    user_id: str | None,
    consent: Consent,
    sent: bool,
    dropped: tuple[str, ...],
):
    ga4 = destination(session, options=options)
    event = make_event(
        person=FULL_PERSON, context=Context(ga_client_id=CLIENT_ID, user_id=user_id), consent=consent
    )
    result = prepared(ga4, event)
    assert ("user_data" in result.payload) is sent
    assert result.dropped_identifiers == dropped
    encoded = encode_body(result.payload).decode().lower()
    assert "jane" not in encoded and "1012345678" not in encoded and "amphitheatre" not in encoded


def test_unusable_email_and_phone_are_dropped_and_counted(session: requests.Session):
    ga4 = destination(session, options={"user_data": True})
    person = Person(email="not-an-email", phone=PHONE, first_name="Jane")  # national phone, no country
    result = prepared(ga4, make_event(person=person, context=Context(ga_client_id=CLIENT_ID, user_id="u_1")))
    assert result.payload["user_data"] == {"address": [{"sha256_first_name": sha("jane")}]}
    assert result.dropped_identifiers == ("ga4_invalid_email", "ga4_phone_not_e164")


# -- location, device, user properties ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("context", "person", "expected", "dropped"),
    [
        (
            Context(client_ip="203.0.113.9"),
            Person(country="US", state="CA"),
            {"ip_override": "203.0.113.9"},
            (),
        ),
        (
            Context(),
            Person(country="us", state="ca", city="Mountain View"),
            {"user_location": {"country_id": "US", "region_id": "US-CA"}},
            (),
        ),
        (Context(), Person(country="KR", state="Seoul"), {"user_location": {"country_id": "KR"}}, ()),
        (Context(), Person(country="Korea"), {}, ()),
        (
            Context(client_ip="not-an-ip"),
            Person(country="DE"),
            {"user_location": {"country_id": "DE"}},
            ("ga4_invalid_ip",),
        ),
        (
            Context(
                device_category="Smart TV",
                device_language="ko-KR",
                screen_resolution="1920X1080",
                client_user_agent="Mozilla/5.0",
            ),
            Person(),
            {
                "device": {"category": "smart TV", "language": "ko-KR", "screen_resolution": "1920x1080"},
                "user_agent": "Mozilla/5.0",
            },
            (),
        ),
        (
            Context(device_category="phone", device_language="korean", screen_resolution="big"),
            Person(),
            {},
            ("ga4_invalid_device_category", "ga4_invalid_device_language", "ga4_invalid_screen_resolution"),
        ),
    ],
)
def test_location_and_device(
    session: requests.Session,
    fake: FakeGa4,
    context: Context,
    person: Person,
    expected: dict[str, Any],
    dropped: tuple[str, ...],
):
    ga4 = destination(session, fake.url)
    result = prepared(
        ga4, make_event(context=dataclasses.replace(context, ga_client_id=CLIENT_ID), person=person)
    )
    keys = ("ip_override", "user_location", "device", "user_agent")
    assert {key: result.payload[key] for key in keys if key in result.payload} == expected
    assert result.dropped_identifiers == dropped
    assert ga4.send([result]) == [Outcome.delivered(204)]
    assert fake.validation_messages == []


def test_user_properties_are_sent_as_value_objects(session: requests.Session, fake: FakeGa4):
    ga4 = destination(session, fake.url)
    result = prepared(ga4, make_event(user_properties={"plan": "pro", "tier": "3"}))
    assert result.payload["user_properties"] == {"plan": {"value": "pro"}, "tier": {"value": "3"}}
    assert ga4.send([result]) == [Outcome.delivered(204)]
    assert (
        fake.validation_messages == []
        and fake.events[0]["user_properties"] == result.payload["user_properties"]
    )


def test_different_user_properties_never_share_a_request(session: requests.Session, fake: FakeGa4):
    ga4 = destination(session, fake.url)
    batch = [
        prepared(ga4, make_event(transaction_id="a", user_properties={"plan": "pro"})),
        prepared(ga4, make_event(transaction_id="b", user_properties={"plan": "free"})),
        prepared(ga4, make_event(transaction_id="c", user_properties={"plan": "pro"})),
    ]
    assert [o.status for o in ga4.send(batch)] == [Status.DELIVERED] * 3
    assert sorted(len(r.body["events"]) for r in fake.requests) == [1, 2]


# -- subscriptions -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "outcome_code"),
    [("purchase", None), ("subscription_renewed", None), ("app_store_subscription_renew", "NAME_RESERVED")],
)
def test_subscription_renewal_name_is_configurable_but_never_app_store(
    session: requests.Session, monkeypatch: pytest.MonkeyPatch, name: str, outcome_code: str | None
):
    monkeypatch.setenv(
        "MAPPING_OVERRIDES", json.dumps({"event_names": {"ga4": {"subscription_renewal": name}}})
    )
    config.mapping.cache_clear()
    outcome = destination(session).prepare(make_event(name=SUBSCRIPTION_RENEWAL, transaction_id="in_1"))
    if outcome_code is None:
        assert isinstance(outcome, Prepared) and outcome.payload["events"][0]["name"] == name
    else:
        assert outcome.status is Status.REJECT
        assert outcome.reason.startswith(f"events[0].name: {outcome_code} (reserved for app-store events")


# -- streams -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "stream"),
    [
        ({}, "kr"),
        ({"properties": {"site": "jp"}}, "jp"),
        ({"properties": {"site": "kr"}}, "kr"),
        ({"source": Source("portone", "e", "t", "o")}, "portone"),
        ({"context": Context(ga_client_id=CLIENT_ID, event_source_url="https://shop.jp/checkout?x=1")}, "jp"),
        ({"context": Context(ga_client_id=CLIENT_ID, event_source_url="not a url")}, "kr"),
    ],
)
def test_routing_picks_the_stream(overrides: dict[str, Any], stream: str):
    assert StreamRouter.from_secret(MULTI).route(make_event(**overrides)).name == stream


def test_routing_object_shorthand():
    secret = {**MULTI, "routing": {"field": "currency", "values": {"JPY": "jp", "KRW": "kr"}}}
    router = StreamRouter.from_secret(secret)
    assert [router.route(make_event(currency=c)).name for c in ("JPY", "KRW", "EUR")] == ["jp", "kr", "kr"]


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ({"measurement_id": "G-1"}, "api_secret"),
        ({"streams": []}, "no streams"),
        ({"streams": "kr"}, "must be a list"),
        ({"streams": [{"name": "kr", "measurement_id": "G-1"}]}, r"streams\[0\] lacks \['api_secret'\]"),
        ({**MULTI, "default_stream": "us"}, "default_stream 'us'"),
        ({**MULTI, "default_stream": None}, "default_stream is required"),
        ({**MULTI, "routing": [{"field": "currency", "equals": "USD", "stream": "us"}]}, "unknown streams"),
        ({**MULTI, "routing": [{"field": "currency", "stream": "kr"}]}, "equals"),
        ({**MULTI, "routing": "site"}, "routing must be"),
        ({"streams": [MULTI["streams"][0], MULTI["streams"][0]], "default_stream": "kr"}, "unique"),
    ],
)
def test_bad_stream_secrets_name_the_problem_never_a_secret(secret: dict[str, Any], message: str):
    with pytest.raises(ConfigError, match=message) as raised:
        StreamRouter.from_secret(secret)
    assert "secret-do-not-log" not in str(raised.value)


def test_a_single_stream_multi_secret_needs_no_default():
    assert StreamRouter.from_secret({"streams": MULTI["streams"][:1]}).default.name == "kr"


def test_each_stream_gets_its_own_credentials_and_requests(session: requests.Session, fake: FakeGa4):
    ga4 = destination(session, fake.url, credentials=MULTI)
    batch = [
        prepared(ga4, make_event(transaction_id="k1")),
        prepared(ga4, make_event(transaction_id="j1", properties={"site": "jp"})),
        prepared(ga4, make_event(transaction_id="k2")),
    ]
    assert [o.status for o in ga4.send(batch)] == [Status.DELIVERED] * 3
    assert fake.validation_messages == []  # the fake checks each measurement_id/api_secret pair
    by_stream = {(e["measurement_id"], e["params"]["transaction_id"]) for e in fake.events}
    assert by_stream == {("G-KR00000001", "k1"), ("G-KR00000001", "k2"), ("G-JP00000001", "j1")}
    assert len(fake.requests) == 2


def test_repr_hides_every_api_secret(session: requests.Session):
    shown = repr(destination(session, credentials=MULTI))
    assert "G-JP00000001" in shown and "secret-do-not-log" not in shown


def test_from_environment_reads_streams_and_options(
    monkeypatch: pytest.MonkeyPatch, session: requests.Session
):
    monkeypatch.setattr(secrets, "get_secret", lambda component, **_: dict(MULTI))
    monkeypatch.setenv("GA4_DEBUG_MODE", "test_events")
    monkeypatch.setenv("GA4_CLIENT_ID_POLICY", "derive")
    ga4 = Ga4Destination.from_environment(session)
    assert set(ga4.router.streams) == {"kr", "jp", "portone"}
    assert (ga4.options.debug_mode, ga4.options.client_id_policy) == ("test_events", "derive")


# -- debug mode for test events ----------------------------------------------------------------------
def test_test_mode_events_go_to_the_validation_server(session: requests.Session, fake: FakeGa4):
    ga4 = destination(session, fake.url, options={"debug_mode": "test_events"})
    test_event = make_event(transaction_id="t1", source=Source("stripe", "e", "t", "o", livemode=False))
    live_event = make_event(transaction_id="l1")
    batch = [prepared(ga4, test_event), prepared(ga4, live_event)]
    assert batch[0].group_key != batch[1].group_key  # same user, different endpoint
    outcomes = ga4.send(batch)
    assert outcomes[0].status is Status.SKIP and "validation server" in outcomes[0].reason
    assert outcomes[1] == Outcome.delivered(204)
    paths = sorted((r.path, r.body.get("validation_behavior")) for r in fake.requests)
    assert paths == [(DEBUG_COLLECT_PATH, "ENFORCE_RECOMMENDATIONS"), ("/mp/collect", None)]
    assert [e["params"]["transaction_id"] for e in fake.events] == ["l1"]  # only the live one is recorded


def test_validation_messages_become_permanent_failures(session: requests.Session, fake: FakeGa4):
    ga4 = destination(session, fake.url, options={"debug_mode": "test_events"})
    event = make_event(source=Source("stripe", "e", "t", "o", livemode=False))
    good = prepared(ga4, event)
    bad_body = map_event(dataclasses.replace(event, currency=None), "purchase")  # skips our own checks
    outcomes = ga4.send([good, Prepared(event, bad_body, good.group_key)])
    assert outcomes[0].status is Status.SKIP
    assert outcomes[1] == Outcome.reject(
        "GA4 validation server: events[1].params.currency: VALUE_REQUIRED",
        http_status=200,
        error_code="VALUE_REQUIRED",
    )


# -- shadow check ------------------------------------------------------------------------------------
class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[str, str]]]] = []

    def __call__(self, stream: str, messages: list[tuple[str, str]]) -> None:
        self.calls.append((stream, messages))


@pytest.mark.parametrize(
    ("rate", "draw", "checked"), [(0.0, 0.0, False), (0.3, 0.5, False), (0.3, 0.1, True), (1.0, 0.99, True)]
)
def test_shadow_check_is_sampled(
    session: requests.Session, fake: FakeGa4, rate: float, draw: float, checked: bool
):
    recorder = _Recorder()
    ga4 = destination(
        session,
        fake.url,
        options={"shadow_sample_rate": rate},
        sample=lambda: draw,
        on_shadow_result=recorder,
    )
    assert ga4.send([prepared(ga4, make_event())]) == [Outcome.delivered(204)]
    assert [r.path for r in fake.requests] == ["/mp/collect", *([DEBUG_COLLECT_PATH] if checked else [])]
    assert recorder.calls == ([("default", [])] if checked else [])


def test_shadow_check_reports_but_never_changes_the_outcome(session: requests.Session, fake: FakeGa4):
    recorder = _Recorder()
    ga4 = destination(session, fake.url, options={"shadow_sample_rate": 1.0}, on_shadow_result=recorder)
    good = prepared(ga4, make_event())
    bad = Prepared(good.event, map_event(make_event(currency=None), "purchase"), good.group_key)
    assert ga4.send([bad]) == [Outcome.delivered(204)]
    assert recorder.calls == [("default", [("events[0].params.currency", "VALUE_REQUIRED")])]


class _DebugFailingSession(requests.Session):
    def post(self, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if DEBUG_COLLECT_PATH in url:
            raise requests.ConnectionError("validation server down")
        return super().post(url, *args, **kwargs)


def test_shadow_check_failure_is_ignored(fake: FakeGa4):
    recorder = _Recorder()
    with _DebugFailingSession() as failing:
        ga4 = destination(failing, fake.url, options={"shadow_sample_rate": 1.0}, on_shadow_result=recorder)
        assert ga4.send([prepared(ga4, make_event())]) == [Outcome.delivered(204)]
    assert recorder.calls == []
