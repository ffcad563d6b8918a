"""The delivery ledger against moto's DynamoDB: claims, leases, states, and the replay no-op."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from conversion_relay.ledger import ClaimResult, Ledger, LedgerState, ledger_key

TABLE = "ledger-test"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def dynamodb(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


def test_first_claim_wins_and_a_second_consumer_is_told_to_come_back_after_the_lease(dynamodb):
    clock = Clock()
    first = Ledger(dynamodb, TABLE, "meta", lease_seconds=90, clock=clock)
    second = Ledger(dynamodb, TABLE, "meta", lease_seconds=90, clock=clock)
    assert first.claim("e1").result is ClaimResult.CLAIMED
    clock.now += 30
    busy = second.claim("e1")
    assert busy.result is ClaimResult.BUSY
    assert busy.retry_after_seconds == 60


def test_a_delivered_event_cannot_be_claimed_again(dynamodb):
    ledger = Ledger(dynamodb, TABLE, "ga4")
    ledger.claim("e1")
    ledger.record({"e1": LedgerState.DELIVERED})
    assert ledger.claim("e1").result is ClaimResult.DELIVERED
    assert ledger.delivered(["e1", "e2"]) == {"e1"}


@pytest.mark.parametrize("state", [LedgerState.FAILED, LedgerState.EXPIRED, LedgerState.SKIPPED])
def test_failed_expired_and_skipped_events_can_be_claimed_again(dynamodb, state):
    ledger = Ledger(dynamodb, TABLE, "ga4")
    ledger.claim("e1")
    ledger.record({"e1": state})
    assert ledger.claim("e1").result is ClaimResult.CLAIMED


def test_an_abandoned_claim_is_reported_as_uncertain_once_its_lease_ran_out(dynamodb):
    clock = Clock()
    ledger = Ledger(dynamodb, TABLE, "appsflyer", lease_seconds=90, clock=clock)
    ledger.claim("e1")  # ... and the consumer died before recording the result
    clock.now += 91
    assert ledger.claim("e1").result is ClaimResult.UNCERTAIN
    assert ledger.states(["e1"]) == {"e1": LedgerState.IN_PROGRESS}


def test_destinations_have_separate_entries_with_a_ttl(dynamodb):
    clock = Clock()
    Ledger(dynamodb, TABLE, "meta", clock=clock).record({"e1": LedgerState.DELIVERED})
    assert Ledger(dynamodb, TABLE, "ga4", clock=clock).claim("e1").result is ClaimResult.CLAIMED
    item = dynamodb.get_item(TableName=TABLE, Key={"id": {"S": ledger_key("meta", "e1")}})["Item"]
    assert item["state"] == {"S": "delivered"}
    assert int(item["expiration"]["N"]) == int(clock.now) + 8 * 24 * 3600


def test_many_states_are_written_and_read_in_batches(dynamodb):
    ledger = Ledger(dynamodb, TABLE, "meta")
    ids = [f"e{i}" for i in range(130)]
    ledger.record(dict.fromkeys(ids, LedgerState.DELIVERED))
    assert ledger.delivered(ids) == set(ids)


def test_an_uncertain_event_is_claimed_only_by_a_replay(dynamodb):
    ledger = Ledger(dynamodb, TABLE, "appsflyer")
    ledger.record({"e1": LedgerState.UNCERTAIN})
    assert ledger.claim("e1").result is ClaimResult.HELD_UNCERTAIN
    assert ledger.states(["e1"]) == {"e1": LedgerState.UNCERTAIN}  # the refused claim changed nothing
    assert ledger.claim("e1", replay=True).result is ClaimResult.CLAIMED
    ledger.record({"e1": LedgerState.DELIVERED})
    assert ledger.claim("e1", replay=True).result is ClaimResult.DELIVERED  # even a replay never resends
