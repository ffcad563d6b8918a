"""AppsFlyer mobile S2S: config checks at load, payload, 1 KB budget, classification, the fake's rules."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import requests

from conversion_relay.config import ConfigError
from conversion_relay.destinations import appsflyer, appsflyer_mobile
from conversion_relay.destinations.appsflyer import (
    MAX_PAYLOAD_BYTES,
    AmbiguousPolicy,
    AppsflyerDestination,
    encode_payload,
)
from conversion_relay.destinations.appsflyer_mobile import (
    AppsflyerMobileDestination,
    app_platform,
    event_time,
    fit_mobile_payload,
)
from conversion_relay.destinations.base import Outcome, Prepared, Status
from conversion_relay.http import new_session
from conversion_relay.model import PURCHASE, REFUND, Context, ConversionEvent, Item, Source
from relay_local.fakes.appsflyer_mobile import FakeAppsflyerMobile

ANDROID_APP = "com.example.shop"
IOS_APP = "id1234567890"
S2S_KEY = "test-s2s-key"
AF_ID = "1700000000000-1234567890123456789"
NOW = datetime(2026, 3, 2, 12, 30, 45, 123456, tzinfo=UTC)


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    pooled = new_session(pool_size=8)
    yield pooled
    pooled.close()


@pytest.fixture(scope="module")
def android_fake() -> Iterator[FakeAppsflyerMobile]:
    server = FakeAppsflyerMobile(app_id=ANDROID_APP, s2s_key=S2S_KEY).start()
    yield server
    server.stop()


@pytest.fixture
def live(android_fake: FakeAppsflyerMobile) -> Iterator[FakeAppsflyerMobile]:
    android_fake.reset()
    yield android_fake
    android_fake.reset()


def destination(
    session: requests.Session | None = None,
    base_url: str = "http://127.0.0.1:9",
    app_id: str = ANDROID_APP,
    **extra: Any,
) -> AppsflyerMobileDestination:
    credentials = {"app_id": app_id, "s2s_key": S2S_KEY, **extra.pop("credentials", {})}
    return AppsflyerMobileDestination(
        credentials, session or requests.Session(), base_url, clock=lambda: NOW, count=lambda n: None, **extra
    )


def make_event(name: str = PURCHASE, **overrides: Any) -> ConversionEvent:
    context = overrides.pop("context", Context(appsflyer_id=AF_ID))
    base = ConversionEvent(
        event_id=f"evt-{name}",
        name=name,
        occurred_at=NOW,
        source=Source(provider="stripe", event_id="evt_1", event_type="x", object_id="cs_1"),
        context=context,
    )
    return dataclasses.replace(base, **overrides)


def prepared(event: ConversionEvent, dest: AppsflyerMobileDestination | None = None) -> Prepared:
    result = (dest or destination()).prepare(event)
    assert isinstance(result, Prepared), result
    return result


# -- configuration at load ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("app_id", "declared", "expected"),
    [
        ("id1234567890", None, "ios"),
        ("id1234567890", "ios", "ios"),
        ("com.example.shop", None, "android"),
        ("com.example.shop", "android", "android"),
        ("1234567890", None, 'carry the "id" prefix'),
        ("1234567890", "ios", 'carry the "id" prefix'),
        ("com.example.shop", "ios", 'platform is "ios"'),
        ("id1234567890", "android", "package name"),
        ("shop", None, "package name"),
        ("com.example.shop", "windows", '"platform" must be'),
    ],
)
def test_platform_is_decided_and_bad_app_ids_are_refused(app_id: str, declared: str | None, expected: str):
    if expected in ("ios", "android"):
        assert app_platform(app_id, declared) == expected
    else:
        with pytest.raises(ConfigError) as caught:
            app_platform(app_id, declared)
        assert expected in str(caught.value)
        assert app_id not in str(caught.value)


def test_bare_ios_app_id_is_refused_when_the_destination_is_built():
    with pytest.raises(ConfigError, match="records nothing"):
        destination(app_id="1234567890")


def test_secret_platform_field_is_read():
    assert destination(app_id=IOS_APP, credentials={"platform": "iOS"}).platform == "ios"


def test_missing_secret_keys_are_named():
    with pytest.raises(ConfigError, match="s2s_key"):
        AppsflyerMobileDestination({"app_id": ANDROID_APP}, requests.Session())


def test_web_from_environment_returns_mobile_when_targeted(monkeypatch: pytest.MonkeyPatch, session):
    secret = {"app_id": IOS_APP, "s2s_key": S2S_KEY}
    monkeypatch.setattr(appsflyer_mobile, "get_secret", lambda component: {"appsflyer": secret}[component])
    monkeypatch.setenv("APPSFLYER_TARGET", "mobile")
    monkeypatch.setenv("APPSFLYER_MOBILE_BASE_URL", "http://127.0.0.1:8124/")
    monkeypatch.setenv("APPSFLYER_LATE_EVENT_POLICY", "reject")
    dest = AppsflyerDestination.from_environment(session, max_workers=2)
    assert isinstance(dest, AppsflyerMobileDestination)
    assert dest.url == f"http://127.0.0.1:8124/inappevent/{IOS_APP}"
    assert dest.late_policy is appsflyer.LatePolicy.REJECT
    assert dest.max_workers == 2
    assert dest.rate_limiter is not None


def test_mobile_defaults_to_api3(monkeypatch: pytest.MonkeyPatch, session):
    monkeypatch.setattr(appsflyer_mobile, "get_secret", lambda c: {"app_id": ANDROID_APP, "s2s_key": "k"})
    monkeypatch.delenv("APPSFLYER_MOBILE_BASE_URL", raising=False)
    dest = AppsflyerMobileDestination.from_environment(session)
    assert dest.url == f"https://api3.appsflyer.com/inappevent/{ANDROID_APP}"


# -- payload -----------------------------------------------------------------------------------------
def test_purchase_maps_every_field_for_ios():
    event = make_event(
        value=Decimal("59.97"),
        currency="EUR",
        transaction_id="pi_123",
        items=(Item(id="sku-1", quantity=2),),
        properties={"plan": "pro", "af_revenue": "999"},
        context=Context(
            appsflyer_id=AF_ID,
            customer_user_id="cuid-1",
            client_ip="2001:db8::1",
            app_os_version="17.4.1",
            att_status="3",
        ),
    )
    payload = prepared(event, destination(app_id=IOS_APP)).payload
    assert payload == {
        "appsflyer_id": AF_ID,
        "eventName": "af_purchase",
        "eventValue": payload["eventValue"],
        "eventTime": "2026-03-02 12:30:45.123",
        "eventCurrency": "EUR",
        "customer_user_id": "cuid-1",
        "ip": "2001:db8::1",
        "os": "17.4.1",
        "att": 3,
    }
    assert isinstance(payload["eventValue"], str)
    assert json.loads(payload["eventValue"]) == {
        "plan": "pro",
        "af_content_id": "sku-1",
        "af_quantity": "2",
        "af_revenue": "59.97",  # the canonical value, not the spoofed property
        "af_currency": "EUR",
        "af_order_id": "pi_123",
    }


def test_android_gets_no_os_or_att():
    context = Context(appsflyer_id=AF_ID, app_os_version="14", att_status="3")
    payload = prepared(make_event(context=context)).payload
    assert "os" not in payload and "att" not in payload


@pytest.mark.parametrize(
    ("os_version", "att", "dropped"),
    [
        ("17.4", "0", ()),
        ("17", "2", ()),
        ("iOS 17", "3", ("invalid_os_version",)),
        ("17.4", "4", ("invalid_att_status",)),
        ("17.4", "authorized", ("invalid_att_status",)),
    ],
)
def test_invalid_ios_fields_are_dropped_and_counted(os_version: str, att: str, dropped: tuple[str, ...]):
    context = Context(appsflyer_id=AF_ID, app_os_version=os_version, att_status=att)
    result = prepared(make_event(context=context), destination(app_id=IOS_APP))
    assert result.dropped_identifiers == dropped


def test_refund_revenue_is_negative_and_exact():
    event = make_event(REFUND, value=Decimal("19.990"), currency="USD", transaction_id="re_1")
    values = json.loads(prepared(event).payload["eventValue"])
    assert (values["af_revenue"], values["af_currency"], values["af_order_id"]) == ("-19.990", "USD", "re_1")


def test_event_without_details_sends_an_empty_event_value_string():
    payload = prepared(make_event()).payload
    assert payload["eventValue"] == ""
    assert "eventCurrency" not in payload


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2026, 1, 5, 0, 0, 0, 0, tzinfo=UTC), "2026-01-05 00:00:00.000"),
        (datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), "2026-12-31 23:59:59.999"),
        (datetime(2026, 3, 2, 9, 5, 7, 1000, tzinfo=UTC), "2026-03-02 09:05:07.001"),
    ],
)
def test_event_time_format(moment: datetime, text: str):
    assert event_time(moment) == text


@pytest.mark.parametrize(
    ("appsflyer_id", "ok"),
    [
        (AF_ID, True),
        ("1700000000000-1234567", True),  # the legacy spec's 13-7 form
        ("1700000000000-12345678", False),
        ("170000000000-1234567890123456789", False),
        ("1700000000000_1234567890123456789", False),
        ("a0d1c2e3-f4a5-4b6c-9d7e-8f9a0b1c2d3e", False),  # a web afUserId is not an AppsFlyer ID
    ],
)
def test_appsflyer_id_pattern(appsflyer_id: str, ok: bool):
    result = destination().prepare(make_event(context=Context(appsflyer_id=appsflyer_id)))
    if ok:
        assert isinstance(result, Prepared)
    else:
        assert isinstance(result, Outcome) and result.status is Status.REJECT
        assert result.reason.startswith("appsflyer_id:")
        assert appsflyer_id not in result.reason


def test_missing_appsflyer_id_is_a_permanent_failure_naming_the_metadata_key():
    result = destination().prepare(make_event(context=Context(customer_user_id="c")))
    assert isinstance(result, Outcome) and result.status is Status.REJECT
    assert "appsflyer_id" in result.reason and "metadata" in result.reason


def test_value_without_currency_is_rejected():
    result = destination().prepare(make_event(value=Decimal(1)))
    assert isinstance(result, Outcome) and result.reason.startswith("currency:")


# -- 1 KB budget -------------------------------------------------------------------------------------
def _sized(total_bytes: int) -> ConversionEvent:
    """An event whose untrimmed payload is exactly total_bytes, padded in a custom property."""

    def build(padding: int) -> ConversionEvent:
        return make_event(
            value=Decimal(5),
            currency="USD",
            transaction_id="pi_1",
            items=(Item(id="sku-1"),),
            properties={"note": "n" * padding},
        )

    def size(event: ConversionEvent) -> int:
        built = destination().build_payload(event)
        assert not isinstance(built, Outcome)
        return len(encode_payload(built[0]))

    return build(total_bytes - size(build(0)))


@pytest.mark.parametrize(
    ("total_bytes", "dropped"),
    [(MAX_PAYLOAD_BYTES - 1, []), (MAX_PAYLOAD_BYTES, []), (MAX_PAYLOAD_BYTES + 1, ["eventValue.note"])],
)
def test_payload_byte_boundary(total_bytes: int, dropped: list[str]):
    built = destination().build_payload(_sized(total_bytes))
    assert not isinstance(built, Outcome)
    assert len(encode_payload(built[0])) == total_bytes
    fitted, names = fit_mobile_payload(built[0])
    assert names == dropped
    assert len(encode_payload(fitted)) <= MAX_PAYLOAD_BYTES
    values = json.loads(fitted["eventValue"])
    assert values["af_revenue"] == "5" and values["af_order_id"] == "pi_1"


def test_trim_order_keeps_revenue_and_order_id_to_the_end():
    payload = {"appsflyer_id": AF_ID, "eventName": "af_purchase", "eventTime": "2026-03-02 12:30:45.123"}
    details = {
        "custom": "c" * 300,
        "af_content_id": "x" * 300,
        "af_quantity": "1",
        "af_revenue": "5",
        "af_currency": "USD",
        "af_order_id": "o" * 600,
    }
    fitted, dropped = fit_mobile_payload({**payload, "eventValue": json.dumps(details)})
    assert dropped == ["eventValue.custom", "eventValue.af_quantity", "eventValue.af_content_id"]
    assert set(json.loads(fitted["eventValue"])) == {"af_revenue", "af_currency", "af_order_id"}


def test_payload_that_cannot_fit_is_rejected_without_values():
    event = make_event(
        value=Decimal(1), currency="USD", context=Context(appsflyer_id=AF_ID, customer_user_id="u" * 1100)
    )
    result = destination().prepare(event)
    assert isinstance(result, Outcome) and result.status is Status.REJECT
    assert result.reason.startswith("payload: ") and "uuuu" not in result.reason


# -- over the wire -----------------------------------------------------------------------------------
def test_end_to_end_through_the_fake(live: FakeAppsflyerMobile, session):
    dest = destination(session, live.url)
    events = [
        make_event(value=Decimal("59000"), currency="KRW", transaction_id="pi_1"),
        make_event(REFUND, value=Decimal("10.5"), currency="USD", transaction_id="re_1"),
        make_event("lead", context=Context(appsflyer_id=AF_ID, client_ip="192.0.2.1")),
    ]
    outcomes = dest.send([prepared(e, dest) for e in events])
    assert outcomes == [Outcome.delivered(200)] * 3
    assert sorted(live.summary(), key=json.dumps) == sorted(
        [
            {"event": "af_purchase", "id": "pi_1", "value": "59000", "currency": "KRW"},
            {"event": "af_refund", "id": "re_1", "value": "-10.5", "currency": "USD"},
            {"event": "lead", "id": None, "value": None, "currency": None},
        ],
        key=json.dumps,
    )
    assert all(r.headers["authentication"] == S2S_KEY for r in live.received)
    assert all(r.path == f"/inappevent/{ANDROID_APP}" for r in live.received)


@pytest.mark.parametrize(
    ("status", "body", "expected", "reason_part"),
    [
        (400, "Failed to Authenticate", Status.REJECT, "s2s_key"),
        (400, "appsflyer_id is a mandatory field", Status.REJECT, "mandatory"),
        (401, "Unauthorized", Status.REJECT, "S2S key of this app"),
        (403, "Forbidden", Status.REJECT, "Zero Package"),
        (404, "Not Found", Status.REJECT, "APPSFLYER_MOBILE_BASE_URL"),
        (429, "Too Many Requests", Status.RETRY, "429"),
        (500, "Internal Server Error", Status.RETRY, "Internal Server Error"),
        (503, None, Status.RETRY, "503"),
    ],
)
def test_http_statuses_over_the_wire(live: FakeAppsflyerMobile, session, status, body, expected, reason_part):
    live.fail_next(1, status, body)
    dest = destination(session, live.url)
    [outcome] = dest.send([prepared(make_event(), dest)])
    assert (outcome.status, outcome.http_status) == (expected, status)
    assert reason_part in outcome.reason
    assert S2S_KEY not in outcome.reason and AF_ID not in outcome.reason


def test_wrong_key_and_zero_package_from_the_fakes_own_rules(session):
    zero = FakeAppsflyerMobile(app_id=ANDROID_APP, s2s_key=S2S_KEY, zero_package=True).start()
    try:
        dest = destination(session, zero.url)
        [forbidden] = dest.send([prepared(make_event(), dest)])
        wrong = AppsflyerMobileDestination({"app_id": ANDROID_APP, "s2s_key": "nope"}, session, zero.url)
        [unauthorized] = wrong.send([prepared(make_event(), wrong)])
    finally:
        zero.stop()
    assert (forbidden.status, forbidden.http_status) == (Status.REJECT, 403)
    assert (unauthorized.status, unauthorized.http_status) == (Status.REJECT, 401)
    assert "nope" not in unauthorized.reason


def test_concurrency_bound(session):
    own = FakeAppsflyerMobile(app_id=ANDROID_APP, s2s_key=S2S_KEY).start()
    try:
        own.latency_seconds = 0.15
        dest = destination(session, own.url, max_workers=3)
        outcomes = dest.send([prepared(make_event(transaction_id=f"pi_{i}"), dest) for i in range(9)])
    finally:
        own.stop()
    assert [o.status for o in outcomes] == [Status.DELIVERED] * 9
    assert 1 < own.max_in_flight <= 3


def test_dropped_connection_is_an_ambiguous_retry(live: FakeAppsflyerMobile, session):
    counted: list[str] = []
    dest = AppsflyerMobileDestination(
        {"app_id": ANDROID_APP, "s2s_key": S2S_KEY},
        session,
        live.url,
        count=counted.append,
        clock=lambda: NOW,
        ambiguous_policy=AmbiguousPolicy.RETRY,
    )
    live.fail_next(1, None)
    [outcome] = dest.send([prepared(make_event(), dest)])
    assert outcome.status is Status.RETRY
    assert "ambiguous" in outcome.reason
    assert counted == ["AmbiguousRetry"]


def test_dropped_connection_is_dead_lettered_as_uncertain_by_default(live: FakeAppsflyerMobile, session):
    counted: list[str] = []
    dest = AppsflyerMobileDestination(
        {"app_id": ANDROID_APP, "s2s_key": S2S_KEY},
        session,
        live.url,
        count=counted.append,
        clock=lambda: NOW,
    )
    live.fail_next(1, None)
    [outcome] = dest.send([prepared(make_event(), dest)])
    assert (outcome.status, outcome.error_code) == (Status.REJECT, "uncertain")
    assert counted == ["AmbiguousDeadLettered"]


# -- the fake's own rules ----------------------------------------------------------------------------
VALID: dict[str, Any] = {
    "appsflyer_id": AF_ID,
    "eventName": "af_purchase",
    "eventValue": '{"af_revenue":"5","af_currency":"USD","af_order_id":"pi_1"}',
    "eventTime": "2026-03-02 12:30:45.123",
    "eventCurrency": "USD",
}


def post(fake: FakeAppsflyerMobile, body: Any, app_id: str = ANDROID_APP, key: str | None = S2S_KEY):
    data = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", **({"authentication": key} if key else {})}
    return requests.post(f"{fake.url}/inappevent/{app_id}", data=data, headers=headers, timeout=5)


def test_fake_accepts_a_valid_event(live: FakeAppsflyerMobile):
    response = post(live, VALID)
    assert (response.status_code, response.text) == (200, "OK")
    assert live.events == [VALID]


@pytest.mark.parametrize(
    ("body", "app_id", "key", "status", "text"),
    [
        (VALID, "com.other.app", S2S_KEY, 400, "Bad request"),
        (VALID, ANDROID_APP, None, 400, "Failed to Authenticate"),
        (VALID, ANDROID_APP, "wrong", 401, "Unauthorized"),
        (b"{", ANDROID_APP, S2S_KEY, 400, "Payload is missing or failed to parse"),
        ({k: v for k, v in VALID.items() if k != "appsflyer_id"}, ANDROID_APP, S2S_KEY, 400, "mandatory"),
        ({**VALID, "appsflyer_id": "123-456"}, ANDROID_APP, S2S_KEY, 400, "Bad request"),
        ({k: v for k, v in VALID.items() if k != "eventName"}, ANDROID_APP, S2S_KEY, 400, "Bad request"),
        ({k: v for k, v in VALID.items() if k != "eventValue"}, ANDROID_APP, S2S_KEY, 400, "Bad request"),
        ({**VALID, "eventValue": {"af_revenue": "5"}}, ANDROID_APP, S2S_KEY, 500, "Internal Server Error"),
        ({**VALID, "eventValue": "{not json"}, ANDROID_APP, S2S_KEY, 500, "Internal Server Error"),
        ({**VALID, "eventTime": "2026-03-02T12:30:45Z"}, ANDROID_APP, S2S_KEY, 400, "Bad request"),
        ({**VALID, "eventTime": "2026-02-30 12:30:45.123"}, ANDROID_APP, S2S_KEY, 400, "Bad request"),
        ({**VALID, "att": 4}, ANDROID_APP, S2S_KEY, 400, "Bad request"),
        ({**VALID, "eventCurrency": "usd"}, ANDROID_APP, S2S_KEY, 400, "Bad request"),
        ({k: v for k, v in VALID.items() if k != "eventCurrency"}, ANDROID_APP, S2S_KEY, 400, "Bad request"),
    ],
)
def test_fake_rules(live: FakeAppsflyerMobile, body, app_id, key, status, text):
    response = post(live, body, app_id, key)
    assert response.status_code == status
    assert text in response.text
    assert live.events == []


@pytest.mark.parametrize(("size", "status"), [(MAX_PAYLOAD_BYTES, 200), (MAX_PAYLOAD_BYTES + 1, 400)])
def test_fake_enforces_1_kb(live: FakeAppsflyerMobile, size: int, status: int):
    body = {**VALID, "custom_data": ""}
    body["custom_data"] = "x" * (size - len(json.dumps(body, separators=(",", ":")).encode()))
    assert post(live, body).status_code == status


def test_fake_answers_ok_to_a_bare_ios_app_id_and_records_nothing():
    fake = FakeAppsflyerMobile(app_id=IOS_APP, s2s_key=S2S_KEY).start()
    try:
        response = post(fake, VALID, app_id=IOS_APP.removeprefix("id"))
    finally:
        fake.stop()
    assert (response.status_code, response.text) == (200, "OK")
    assert fake.events == []
    assert fake.unrecorded == [VALID]
