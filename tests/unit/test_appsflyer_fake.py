"""FakeAppsflyer enforces the documented Web S2S rules: if it is lax, the destination tests prove nothing."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from relay_local.fakes.appsflyer import FakeAppsflyer

BUNDLE = "test-bundle"
DEV_KEY = "test-web-dev-key"
VALID: dict[str, Any] = {
    "customerUserId": "cuid-1",
    "webDevKey": DEV_KEY,
    "eventType": "EVENT",
    "eventName": "af_purchase",
    "timestamp": 1772454645123,
    "eventRevenue": 12.5,
    "eventRevenueCurrency": "USD",
    "eventValue": {"af_order_id": "pi_1"},
}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeAppsflyer]:
    fake = FakeAppsflyer(bundle_id=BUNDLE, web_dev_key=DEV_KEY).start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(server: FakeAppsflyer) -> FakeAppsflyer:
    server.reset()
    return server


def post(fake: FakeAppsflyer, body: Any, path: str = f"/v1/{BUNDLE}/event") -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    return requests.post(fake.url + path, data=data, headers={"Content-Type": "application/json"}, timeout=5)


def without(key: str) -> dict[str, Any]:
    return {k: v for k, v in VALID.items() if k != key}


def test_valid_event_is_accepted_and_recorded(fake: FakeAppsflyer):
    response = post(fake, VALID)
    assert response.status_code == 200
    assert response.json()["status"] == "OK"
    assert fake.events == [VALID]
    assert fake.truncated == []


@pytest.mark.parametrize(
    ("body", "path", "status"),
    [
        (VALID, "/v1/other-bundle/event", 404),
        (VALID, f"/v1/{BUNDLE}/unknown", 404),
        ({**VALID, "webDevKey": "wrong"}, None, 401),
        (without("webDevKey"), None, 401),
        (b'{"customerUserId": ', None, 400),
        (b"[1, 2]", None, 400),
        (without("customerUserId"), None, 400),
        ({**without("customerUserId"), "afUserId": ""}, None, 400),
        ({**VALID, "eventType": "event"}, None, 400),
        (without("eventType"), None, 400),
        (without("eventName"), None, 400),
        (without("eventRevenueCurrency"), None, 400),
        (without("eventRevenue"), None, 400),
        ({**VALID, "eventRevenue": "12.5"}, None, 400),
        ({**VALID, "timestamp": "1772454645123"}, None, 400),
        ({**VALID, "eventValue": {"af_quantity": 2}}, None, 400),
        ({**VALID, "eventValue": "af_order_id=pi_1"}, None, 400),
    ],
)
def test_rule_violations_are_refused(fake: FakeAppsflyer, body: Any, path: str | None, status: int):
    response = post(fake, body, path or f"/v1/{BUNDLE}/event")
    assert response.status_code == status
    assert fake.events == []


def test_malformed_json_gets_appsflyers_error_shape(fake: FakeAppsflyer):
    response = post(fake, b"{not json")
    assert response.status_code == 400
    body = response.json()
    assert body["message"] == "Bad Request"
    assert body["status"] == 400
    assert body["error"]


def test_af_user_id_alone_is_enough(fake: FakeAppsflyer):
    assert post(fake, {**without("customerUserId"), "afUserId": "af-1"}).status_code == 200


def test_event_without_revenue_fields_is_accepted(fake: FakeAppsflyer):
    body = {k: v for k, v in VALID.items() if k not in {"eventRevenue", "eventRevenueCurrency"}}
    assert post(fake, body).status_code == 200


def _body_of_size(size: int) -> bytes:
    filler = {**VALID, "referrer": ""}
    base = len(json.dumps(filler, separators=(",", ":")).encode())
    body = json.dumps({**VALID, "referrer": "r" * (size - base)}, separators=(",", ":")).encode()
    assert len(body) == size
    return body


@pytest.mark.parametrize(("size", "status"), [(1023, 200), (1024, 200), (1025, 400)])
def test_body_size_boundary(fake: FakeAppsflyer, size: int, status: int):
    assert post(fake, _body_of_size(size)).status_code == status


@pytest.mark.parametrize(("chars", "truncated"), [(1000, False), (1001, True)])
def test_event_value_over_1000_characters_is_accepted_but_recorded_as_truncated(chars: int, truncated: bool):
    # Only reachable with a larger body limit: 1,000 characters plus the mandatory fields exceed 1 KB.
    fake = FakeAppsflyer(bundle_id=BUNDLE, web_dev_key=DEV_KEY, max_body_bytes=4096).start()
    try:
        event_value = {"k": "v" * (chars - len('{"k":""}'))}
        response = post(fake, {**VALID, "eventValue": event_value})
    finally:
        fake.stop()
    assert response.status_code == 200
    assert len(fake.events) == 1
    assert (fake.truncated == fake.events) is truncated


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"customerUserId": "c", "afUserId": "a", "webDevKey": DEV_KEY}, 200),
        ({"customerUserId": "c", "webDevKey": DEV_KEY}, 400),
        ({"afUserId": "a", "webDevKey": DEV_KEY}, 400),
        ({"customerUserId": "c", "afUserId": "a", "webDevKey": "wrong"}, 401),
    ],
)
def test_setcuid(fake: FakeAppsflyer, body: dict[str, Any], status: int):
    response = post(fake, body, f"/v1/{BUNDLE}/setcuid")
    assert response.status_code == status
    assert fake.cuid_links == ([body] if status == 200 else [])
    if status == 200:
        assert response.json()["status"] == "Success"
    assert fake.events == []


def test_high_water_mark_counts_overlapping_requests():
    fake = FakeAppsflyer(bundle_id=BUNDLE, web_dev_key=DEV_KEY).start()
    fake.latency_seconds = 0.3
    barrier = threading.Barrier(3)
    statuses: list[int] = []

    def client() -> None:
        barrier.wait()
        statuses.append(post(fake, VALID).status_code)

    threads = [threading.Thread(target=client) for _ in range(3)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert statuses == [200, 200, 200]
        assert fake.max_in_flight == 3
        assert fake.in_flight == 0
    finally:
        fake.stop()


def test_high_water_mark_of_sequential_requests_is_one():
    fake = FakeAppsflyer(bundle_id=BUNDLE, web_dev_key=DEV_KEY).start()
    try:
        with requests.Session() as session:  # one kept-alive connection, reused
            for _ in range(3):
                session.post(fake.url + f"/v1/{BUNDLE}/event", json=VALID, timeout=5)
            session.post(fake.url + f"/v1/{BUNDLE}/event", data=b"{", timeout=5)
        assert fake.max_in_flight == 1
        assert fake.in_flight == 0
    finally:
        fake.stop()
