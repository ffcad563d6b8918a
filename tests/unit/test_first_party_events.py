"""POST /events: the schema file, the validator held to `jsonschema`, all-or-nothing errors, the mapping."""

from __future__ import annotations

import copy
import json
import time
from dataclasses import fields
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from conversion_relay import model
from conversion_relay.config import ConfigError
from conversion_relay.errors import EventsInvalid, UnknownProvider
from conversion_relay.providers import first_party, first_party_provider, get_provider, standard_webhooks
from conversion_relay.signatures import PayloadError, SignatureError

ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def event(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "order-1001",
        "name": "purchase",
        "occurred_at": "2026-01-02T14:46:59+09:00",
        "value": "59000",
        "currency": "KRW",
        "transaction_id": "order-1001",
        "items": [{"id": "sku-1", "name": "Premium", "price": "59000", "quantity": 1}],
        "person": {"email": "minsu@example.com", "external_id": "u_1001"},
        "context": {"ga_client_id": "111.222", "fbp": "fb.1.2.3"},
        "consent": {"ad_user_data": True, "ad_personalization": False},
        "properties": {"channel": "store", "visits": 3},
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def body(*events: dict[str, Any]) -> bytes:
    return json.dumps({"events": list(events)}, ensure_ascii=False).encode()


def test_the_published_schema_is_the_shipped_one():
    assert json.loads((ROOT / "events.schema.json").read_text("utf-8")) == first_party.schema()


def test_the_schema_is_valid_json_schema_2020_12():
    jsonschema.Draft202012Validator.check_schema(first_party.schema())


def test_the_validator_supports_every_keyword_the_schema_uses():
    def walk(node: Any) -> set[str]:
        if isinstance(node, list):
            return set().union(*(walk(n) for n in node)) if node else set()
        if not isinstance(node, dict):
            return set()
        found = set()
        for key, value in node.items():
            if key in ("properties", "$defs", "dependentRequired"):
                found.add(key)
                for child in value.values():
                    found |= walk(child)
            else:
                found.add(key)
                found |= walk(value)
        return found

    assert walk(first_party.schema()) <= first_party._SUPPORTED_KEYWORDS


@pytest.mark.parametrize(
    ("section", "kind"),
    [("person", model.Person), ("context", model.Context), ("consent", model.Consent)],
)
def test_schema_sections_promise_only_model_fields(section, kind):
    declared = set(first_party.schema()["$defs"]["event"]["properties"][section]["properties"])
    assert declared <= {f.name for f in fields(kind)}


def test_not_a_webhook_provider():
    assert first_party_provider() is first_party.PROVIDER
    with pytest.raises(UnknownProvider):
        get_provider("events")


# --- validation -------------------------------------------------------------------------------------

INVALID = {
    "no-events-key": ({"event": []}, [("$.events", "is required"), ("$.event", "is not a known field")]),
    "empty-list": ({"events": []}, [("events", "must hold at least 1 item(s)")]),
    "missing-name": ({"events": [event(name=None)]}, [("events[0].name", "is required")]),
    "bad-name": (
        {"events": [event(name="Purchase!")]},
        [("events[0].name", "must match ^[a-z][a-z0-9_]{0,39}$")],
    ),
    "value-without-currency": (
        {"events": [event(currency=None)]},
        [("events[0].currency", "is required when value is present")],
    ),
    "negative-value": ({"events": [event(value=-1)]}, [("events[0].value", "must be at least 0")]),
    "value-not-a-number": (
        {"events": [event(value="12,50")]},
        [("events[0].value", "must match ^[0-9]{1,15}(\\.[0-9]{1,6})?$")],
    ),
    "naive-time": ({"events": [event(occurred_at="2026-01-02T14:46:59")]}, None),
    "unknown-field": ({"events": [event(colour="red")]}, [("events[0].colour", "is not a known field")]),
    "unknown-person-field": (
        {"events": [event(person={"mail": "x"})]},
        [("events[0].person.mail", "is not a known field")],
    ),
    "email-not-string": (
        {"events": [event(person={"email": 5})]},
        [("events[0].person.email", "must be a string")],
    ),
    "quantity-zero": (
        {"events": [event(items=[{"id": "a", "quantity": 0}])]},
        [("events[0].items[0].quantity", "must be at least 1")],
    ),
    "consent-not-bool": (
        {"events": [event(consent={"ad_user_data": "yes"})]},
        [("events[0].consent.ad_user_data", "must be a boolean")],
    ),
    "too-many": (
        {"events": [event(event_id=f"e{i}") for i in range(101)]},
        [("events", "must hold at most 100 items")],
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_documents_are_invalid_for_jsonschema_too(case):
    document, expected = INVALID[case]
    errors = first_party.validate(document, now=time.time())
    assert errors, case
    oracle = jsonschema.Draft202012Validator(first_party.schema(), format_checker=jsonschema.FormatChecker())
    assert (
        list(oracle.iter_errors(document)) or case == "naive-time"
    )  # jsonschema's date-time needs rfc3339-validator
    if expected is not None:
        assert [(e["path"], e["reason"]) for e in errors] == [(p.removeprefix("$."), r) for p, r in expected]


@pytest.mark.parametrize(
    "document",
    [
        {"events": [event()]},
        {"events": [event(), event(event_id="r-1", name="refund", value=12.5, currency="usd")]},
        {"events": [{"event_id": "offline-1", "name": "store_visit", "occurred_at": "2026-01-02T05:00:00Z"}]},
        {"events": [event(livemode=False, value=0, tax="0.10", shipping=3)]},
    ],
    ids=["one", "two", "minimal-custom", "test-mode"],
)
def test_valid_documents_are_valid_for_both(document):
    assert first_party.validate(document, now=time.time()) == []
    jsonschema.Draft202012Validator(first_party.schema()).validate(document)


def test_every_invalid_event_is_reported_with_its_index():
    document = {
        "events": [
            event(event_id="ok-1"),
            event(event_id="bad-1", currency=None),
            event(event_id="bad-2", name=""),
        ]
    }
    with pytest.raises(EventsInvalid) as caught:
        first_party.parse(json.dumps(document).encode())
    error = caught.value
    assert error.status == 400 and "2 of 3" in error.reason and "nothing was enqueued" in error.reason
    assert [(e["index"], e["path"]) for e in error.errors] == [
        (1, "events[1].currency"),
        (2, "events[2].name"),
    ]


def test_duplicate_event_ids_in_one_request():
    errors = first_party.validate({"events": [event(), event()]})
    assert errors == [
        {"index": 1, "path": "events[1].event_id", "reason": "repeats the event_id of events[0]"}
    ]


def test_future_events_are_refused():
    errors = first_party.validate({"events": [event(occurred_at="2099-01-01T00:00:00Z")]})
    assert errors[0]["path"] == "events[0].occurred_at" and errors[0]["reason"] == "is in the future"


def test_reasons_never_echo_values():
    document = {"events": [event(person={"email": ["minsu@example.com"]})]}
    (error,) = first_party.validate(document)
    assert "minsu" not in json.dumps(error)


def test_not_json_is_a_payload_error():
    with pytest.raises(PayloadError):
        first_party.parse(b"{")


# --- verification and mapping -----------------------------------------------------------------------


def test_signed_with_standard_webhooks():
    raw = body(event())
    headers = standard_webhooks.sign_headers(SECRET, "msg_1", int(time.time()), raw)
    first_party.PROVIDER.verify_request(headers, raw, {"signing_secrets": [SECRET]}, 300)
    with pytest.raises(SignatureError):
        first_party.PROVIDER.verify_request(headers, raw + b" ", {"signing_secrets": [SECRET]}, 300)
    with pytest.raises(ConfigError):
        first_party.PROVIDER.verify_request(headers, raw, {}, 300)


@pytest.mark.parametrize(
    ("value", "currency", "expected"), [("59000", "KRW", Decimal("59000")), (19.99, "usd", Decimal("19.99"))]
)
def test_events_map_to_canonical_events(value, currency, expected):
    raw = body(
        event(value=value, currency=currency),
        event(event_id="r-1", name="refund", value="100", currency="KRW"),
    )
    payload = first_party.resolve(first_party.parse(raw), {"webhook-id": "msg_7"})
    purchase, refund = first_party.to_events(payload)
    assert first_party.delivery_id(payload) == "msg_7"
    assert (
        purchase.event_id == "order-1001"
        and purchase.value == expected
        and purchase.currency == currency.upper()
    )
    assert purchase.source.provider == "events" and purchase.source.event_id == "msg_7"
    assert purchase.context.ga_client_id == "111.222" and purchase.person.email == "minsu@example.com"
    assert purchase.properties == {"channel": "store", "visits": "3"}
    assert purchase.items[0].price == Decimal("59000")
    assert refund.name == "refund" and refund.value == Decimal("100")


def test_livemode_false_marks_a_test_event():
    payload = first_party.resolve(first_party.parse(body(event(livemode=False))), {"webhook-id": "m"})
    assert first_party.to_events(payload)[0].livemode is False


def test_parse_does_not_mutate_into_floats():
    document = first_party.parse(body(event(value=0.1)))
    assert isinstance(document["events"][0]["value"], Decimal)
    assert copy.deepcopy(document) == document


# --- browser cookies --------------------------------------------------------------------------------

GA = "GA1.1.1863538960.1718975654"
GA_SESSION = "GS2.1.s1744094510$o3$g1$t1744094561$j0$l0$h0"
FBP = "fb.1.1718975655048.519782181988016639"
FBC = "fb.1.1718975655048.IwAR2xAbC"
AF = "ce18733b-0c78-451f-9579-c6300baa97db-p"
COOKIE_HEADER = (
    f"session=s3cr3t-session-token; _ga={GA}; _ga_ABC123XYZ={GA_SESSION}; "
    f"_fbp={FBP}; _fbc={FBC}; afUserId={AF}"
)


def events_of(*events: dict[str, Any]) -> list[model.ConversionEvent]:
    payload = first_party.resolve(first_party.parse(body(*events)), {"webhook-id": "msg_c"})
    return first_party.to_events(payload)


def test_cookies_fill_every_identifier():
    (built,) = events_of(event(context=None, cookies=COOKIE_HEADER))
    context = built.context
    assert (context.ga_client_id, context.ga_session_id) == ("1863538960.1718975654", "1744094510")
    assert (context.fbp, context.fbc, context.af_user_id) == (FBP, FBC, AF)


def test_explicit_context_fields_win_over_cookies():
    explicit = {"ga_client_id": "111.222", "fbp": "fb.1.2.3", "af_user_id": "explicit-af"}
    (built,) = events_of(event(context=explicit, cookies=COOKIE_HEADER))
    context = built.context
    assert (context.ga_client_id, context.fbp, context.af_user_id) == ("111.222", "fb.1.2.3", "explicit-af")
    assert (context.ga_session_id, context.fbc) == ("1744094510", FBC)  # what was left empty is filled


def test_fbclid_in_the_landing_url_is_stamped_with_the_event_time():
    context = {"event_source_url": "https://shop.example/checkout?fbclid=IwAR9zz"}
    first, again = (events_of(event(context=context, cookies="_ga=" + GA))[0] for _ in range(2))
    occurred_ms = int(first.occurred_at.timestamp() * 1000)
    assert first.context.fbc == again.context.fbc == f"fb.1.{occurred_ms}.IwAR9zz"


def test_garbage_cookies_are_ignored_and_counted_once(monkeypatch):
    counted: list[str] = []
    monkeypatch.setattr(
        "conversion_relay.cookies.metrics.add_metric", lambda name, unit, value: counted.append(name)
    )
    (built,) = events_of(event(context=None, cookies="_ga=nonsense; _fbp=fb.x; ;;=; \x00=\x01; afUserId=?"))
    assert (built.context.ga_client_id, built.context.fbp, built.context.af_user_id) == (None, None, None)
    # parse() builds each event once to validate it: that build must not count the cookies again.
    assert counted == ["CookieUnparseable_ga", "CookieUnparseable_fbp", "CookieUnparseable_afUserId"]


def test_the_raw_cookie_header_never_reaches_the_event():
    (built,) = events_of(event(cookies=COOKIE_HEADER))
    text = built.to_json()
    assert "s3cr3t-session-token" not in text and "session=" not in text and "cookies" not in text
    assert model.ConversionEvent.from_json(text) == built


@pytest.mark.parametrize(
    ("cookies", "problems"),
    [
        (COOKIE_HEADER, []),
        ("", []),
        ("x" * 8192, []),
        ("x" * 8193, [("events[0].cookies", "must be at most 8192 characters")]),
        (5, [("events[0].cookies", "must be a string")]),
        ({"_ga": GA}, [("events[0].cookies", "must be a string")]),
    ],
    ids=["header", "empty", "longest", "too-long", "number", "object"],
)
def test_schema_takes_cookies_as_one_string(cookies, problems):
    document = {"events": [event(cookies=cookies)]}
    errors = first_party.validate(document, now=time.time())
    assert [(e["path"], e["reason"]) for e in errors] == problems
    oracle = jsonschema.Draft202012Validator(first_party.schema())
    assert oracle.is_valid(document) == (not problems)
    if problems:
        with pytest.raises(EventsInvalid):
            first_party.parse(json.dumps(document).encode())
