"""FakeMeta enforces Meta's batch rules, so destination tests against it mean something."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from relay_local.fakes.meta import FakeMeta

TOKEN = "fake-meta-token"
PIXEL = "42"
NOW = datetime(2026, 3, 2, 13, 0, 0, tzinfo=UTC)
HASH = hashlib.sha256(b"jane@example.com").hexdigest()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeMeta]:
    server = FakeMeta(access_token=TOKEN, pixel_id=PIXEL, clock=lambda: NOW).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _clean(fake: FakeMeta) -> None:
    fake.reset()


def event(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_name": "Subscribe",
        "event_time": int(NOW.timestamp()) - 60,
        "event_id": "e1",
        "action_source": "other",
        "user_data": {"em": [HASH]},
    }
    base.update(changes)
    return {key: value for key, value in base.items() if value is not None}


def post(fake: FakeMeta, body: Any, path: str = f"/v25.0/{PIXEL}/events", **kwargs: Any) -> requests.Response:
    return requests.post(fake.url + path, data=json.dumps(body), timeout=5, **kwargs)


def test_accepts_a_valid_batch(fake: FakeMeta):
    response = post(fake, {"data": [event(), event(event_id="e2")], "access_token": TOKEN})
    assert response.status_code == 200
    assert response.json()["events_received"] == 2
    assert [e["event_id"] for e in fake.events] == ["e1", "e2"]


def test_accepts_the_token_in_the_query_as_meta_does(fake: FakeMeta):
    response = post(fake, {"data": [event()]}, params={"access_token": TOKEN})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "code", "subcode"),
    [
        ({"data": [event()]}, 104, None),
        ({"data": [event()], "access_token": "wrong"}, 190, None),
        ({"data": [], "access_token": TOKEN}, 100, None),
        ({"data": [event()] * 1001, "access_token": TOKEN}, 100, None),
        ({"data": "nope", "access_token": TOKEN}, 100, None),
        ({"data": [event(event_name=None)], "access_token": TOKEN}, 100, None),
        ({"data": [event(action_source=None)], "access_token": TOKEN}, 100, None),
        ({"data": [event(action_source="fax")], "access_token": TOKEN}, 100, None),
        ({"data": [event(event_time="1700000000")], "access_token": TOKEN}, 100, None),
        ({"data": [event(user_data={})], "access_token": TOKEN}, 100, None),
        ({"data": [event(user_data={"em": [HASH.upper()]})], "access_token": TOKEN}, 100, None),
        ({"data": [event(user_data={"zp": "94105"})], "access_token": TOKEN}, 100, None),
        ({"data": [event(user_data={"country": []})], "access_token": TOKEN}, 100, None),
        (
            {
                "data": [event(action_source="website", user_data={"client_user_agent": "UA"})],
                "access_token": TOKEN,
            },
            100,
            None,
        ),
        (
            {"data": [event(event_name="Purchase", custom_data={"value": 1.0})], "access_token": TOKEN},
            100,
            2804009,
        ),
        (
            {
                "data": [event(), event(event_time=int((NOW - timedelta(days=7, seconds=1)).timestamp()))],
                "access_token": TOKEN,
            },
            100,
            2804003,
        ),
    ],
)
def test_rejects_the_whole_request(fake: FakeMeta, body: dict[str, Any], code: int, subcode: int | None):
    response = post(fake, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error.get("error_subcode")) == (code, subcode)
    assert error["fbtrace_id"]
    assert fake.events == []


@pytest.mark.parametrize("shape", [HASH, [HASH], [HASH, HASH]])
def test_hashed_fields_may_be_a_string_or_a_list(fake: FakeMeta, shape: Any):
    response = post(fake, {"data": [event(user_data={"external_id": shape})], "access_token": TOKEN})
    assert response.status_code == 200


def test_unknown_pixel_and_path(fake: FakeMeta):
    assert (
        post(fake, {"data": [event()], "access_token": TOKEN}, path="/v25.0/7/events").json()["error"][
            "error_subcode"
        ]
        == 33
    )
    assert post(fake, {}, path="/v25.0/42/other").json()["error"]["code"] == 2500


def test_throttle_next_answers_with_the_usage_header(fake: FakeMeta):
    fake.throttle_next(2, code=80004, regain_minutes=3)
    for _ in range(2):
        response = post(fake, {"data": [event()], "access_token": TOKEN})
        assert response.json()["error"]["code"] == 80004
        usage = json.loads(response.headers["X-Business-Use-Case-Usage"])
        assert usage["1234567890"][0]["estimated_time_to_regain_access"] == 3
    assert post(fake, {"data": [event()], "access_token": TOKEN}).status_code == 200


@pytest.mark.parametrize(
    ("action_source", "days", "status"),
    [("other", 8, 400), ("physical_store", 8, 200), ("physical_store", 61, 200), ("physical_store", 63, 400)],
)
def test_physical_store_events_may_be_62_days_old(fake: FakeMeta, action_source: str, days: int, status: int):
    old = int((NOW - timedelta(days=days)).timestamp())
    response = post(
        fake, {"data": [event(action_source=action_source, event_time=old)], "access_token": TOKEN}
    )
    assert response.status_code == status


def test_auth_error_next_answers_190_then_recovers(fake: FakeMeta):
    fake.auth_error_next(1)
    error = post(fake, {"data": [event()], "access_token": TOKEN}).json()["error"]
    assert (error["code"], error["error_subcode"]) == (190, 463)
    assert post(fake, {"data": [event()], "access_token": TOKEN}).status_code == 200


def test_transient_next_is_a_retryable_500(fake: FakeMeta):
    fake.transient_next(1)
    response = post(fake, {"data": [event()], "access_token": TOKEN})
    assert response.status_code == 500
    assert response.json()["error"]["is_transient"] is True
    assert fake.events == []


@pytest.mark.parametrize(
    ("proof", "accepted"),
    [
        (None, False),
        ("0" * 64, False),
        (hmac.new(b"s3cret", TOKEN.encode(), hashlib.sha256).hexdigest(), True),
    ],
)
def test_app_secret_requires_a_matching_appsecret_proof(proof: str | None, accepted: bool):
    server = FakeMeta(access_token=TOKEN, clock=lambda: NOW, app_secret="s3cret").start()
    try:
        body: dict[str, Any] = {"data": [event()], "access_token": TOKEN}
        if proof is not None:
            body["appsecret_proof"] = proof
        response = post(server, body)
        assert (response.status_code == 200) is accepted
        if not accepted:
            assert response.json()["error"]["code"] == 100
    finally:
        server.stop()
