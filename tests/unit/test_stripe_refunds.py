"""charge.refunded without its refund in the payload: which refund it reports, read from GET /v1/refunds.

Recent Stripe API versions send the Charge without `refunds`, and `amount_refunded` is cumulative, so a
second partial refund mapped from the payload alone would count the first one again.
"""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from conversion_relay.config import ConfigError
from conversion_relay.errors import ObjectNotFound, ProviderUnavailable
from conversion_relay.providers import get_provider, stripe
from conversion_relay.signatures import PayloadError
from relay_local.fakes.stripe_api import FakeStripeApi

BASE = "https://api.stripe.test"
KEY = "rk_test_refunds_read_only"
SECRET = {"webhook_secrets": ["whsec_test"], "api_key": KEY}
NO_KEY = {"webhook_secrets": ["whsec_test"]}
T0 = 1792700000


def refund(
    refund_id: str, amount: int, created: int, status: str = "succeeded", **extra: Any
) -> dict[str, Any]:
    return {
        "id": refund_id,
        "object": "refund",
        "amount": amount,
        "charge": "ch_1",
        "created": created,
        "currency": "usd",
        "metadata": {},
        "status": status,
        **extra,
    }


def refunded(
    cumulative: int,
    created: int = T0 + 500,
    *,
    amount: int = 5000,
    livemode: bool = False,
    previous: dict[str, Any] | None = None,
    **charge_fields: Any,
) -> dict[str, Any]:
    """A charge.refunded event as API versions since 2022-11-15 send it: no `refunds` on the charge."""
    data: dict[str, Any] = {
        "object": {
            "id": "ch_1",
            "object": "charge",
            "amount": amount,
            "amount_captured": amount,
            "amount_refunded": cumulative,
            "currency": "usd",
            "customer": "cus_1",
            "payment_intent": "pi_1",
            "billing_details": {"email": "jane@example.com", "name": "Jane Doe"},
            "livemode": livemode,
            "metadata": {"ga_client_id": "111.222"},
            "refunded": cumulative == amount,
            **charge_fields,
        }
    }
    if previous is not None:
        data["previous_attributes"] = previous
    return {
        "id": f"evt_{cumulative}_{created}",
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": created,
        "livemode": livemode,
        "type": "charge.refunded",
        "data": data,
    }


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    names: list[str] = []
    monkeypatch.setattr(stripe.metrics, "add_metric", lambda name, unit, value: names.append(name))
    return names


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv(stripe.BASE_URL_VARIABLE, BASE)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def serve(mock: responses.RequestsMock, refunds: list[dict[str, Any]]) -> None:
    """Answer GET /v1/refunds like Stripe: newest first, `limit`, `starting_after`, Bearer key."""

    def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return 401, {}, json.dumps({"error": {"type": "invalid_request_error", "message": "bad key"}})
        query = {k: v[0] for k, v in parse_qs(urlsplit(request.url or "").query).items()}
        ordered = sorted(refunds, key=lambda r: (r["created"], r["id"]), reverse=True)
        start = 0
        if "starting_after" in query:
            start = [r["id"] for r in ordered].index(query["starting_after"]) + 1
        limit = int(query["limit"])
        page = ordered[start : start + limit]
        more = start + limit < len(ordered)
        return 200, {}, json.dumps({"object": "list", "has_more": more, "data": page})

    mock.add_callback(responses.GET, f"{BASE}/v1/refunds", callback=answer)


def mapped(payload: dict[str, Any], secret: dict[str, Any] = SECRET) -> Any:
    (event,) = stripe.to_events(stripe.resolve(payload, secret, requests.Session()))
    return event


def queries(mock: responses.RequestsMock) -> list[dict[str, str]]:
    return [{k: v[0] for k, v in parse_qs(urlsplit(c.request.url).query).items()} for c in mock.calls]


# --- which refund the event reports ---------------------------------------------------------------------


TWO_PARTIALS = [refund("re_1", 300, T0 + 100), refund("re_2", 500, T0 + 200)]


@pytest.mark.parametrize(
    ("cumulative", "created", "refund_id", "value"),
    [
        (300, T0 + 101, "re_1", Decimal("3.00")),  # the first partial refund
        (800, T0 + 201, "re_2", Decimal("5.00")),  # the second: 5.00, not the cumulative 8.00
        (300, T0 + 900, "re_1", Decimal("3.00")),  # delivered late, after re_2 exists: still re_1
    ],
)
def test_each_partial_refund_is_found_by_its_running_total(
    api, counted, cumulative, created, refund_id, value
):
    serve(api, TWO_PARTIALS)
    event = mapped(refunded(cumulative, created))
    assert event.event_id == f"stripe:refund:{refund_id}"
    assert event.value == value and event.source.object_id == refund_id
    assert counted == []


def test_the_request_lists_the_charges_refunds_with_the_api_key(api):
    serve(api, TWO_PARTIALS)
    mapped(refunded(800))
    (call,) = api.calls
    assert call.request.headers["Authorization"] == f"Bearer {KEY}"
    assert urlsplit(call.request.url).path == "/v1/refunds"
    assert queries(api) == [{"charge": "ch_1", "limit": "100"}]


@pytest.mark.parametrize(
    ("first_status", "cumulative", "expected"),
    [
        ("failed", 500, "re_2"),  # a failed refund's amount went back: it is not in amount_refunded
        ("canceled", 500, "re_2"),
        ("pending", 800, "re_2"),  # pending and requires_action refunds are counted
        ("requires_action", 800, "re_2"),
        ("succeeded", 800, "re_2"),
    ],
)
def test_refund_statuses_that_count_toward_amount_refunded(api, counted, first_status, cumulative, expected):
    serve(api, [refund("re_1", 300, T0 + 100, first_status), refund("re_2", 500, T0 + 200)])
    assert mapped(refunded(cumulative)).event_id == f"stripe:refund:{expected}"
    assert counted == []


def test_refunds_in_the_same_second_are_ordered_by_id(api):
    serve(api, [refund("re_b", 500, T0 + 100), refund("re_a", 300, T0 + 100)])
    assert mapped(refunded(300)).event_id == "stripe:refund:re_a"
    assert mapped(refunded(800)).event_id == "stripe:refund:re_b"


def test_refund_metadata_and_time_come_from_the_listed_refund(api):
    serve(api, [refund("re_1", 300, T0 + 100, metadata={"ga_client_id": "refund-client"})])
    event = mapped(refunded(300))
    assert event.context.ga_client_id == "refund-client"
    assert int(event.occurred_at.timestamp()) == T0 + 100


def test_the_received_payload_is_not_changed(api):
    serve(api, TWO_PARTIALS)
    payload = refunded(800)
    before = copy.deepcopy(payload)
    resolved = stripe.resolve(payload, SECRET, requests.Session())
    assert payload == before
    assert resolved["data"]["object"]["refunds"]["data"] == [TWO_PARTIALS[1]]


# --- pagination -----------------------------------------------------------------------------------------


def test_pages_are_followed_with_starting_after(api):
    many = [refund(f"re_{i:03d}", 10, T0 + i) for i in range(150)]
    serve(api, many)
    event = mapped(refunded(10 * 120, T0 + 1000, amount=10_000))
    assert event.event_id == "stripe:refund:re_119"
    pages = queries(api)
    assert len(pages) == 2
    assert pages[1]["starting_after"] == "re_050"  # the oldest of the first (newest-first) page


def test_pages_are_bounded_and_an_unfinished_list_is_matched_inexactly(api, counted):
    serve(api, [refund(f"re_{i:04d}", 1, T0 + i) for i in range(1100)])  # 11 pages of 100
    event = mapped(refunded(1100, T0 + 2000, amount=2000))
    assert len(api.calls) == stripe._MAX_REFUND_PAGES
    assert event.event_id == "stripe:refund:re_1099"  # newest refund created at or before the event
    assert counted == [stripe.REFUND_INEXACT_METRIC]


# --- no exact match -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("refunds", "cumulative", "created", "expected"),
    [
        # re_1 was pending when the event for re_2 was sent, and failed since.
        ([refund("re_1", 300, T0 + 100, "failed"), refund("re_2", 500, T0 + 200)], 800, T0 + 201, "re_2"),
        # The event for re_1 itself, delivered again after re_1 failed.
        ([refund("re_1", 300, T0 + 100, "failed"), refund("re_2", 500, T0 + 200)], 300, T0 + 101, "re_1"),
    ],
)
def test_without_an_exact_total_the_newest_refund_before_the_event_is_taken(
    api, counted, refunds, cumulative, created, expected
):
    serve(api, refunds)
    assert mapped(refunded(cumulative, created)).event_id == f"stripe:refund:{expected}"
    assert counted == [stripe.REFUND_INEXACT_METRIC]


def test_a_list_that_lacks_the_events_refund_yet_is_retried(api):
    serve(api, [refund("re_1", 300, T0 + 100)])  # re_2 not listed yet
    with pytest.raises(ProviderUnavailable, match="does not list the refund"):
        stripe.resolve(refunded(800, T0 + 201), SECRET, requests.Session())


# --- when the API is not asked --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        refunded(800, refunds={"data": [refund("re_2", 500, T0 + 200)]}),
        refunded(800, previous={"amount_refunded": 300}),
        refunded(0),
        {**refunded(800), "type": "charge.succeeded"},
    ],
    ids=["refunds-in-payload", "previous-attributes", "nothing-refunded", "other-type"],
)
def test_the_api_is_not_read_when_the_payload_suffices(api, payload):
    assert stripe.resolve(payload, SECRET, requests.Session()) == payload
    assert len(api.calls) == 0


def test_without_api_key_a_partial_refund_keeps_the_cumulative_fallback_and_is_counted(api, counted):
    event = mapped(refunded(800), NO_KEY)
    assert event.value == Decimal("8.00") and event.event_id == "stripe:refund:ch_1:800"
    assert counted == [stripe.REFUND_AMBIGUOUS_METRIC]
    assert len(api.calls) == 0


@pytest.mark.parametrize(
    ("charge_fields", "cumulative", "ambiguous"),
    [
        ({}, 5000, False),  # fully refunded: usually one refund of everything
        ({"amount_captured": 4000}, 4000, False),  # all that was captured is refunded
        ({"amount_captured": 4000}, 3000, True),
        ({"amount_captured": None}, 3000, True),  # falls back to `amount`
    ],
)
def test_which_fallbacks_are_counted_as_ambiguous(api, counted, charge_fields, cumulative, ambiguous):
    mapped(refunded(cumulative, **charge_fields), NO_KEY)
    assert counted == ([stripe.REFUND_AMBIGUOUS_METRIC] if ambiguous else [])


@pytest.mark.parametrize(("key", "livemode"), [("rk_live_abc", False), ("sk_test_abc", True)])
def test_a_key_of_the_other_mode_is_not_used(api, counted, key, livemode):
    event = mapped(refunded(800, livemode=livemode), {**NO_KEY, "api_key": key})
    assert event.event_id == "stripe:refund:ch_1:800"
    assert counted == [stripe.REFUND_AMBIGUOUS_METRIC]
    assert len(api.calls) == 0


def test_the_ambiguous_warning_names_no_personal_data(api, caplog):
    mapped(refunded(800), NO_KEY)
    assert "partial refund" in caplog.text
    assert "jane@example.com" not in caplog.text and "Jane" not in caplog.text


@pytest.mark.parametrize(("value", "expected"), [(None, None), ("", None), ("  ", None), (" rk_x ", "rk_x")])
def test_api_key_is_optional(value, expected):
    assert stripe.api_key({"api_key": value}) == expected


@pytest.mark.parametrize("value", [123, ["rk_x"], {"key": "rk_x"}])
def test_api_key_of_the_wrong_type_is_a_config_error(value):
    with pytest.raises(ConfigError, match="api_key"):
        stripe.api_key({"api_key": value})


# --- API failures ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ({"status": 401, "json": {"error": {"message": "Invalid API Key provided"}}}, ConfigError),
        ({"status": 403, "json": {"error": {"type": "invalid_request_error"}}}, ConfigError),
        ({"status": 404, "json": {"error": {"code": "resource_missing"}}}, ObjectNotFound),
        ({"status": 400, "json": {"error": {"code": "resource_missing"}}}, PayloadError),
        ({"status": 429, "json": {}}, ProviderUnavailable),
        ({"status": 500, "json": {}}, ProviderUnavailable),
        ({"status": 200, "body": "not json"}, ProviderUnavailable),
        ({"status": 200, "json": {"object": "list"}}, ProviderUnavailable),  # no data list
        ({"body": requests.ConnectionError("down")}, ProviderUnavailable),
        ({"body": requests.Timeout("slow")}, ProviderUnavailable),
    ],
)
def test_api_failures_are_classified(api, answer, error):
    api.get(f"{BASE}/v1/refunds", **answer)
    with pytest.raises(error) as raised:
        stripe.resolve(refunded(800), SECRET, requests.Session())
    assert KEY not in str(raised.value) and "ch_1" not in str(raised.value)


def test_a_refused_key_names_the_field_to_fix(api):
    api.get(f"{BASE}/v1/refunds", status=401, json={"error": {}})
    with pytest.raises(ConfigError, match=r"api_key.*Refunds: Read"):
        stripe.resolve(refunded(800), SECRET, requests.Session())


def test_the_registered_provider_resolves(api):
    serve(api, TWO_PARTIALS)
    provider = get_provider("stripe")
    resolved = provider.resolve(refunded(800), {}, SECRET, requests.Session())  # type: ignore[attr-defined]
    assert provider.to_events(resolved)[0].event_id == "stripe:refund:re_2"


# --- the fake Stripe API the local stack and the integration tests use ----------------------------------


@pytest.fixture
def fake() -> Any:
    server = FakeStripeApi(api_key=KEY).start()
    yield server
    server.stop()


def _list(fake: FakeStripeApi, key: str = KEY, **params: str) -> requests.Response:
    return requests.get(
        f"{fake.url}/v1/refunds", params=params, headers={"Authorization": f"Bearer {key}"}, timeout=5
    )


def test_fake_refuses_a_wrong_key_and_an_unknown_charge_with_stripes_envelope(fake):
    fake.put_refund(refund("re_1", 300, T0))
    wrong = _list(fake, "rk_test_other", charge="ch_1")
    unknown = _list(fake, charge="ch_unknown")
    assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "invalid_request_error"
    assert unknown.status_code == 404
    assert unknown.json()["error"] | {"doc_url": None} == {
        "type": "invalid_request_error",
        "code": "resource_missing",
        "param": "charge",
        "message": "No such charge: 'ch_unknown'",
        "doc_url": None,
    }


def test_fake_lists_newest_first_in_pages(fake):
    for i in range(5):
        fake.put_refund(refund(f"re_{i}", 100, T0 + i))
    fake.put_charge("ch_empty")
    first = _list(fake, charge="ch_1", limit="2").json()
    second = _list(fake, charge="ch_1", limit="2", starting_after="re_3").json()
    last = _list(fake, charge="ch_1", limit="2", starting_after="re_1").json()
    assert [r["id"] for r in first["data"]] == ["re_4", "re_3"] and first["has_more"] is True
    assert [r["id"] for r in second["data"]] == ["re_2", "re_1"] and second["has_more"] is True
    assert [r["id"] for r in last["data"]] == ["re_0"] and last["has_more"] is False
    assert _list(fake, charge="ch_empty").json()["data"] == []


def test_resolve_against_the_fake(fake, monkeypatch):
    monkeypatch.setenv(stripe.BASE_URL_VARIABLE, fake.url)
    for item in TWO_PARTIALS:
        fake.put_refund(item)
    (event,) = stripe.to_events(stripe.resolve(refunded(800), SECRET, requests.Session()))
    assert event.event_id == "stripe:refund:re_2" and event.value == Decimal("5.00")
