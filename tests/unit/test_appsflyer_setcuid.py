"""setcuid: each (customerUserId, afUserId) pair is linked once, durably; a failed link never fails events."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
import requests

from conversion_relay.destinations.appsflyer import (
    LINK_KEY_PREFIX,
    LINK_LEASE_SECONDS,
    AppsflyerDestination,
    DynamoLinkStore,
    MemoryLinkStore,
    link_key,
)
from conversion_relay.destinations.base import Outcome, Prepared, Status
from conversion_relay.http import new_session
from conversion_relay.model import PURCHASE, Context, ConversionEvent, Source
from relay_local.fakes.appsflyer import FakeAppsflyer

BUNDLE = "test-bundle"
DEV_KEY = "test-web-dev-key"
TABLE = "relay-idempotency"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAppsflyer]:
    server = FakeAppsflyer(bundle_id=BUNDLE, web_dev_key=DEV_KEY).start()
    yield server
    server.stop()


@pytest.fixture
def live(fake: FakeAppsflyer) -> Iterator[FakeAppsflyer]:
    fake.reset()
    yield fake
    fake.reset()


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    pooled = new_session(pool_size=8)
    yield pooled
    pooled.close()


@pytest.fixture(scope="module")
def dynamodb() -> Iterator[Any]:
    """A moto server on 127.0.0.1 with the idempotency table (key `id`), as the template defines it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client(
        "dynamodb",
        endpoint_url=f"http://{host}:{port}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_table(
        TableName=TABLE,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    yield client
    server.stop()


def make_event(event_id: str, context: Context) -> ConversionEvent:
    return ConversionEvent(
        event_id=event_id,
        name=PURCHASE,
        occurred_at=datetime.now(UTC),
        source=Source(provider="stripe", event_id="evt_1", event_type="x", object_id="cs_1"),
        context=context,
    )


def destination(session: requests.Session, url: str, store: Any, counted: list[str] | None = None):
    sink = counted if counted is not None else []
    return AppsflyerDestination(
        {"bundle_id": BUNDLE, "web_dev_key": DEV_KEY}, session, url, link_store=store, count=sink.append
    )


def send(dest: AppsflyerDestination, events: list[ConversionEvent]) -> list[Outcome]:
    prepared = [dest.prepare(event) for event in events]
    assert all(isinstance(p, Prepared) for p in prepared), prepared
    return dest.send(prepared)  # type: ignore[arg-type]


BOTH = Context(customer_user_id="cuid-1", af_user_id="af-1")


# -- the key -----------------------------------------------------------------------------------------
def test_link_key_is_a_hash_of_the_pair_and_bundle():
    key = link_key(BUNDLE, "cuid-1", "af-1")
    assert key == LINK_KEY_PREFIX + hashlib.sha256(f"{BUNDLE}\ncuid-1\naf-1".encode()).hexdigest()
    assert "cuid-1" not in key and "af-1" not in key
    assert key != link_key("other-bundle", "cuid-1", "af-1")
    assert key != link_key(BUNDLE, "cuid-1", "af-2")


# -- once per pair, over the wire --------------------------------------------------------------------
def test_pair_is_linked_once_across_events_and_batches(live: FakeAppsflyer, session):
    store = MemoryLinkStore()
    counted: list[str] = []
    dest = destination(session, live.url, store, counted)
    events = [make_event(f"evt-{i}", BOTH) for i in range(5)]
    assert send(dest, events) == [Outcome.delivered(200)] * 5
    assert send(dest, [make_event("evt-9", BOTH)]) == [Outcome.delivered(200)]
    assert [(link["customerUserId"], link["afUserId"]) for link in live.cuid_links] == [("cuid-1", "af-1")]
    assert live.cuid_links[0]["webDevKey"] == DEV_KEY
    assert len(live.events) == 6
    assert counted.count("SetcuidLinked") == 1
    assert store.linked() == {link_key(BUNDLE, "cuid-1", "af-1")}


@pytest.mark.parametrize(
    ("context", "links"),
    [
        (Context(customer_user_id="c"), 0),
        (Context(user_id="u"), 0),
        (Context(af_user_id="a"), 0),
        (Context(user_id="u", af_user_id="a"), 1),  # user_id is the customerUserId fallback
        (Context(customer_user_id="c", af_user_id="a"), 1),
    ],
)
def test_only_events_with_both_ids_link(live: FakeAppsflyer, session, context: Context, links: int):
    send(destination(session, live.url, MemoryLinkStore()), [make_event("evt-1", context)])
    assert len(live.cuid_links) == links


def test_each_distinct_pair_is_linked(live: FakeAppsflyer, session):
    dest = destination(session, live.url, MemoryLinkStore())
    contexts = [BOTH, Context(customer_user_id="cuid-1", af_user_id="af-2"), BOTH]
    send(dest, [make_event(f"evt-{i}", c) for i, c in enumerate(contexts)])
    assert sorted(link["afUserId"] for link in live.cuid_links) == ["af-1", "af-2"]


# -- a failed link never fails the event, and is retried by a later event ---------------------------
@pytest.mark.parametrize("status", [400, 401, 500, None])
def test_failed_setcuid_still_sends_the_event_and_releases_the_pair(live: FakeAppsflyer, session, status):
    store = MemoryLinkStore()
    counted: list[str] = []
    dest = destination(session, live.url, store, counted)
    live.fail_next(1, status, {"error": "boom", "message": "Bad Request"})  # the setcuid goes first
    assert send(dest, [make_event("evt-1", BOTH)]) == [Outcome.delivered(200)]
    assert live.cuid_links == []
    assert counted == ["SetcuidFailed"]
    assert store.linked() == set()
    # The next event with the pair tries again and succeeds.
    assert send(dest, [make_event("evt-2", BOTH)]) == [Outcome.delivered(200)]
    assert len(live.cuid_links) == 1


def test_broken_store_never_fails_the_event(live: FakeAppsflyer, session):
    class Broken:
        def claim(self, key: str) -> bool:
            raise RuntimeError("table unavailable")

        def confirm(self, key: str) -> None:
            raise AssertionError("not reached")

        def release(self, key: str) -> None:
            raise AssertionError("not reached")

    counted: list[str] = []
    dest = destination(session, live.url, Broken(), counted)
    assert send(dest, [make_event("evt-1", BOTH)]) == [Outcome.delivered(200)]
    assert live.cuid_links == []
    assert counted == ["SetcuidFailed"]


def test_confirm_failure_after_a_good_link_keeps_the_event(live: FakeAppsflyer, session):
    class ConfirmFails(MemoryLinkStore):
        def confirm(self, key: str) -> None:
            raise RuntimeError("write failed")

    dest = destination(session, live.url, ConfirmFails())
    assert send(dest, [make_event("evt-1", BOTH)]) == [Outcome.delivered(200)]
    assert len(live.cuid_links) == 1


# -- the memory store --------------------------------------------------------------------------------
def test_memory_store_lease_lets_a_crashed_claim_be_taken_over():
    now = [1000.0]
    store = MemoryLinkStore(clock=lambda: now[0])
    assert store.claim("k") is True
    assert store.claim("k") is False  # someone is on it
    now[0] += LINK_LEASE_SECONDS + 1  # ...and never confirmed
    assert store.claim("k") is True
    store.confirm("k")
    now[0] += LINK_LEASE_SECONDS * 10
    assert store.claim("k") is False
    store.release("k")  # release only drops pending claims
    assert store.claim("k") is False


# -- the DynamoDB store (moto server on 127.0.0.1) ---------------------------------------------------
def test_dynamo_store_claims_once_across_containers(dynamodb):
    now = [1_800_000_000.0]
    first = DynamoLinkStore(dynamodb, TABLE, clock=lambda: now[0])
    second = DynamoLinkStore(dynamodb, TABLE, clock=lambda: now[0])  # another container
    key = link_key(BUNDLE, "cuid-d1", "af-d1")
    assert first.claim(key) is True
    assert second.claim(key) is False
    first.confirm(key)
    assert second.claim(key) is False
    assert first.claim(key) is False  # answered from the container's own memory
    item = dynamodb.get_item(TableName=TABLE, Key={"id": {"S": key}})["Item"]
    assert item["status"] == {"S": "linked"}
    assert int(item["expiration"]["N"]) > now[0]
    assert "cuid-d1" not in str(item)


def test_dynamo_store_release_and_stale_claims(dynamodb):
    now = [1_800_000_000.0]
    store = DynamoLinkStore(dynamodb, TABLE, clock=lambda: now[0])
    key = link_key(BUNDLE, "cuid-d2", "af-d2")
    assert store.claim(key) is True
    store.release(key)
    assert "Item" not in dynamodb.get_item(TableName=TABLE, Key={"id": {"S": key}})
    assert store.claim(key) is True  # claimed again, then the holder "crashes"
    other = DynamoLinkStore(dynamodb, TABLE, clock=lambda: now[0])
    assert other.claim(key) is False
    now[0] += LINK_LEASE_SECONDS + 1
    assert other.claim(key) is True  # expired lease: taken over (TTL deletion may lag; we compare)


def test_dynamo_store_end_to_end_links_once(dynamodb, live: FakeAppsflyer, session):
    store = DynamoLinkStore(dynamodb, TABLE)
    dest = destination(session, live.url, store)
    context = dataclasses.replace(BOTH, customer_user_id="cuid-e2e")
    outcomes = send(dest, [make_event(f"evt-{i}", context) for i in range(4)])
    assert [o.status for o in outcomes] == [Status.DELIVERED] * 4
    # A fresh container (new store object, same table) does not link again.
    send(destination(session, live.url, DynamoLinkStore(dynamodb, TABLE)), [make_event("evt-x", context)])
    assert len(live.cuid_links) == 1
