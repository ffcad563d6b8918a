"""The fake-server base every fake destination builds on: inspection route, faults, recording."""

from __future__ import annotations

import pytest
import requests

from relay_local.fakes.base import FakeServer, Fault, Request, Response


class EchoFake(FakeServer):
    name = "echo"

    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict] = []

    def respond(self, request: Request) -> Response:
        self.events.append({"n": len(self.events), "secret": "never shown"})
        return Response(200, {"ok": True})

    def summarize(self, event: dict) -> dict:
        return {"n": event["n"]}


@pytest.fixture
def fake():
    server = EchoFake().start()
    yield server
    server.stop()


def test_received_route_shows_summaries_and_is_not_recorded_as_traffic(fake):
    requests.post(f"{fake.url}/x", json={}, timeout=5)
    answer = requests.get(f"{fake.url}/_received", timeout=5).json()
    assert answer == {"destination": "echo", "count": 1, "events": [{"n": 0}]}
    assert [r.path for r in fake.received] == ["/x"]


def test_fail_next_answers_the_fault_then_the_real_response(fake):
    fake.fail_next(1, 503, {"error": "down"})
    first = requests.post(f"{fake.url}/x", json={}, timeout=5)
    second = requests.post(f"{fake.url}/x", json={}, timeout=5)
    assert (first.status_code, second.status_code) == (503, 200)
    assert len(fake.received) == 2 and len(fake.accepted) == 1


def test_a_dropped_connection_is_a_connection_error(fake):
    fake.fail_next(1, None)
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{fake.url}/x", json={}, timeout=5)


def test_a_processed_fault_accepts_the_request_then_loses_the_answer(fake):
    # The ambiguous case: the destination recorded the event but the client never hears so.
    fake.fault_plan = lambda request: Fault(status=None, processed=True)
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{fake.url}/x", json={}, timeout=5)
    fake.fault_plan = None
    assert len(fake.accepted) == 1 and len(fake.events) == 1
    assert [fault.processed for _, fault in fake.faulted] == [True]


def test_an_unprocessed_fault_never_reaches_the_api(fake):
    fake.fail_next(1, None)
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{fake.url}/x", json={}, timeout=5)
    assert fake.accepted == [] and fake.events == []
