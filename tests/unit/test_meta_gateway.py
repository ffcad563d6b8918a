"""Meta Conversions API Gateway route: configuration, routes per mode and filter, 202 vs the rest,
independent retries with no double send, and the fake gateway itself."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import requests

from conversion_relay.config import ConfigError
from conversion_relay.destinations.base import Outcome, Prepared, Status
from conversion_relay.destinations.meta import (
    GATEWAY,
    GRAPH,
    DynamoRouteLedger,
    MetaDestination,
    MetaOptions,
    classify_gateway_response,
)
from conversion_relay.model import PURCHASE, SUBSCRIPTION_RENEWAL, Context, ConversionEvent, Person, Source
from relay_local.fakes.meta import FakeMeta
from relay_local.fakes.meta_gateway import FakeMetaGateway

PIXEL_ID = "1234567890"
ACCESS_TOKEN = "EAAB-meta-test-token-do-not-log"
ACCESS_KEY = "capig-access-key-do-not-log"
NOW = datetime(2026, 3, 2, 13, 0, 0, tzinfo=UTC)
URL = "https://shop.example.com/checkout/success"
UA = "Mozilla/5.0 (X11; Linux x86_64)"


class MemoryRouteLedger:
    def __init__(self, *, fail_lookup: bool = False, fail_write: bool = False) -> None:
        self.delivered_ids: dict[str, set[str]] = {GRAPH: set(), GATEWAY: set()}
        self.fail_lookup = fail_lookup
        self.fail_write = fail_write

    def delivered(self, route: str, event_ids: Iterable[str]) -> set[str]:
        if self.fail_lookup:
            raise RuntimeError("dynamodb down")
        return self.delivered_ids[route] & set(event_ids)

    def mark_delivered(self, route: str, event_ids: Iterable[str]) -> None:
        if self.fail_write:
            raise RuntimeError("dynamodb down")
        self.delivered_ids[route].update(event_ids)


def make_event(**overrides: Any) -> ConversionEvent:
    base = ConversionEvent(
        event_id="stripe:purchase:cs_1",
        name=PURCHASE,
        occurred_at=datetime(2026, 3, 2, 12, 30, tzinfo=UTC),
        source=Source("stripe", "evt_1", "checkout.session.completed", "cs_1"),
        value=Decimal("10"),
        currency="USD",
        person=Person(email="jane@example.com"),
        context=Context(event_source_url=URL, client_user_agent=UA),
    )
    return dataclasses.replace(base, **overrides)


@pytest.fixture(scope="module")
def graph() -> Iterator[FakeMeta]:
    server = FakeMeta(access_token=ACCESS_TOKEN, clock=lambda: NOW).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway() -> Iterator[FakeMetaGateway]:
    server = FakeMetaGateway(access_key=ACCESS_KEY).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _clean(graph: FakeMeta, gateway: FakeMetaGateway) -> None:
    graph.reset()
    gateway.reset()


def build(
    session: requests.Session,
    graph: FakeMeta,
    gateway: FakeMetaGateway,
    *,
    mode: str = "both",
    when: dict[str, Any] | None = None,
    ledger: MemoryRouteLedger | None = None,
    **kwargs: Any,
) -> MetaDestination:
    gateway_config: dict[str, Any] = {"url": gateway.url, "access_key": ACCESS_KEY, "mode": mode}
    if when is not None:
        gateway_config["when"] = when
    credentials = {"pixel_id": PIXEL_ID, "access_token": ACCESS_TOKEN, "gateway": gateway_config}
    return MetaDestination(
        credentials,
        session,
        graph.url,
        clock=lambda: NOW,
        route_ledger=ledger if ledger is not None else MemoryRouteLedger(),
        **kwargs,
    )


def prepare_all(dest: MetaDestination, events: list[ConversionEvent]) -> list[Prepared]:
    prepared = [dest.prepare(event) for event in events]
    assert all(isinstance(p, Prepared) for p in prepared), prepared
    return prepared  # type: ignore[return-value]


def ids(events: list[dict[str, Any]]) -> list[str]:
    return [event["event_id"] for event in events]


# -- routes --------------------------------------------------------------------------------------------
def test_both_sends_one_copy_each_with_the_documented_body(session, graph, gateway):
    dest = build(session, graph, gateway)
    (item,) = prepare_all(dest, [make_event()])
    assert dest.send([item]) == [Outcome.delivered(200)]
    assert ids(graph.events) == ids(gateway.events) == ["stripe:purchase:cs_1"]
    (request,) = gateway.received
    assert request.path == f"/capi/{PIXEL_ID}/events"
    assert request.json() == {"accessKey": ACCESS_KEY, "data": [item.payload]}
    assert request.query == {}
    assert graph.events[0]["event_id"] == gateway.events[0]["event_id"]  # what lets Meta deduplicate them


def test_gateway_only_never_calls_the_graph_api(session, graph, gateway):
    dest = build(session, graph, gateway, mode="gateway_only", ledger=MemoryRouteLedger(fail_lookup=True))
    batch = prepare_all(dest, [make_event(event_id=f"e{i}") for i in range(3)])
    assert dest.send(batch) == [Outcome.delivered(202)] * 3
    assert graph.received == []
    assert ids(gateway.events) == ["e0", "e1", "e2"]
    assert len(gateway.received) == 1  # one batch, and the route ledger is never needed


def test_without_a_gateway_nothing_changes(session, graph, gateway):
    dest = MetaDestination(
        {"pixel_id": PIXEL_ID, "access_token": ACCESS_TOKEN}, session, graph.url, clock=lambda: NOW
    )
    (item,) = prepare_all(dest, [make_event()])
    assert dest.routes(item) == (GRAPH,)
    assert dest.send([item]) == [Outcome.delivered(200)]
    assert gateway.received == []


@pytest.mark.parametrize(
    ("mode", "when", "event", "routes"),
    [
        ("both", None, make_event(), (GRAPH, GATEWAY)),
        ("both", {"event_name": "Purchase"}, make_event(), (GRAPH, GATEWAY)),
        ("both", {"event_name": "Subscribe"}, make_event(), (GRAPH,)),
        ("both", {"action_source": "website"}, make_event(context=Context()), (GRAPH,)),
        (
            "both",
            {"livemode": True},
            make_event(source=Source("stripe", "e", "t", "o", livemode=False)),
            (GRAPH,),
        ),
        (
            "both",
            {"livemode": False},
            make_event(source=Source("stripe", "e", "t", "o", livemode=False)),
            (GRAPH, GATEWAY),
        ),
        ("gateway_only", None, make_event(), (GATEWAY,)),
        ("gateway_only", {"canonical_name": ["purchase", "subscription_start"]}, make_event(), (GATEWAY,)),
        (
            "gateway_only",
            {"action_source": ["website", "system_generated"]},
            make_event(name=SUBSCRIPTION_RENEWAL),
            (GATEWAY,),
        ),
    ],
)
def test_routes_per_configuration_and_filter(session, graph, gateway, mode, when, event, routes):
    dest = build(session, graph, gateway, mode=mode, when=when)
    (item,) = prepare_all(dest, [event])
    assert dest.routes(item) == routes


def test_gateway_only_skips_what_the_filter_excludes(session, graph, gateway):
    dest = build(session, graph, gateway, mode="gateway_only", when={"event_name": "Subscribe"})
    outcome = dest.prepare(make_event())
    assert isinstance(outcome, Outcome)
    assert outcome.status is Status.SKIP
    assert "gateway.when" in outcome.reason


def test_the_filter_applies_per_event_within_one_batch(session, graph, gateway):
    dest = build(session, graph, gateway, when={"host": "shop.example.com"})
    batch = prepare_all(
        dest,
        [
            make_event(event_id="web"),
            make_event(
                event_id="other",
                context=Context(event_source_url="https://elsewhere.example/x", client_user_agent=UA),
            ),
        ],
    )
    assert {o.status for o in dest.send(batch)} == {Status.DELIVERED}
    assert ids(graph.events) == ["web", "other"]
    assert ids(gateway.events) == ["web"]


def test_test_mode_events_with_a_test_code_stay_off_the_gateway(session, graph, gateway):
    dest = MetaDestination(
        {
            "pixel_id": PIXEL_ID,
            "access_token": ACCESS_TOKEN,
            "test_event_code": "TEST1",
            "gateway": {"url": gateway.url, "access_key": ACCESS_KEY},
        },
        session,
        graph.url,
        clock=lambda: NOW,
        options=MetaOptions(test_events="test_event_code"),
        route_ledger=MemoryRouteLedger(),
    )
    (item,) = prepare_all(dest, [make_event(source=Source("stripe", "e", "t", "o", livemode=False))])
    assert dest.routes(item) == (GRAPH,)


# -- 202 vs the rest -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "headers", "expected", "error_code", "retry_after"),
    [
        (202, {}, Status.DELIVERED, None, None),
        (200, {}, Status.REJECT, "meta_gateway_http_200", None),  # only 202 means accepted
        (204, {}, Status.REJECT, "meta_gateway_http_204", None),
        (301, {}, Status.REJECT, "meta_gateway_http_301", None),
        (400, {}, Status.REJECT, "meta_gateway_http_400", None),
        (404, {}, Status.REJECT, "meta_gateway_http_404", None),
        (401, {}, Status.REJECT, "meta_gateway_auth_401", None),
        (403, {}, Status.REJECT, "meta_gateway_auth_403", None),
        (408, {}, Status.RETRY, "meta_gateway_http_408", None),
        (429, {"Retry-After": "30"}, Status.RETRY, "meta_gateway_http_429", 30.0),
        (429, {"Retry-After": "soon"}, Status.RETRY, "meta_gateway_http_429", None),
        (500, {}, Status.RETRY, "meta_gateway_http_500", None),
        (503, {"Retry-After": "5"}, Status.RETRY, "meta_gateway_http_503", 5.0),
    ],
)
def test_gateway_classification(status, headers, expected, error_code, retry_after):
    outcome = classify_gateway_response(status, headers)
    assert (outcome.status, outcome.error_code, outcome.retry_after_seconds) == (
        expected,
        error_code,
        retry_after,
    )
    if expected is not Status.DELIVERED:
        assert outcome.http_status == status


def test_a_wrong_access_key_is_rejected_without_echoing_it(session, graph, gateway):
    dest = MetaDestination(
        {
            "pixel_id": PIXEL_ID,
            "access_token": ACCESS_TOKEN,
            "gateway": {"url": gateway.url, "access_key": "wrong-key-do-not-log", "mode": "gateway_only"},
        },
        session,
        graph.url,
        clock=lambda: NOW,
    )
    (outcome,) = dest.send(prepare_all(dest, [make_event()]))
    assert (outcome.status, outcome.error_code) == (Status.REJECT, "meta_gateway_auth_401")
    assert "wrong-key" not in outcome.reason


def test_a_gateway_timeout_is_retried(session, graph, gateway):
    dest = build(session, graph, gateway, mode="gateway_only", timeout=(1.0, 0.2))
    gateway.fail_next(1, 202, delay_seconds=1.0)
    (outcome,) = dest.send(prepare_all(dest, [make_event()]))
    assert outcome.status is Status.RETRY
    assert outcome.reason.startswith("network error")


def test_a_dropped_connection_is_retried(session, graph, gateway):
    dest = build(session, graph, gateway, mode="gateway_only")
    gateway.fail_next(1, None)
    (outcome,) = dest.send(prepare_all(dest, [make_event()]))
    assert outcome.status is Status.RETRY


# -- independent routes, no double send ----------------------------------------------------------------
def test_a_gateway_failure_retries_only_the_gateway(session, graph, gateway):
    ledger = MemoryRouteLedger()
    dest = build(session, graph, gateway, ledger=ledger)
    batch = prepare_all(dest, [make_event(event_id="e1"), make_event(event_id="e2")])
    gateway.fail_next(1, 503)
    first = dest.send(batch)
    assert {(o.status, o.error_code) for o in first} == {(Status.RETRY, "meta_gateway_http_503")}
    assert "Conversions API Gateway: " in first[0].reason
    assert "Graph API already delivered" in first[0].reason
    assert ids(graph.events) == ["e1", "e2"]
    assert ledger.delivered_ids == {GRAPH: {"e1", "e2"}, GATEWAY: set()}

    second = dest.send(batch)  # SQS redelivers the messages
    assert {o.status for o in second} == {Status.DELIVERED}
    assert ids(graph.events) == ["e1", "e2"]  # never resent
    assert ids(gateway.events) == ["e1", "e2"]
    assert len(graph.received) == 1


def test_a_graph_failure_retries_only_the_graph_api(session, graph, gateway):
    ledger = MemoryRouteLedger()
    dest = build(session, graph, gateway, ledger=ledger)
    batch = prepare_all(dest, [make_event(event_id="e1")])
    graph.throttle_next(1, code=80004, regain_minutes=2)
    (first,) = dest.send(batch)
    assert (first.status, first.error_code, first.retry_after_seconds) == (
        Status.RETRY,
        "meta_throttled_80004",
        120.0,
    )
    assert ledger.delivered_ids == {GRAPH: set(), GATEWAY: {"e1"}}
    assert dest.send(batch) == [Outcome.delivered(200)]
    assert ids(gateway.events) == ["e1"]
    assert ids(graph.events) == ["e1"]


def test_a_rejected_route_goes_to_the_dlq_and_the_delivered_route_is_not_resent_on_redrive(
    session, graph, gateway
):
    ledger = MemoryRouteLedger()
    dest = build(session, graph, gateway, ledger=ledger)
    graph.auth_error_next(1)
    batch = prepare_all(dest, [make_event(event_id="e1")])
    (first,) = dest.send(batch)
    assert (first.status, first.error_code) == (Status.REJECT, "meta_auth_190")
    assert first.reason.startswith("Graph API: ")
    assert dest.send(batch) == [Outcome.delivered(200)]  # after the token is fixed and the DLQ redriven
    assert ids(gateway.events) == ["e1"]


def test_both_routes_failing_retries_with_the_longest_wait(session, graph, gateway):
    dest = build(session, graph, gateway)
    graph.throttle_next(1, code=17, regain_minutes=1)
    gateway.fail_next(1, 500)
    (outcome,) = dest.send(prepare_all(dest, [make_event()]))
    assert outcome.status is Status.RETRY
    assert outcome.retry_after_seconds == 60.0
    assert "Graph API: " in outcome.reason and "Conversions API Gateway: " in outcome.reason


def test_a_route_ledger_outage_retries_rather_than_risking_a_double_send(session, graph, gateway):
    dest = build(session, graph, gateway, ledger=MemoryRouteLedger(fail_lookup=True))
    (outcome,) = dest.send(prepare_all(dest, [make_event()]))
    assert outcome.status is Status.RETRY
    assert "route ledger" in outcome.reason
    assert graph.received == [] and gateway.received == []


def test_a_route_ledger_write_failure_still_reports_the_truth(session, graph, gateway):
    dest = build(session, graph, gateway, ledger=MemoryRouteLedger(fail_write=True))
    assert dest.send(prepare_all(dest, [make_event()])) == [Outcome.delivered(200)]


# -- configuration -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("gateway_config", "message"),
    [
        ("https://g.example", "gateway must be an object"),
        ({"access_key": ACCESS_KEY}, "gateway.url"),
        ({"url": "g.example", "access_key": ACCESS_KEY}, "gateway.url"),
        ({"url": "https://g.example"}, "gateway.access_key"),
        ({"url": "https://g.example", "access_key": ACCESS_KEY, "mode": "mirror"}, "gateway.mode"),
        (
            {"url": "https://g.example", "access_key": ACCESS_KEY, "when": {"colour": "x"}},
            "unknown attribute",
        ),
    ],
)
def test_bad_gateway_configuration_names_the_key(session, gateway_config, message):
    credentials = {"pixel_id": PIXEL_ID, "access_token": ACCESS_TOKEN, "gateway": gateway_config}
    with pytest.raises(ConfigError, match=message) as caught:
        MetaDestination(credentials, session, route_ledger=MemoryRouteLedger())
    assert ACCESS_KEY not in str(caught.value)


def test_mode_both_needs_the_route_ledger(session):
    credentials = {
        "pixel_id": PIXEL_ID,
        "access_token": ACCESS_TOKEN,
        "gateway": {"url": "https://g.example", "access_key": ACCESS_KEY},
    }
    with pytest.raises(ConfigError, match="route ledger"):
        MetaDestination(credentials, session)


class FakeDynamo:
    """batch_get_item / batch_write_item over a dict, enough for Ledger.delivered / mark_delivered."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        ((table, request),) = RequestItems.items()
        found = [self.items[key["id"]["S"]] for key in request["Keys"] if key["id"]["S"] in self.items]
        return {"Responses": {table: found}}

    def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        for puts in RequestItems.values():
            for put in puts:
                item = put["PutRequest"]["Item"]
                self.items[item["id"]["S"]] = item
        return {}


def test_dynamo_route_ledger_keys_per_route():
    client = FakeDynamo()
    ledger = DynamoRouteLedger("table", client_factory=lambda: client)
    ledger.mark_delivered(GRAPH, ["stripe:purchase:cs_1"])
    assert set(client.items) == {"meta_graph#stripe:purchase:cs_1"}
    assert ledger.delivered(GRAPH, ["stripe:purchase:cs_1", "x"]) == {"stripe:purchase:cs_1"}
    assert ledger.delivered(GATEWAY, ["stripe:purchase:cs_1"]) == set()


def test_from_environment_reads_the_gateway_from_the_secret(monkeypatch, session):
    from conversion_relay.destinations import meta

    secret = {
        "pixel_id": PIXEL_ID,
        "access_token": ACCESS_TOKEN,
        "gateway": {"url": "https://capig.example.com", "access_key": ACCESS_KEY, "mode": "both"},
    }
    monkeypatch.setattr(meta, "get_secret", lambda component, force_fetch=False: secret)
    monkeypatch.setenv("IDEMPOTENCY_TABLE", "relay-idempotency")
    monkeypatch.setenv("META_MAX_EVENTS_PER_REQUEST", "500")
    monkeypatch.setenv("META_TEST_EVENTS", "skip")
    dest = MetaDestination.from_environment(session)
    assert dest.gateway is not None and dest.gateway.events_url(PIXEL_ID) == (
        f"https://capig.example.com/capi/{PIXEL_ID}/events"
    )
    assert dest.options.test_events == "skip"
    assert dest._max_events == 500
    monkeypatch.delenv("IDEMPOTENCY_TABLE")
    with pytest.raises(ConfigError, match="route ledger"):
        MetaDestination.from_environment(session)


# -- the fake gateway ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        (
            f"/capi/{PIXEL_ID}/events",
            {
                "accessKey": ACCESS_KEY,
                "data": [
                    {
                        "event_name": "Purchase",
                        "event_time": 1,
                        "action_source": "website",
                        "user_data": {"fbp": "fb.1.1.1"},
                    }
                ],
            },
            202,
        ),
        (f"/capi/{PIXEL_ID}/events", {"accessKey": "nope", "data": []}, 401),
        (f"/capi/{PIXEL_ID}/events", {"accessKey": ACCESS_KEY, "data": []}, 400),
        (f"/capi/{PIXEL_ID}/events", {"accessKey": ACCESS_KEY, "data": [{"event_name": "Purchase"}]}, 400),
        (
            f"/capi/{PIXEL_ID}/events",
            {
                "accessKey": ACCESS_KEY,
                "data": [
                    {
                        "event_name": "P",
                        "event_time": 1,
                        "action_source": "website",
                        "user_data": {"em": "jane@example.com"},
                    }
                ],
            },
            400,
        ),
        ("/v25.0/1/events", {"accessKey": ACCESS_KEY, "data": []}, 404),
    ],
)
def test_fake_gateway_rules(gateway, path, body, status):
    response = requests.post(gateway.url + path, data=json.dumps(body), timeout=5)
    assert response.status_code == status
    assert len(gateway.events) == (1 if status == 202 else 0)
