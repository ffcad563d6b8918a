"""The shared consumer routine, with in-memory stand-ins for the ledger, the DLQ and a destination."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from conversion_relay.delivery import DeadLetters, process_batch
from conversion_relay.destinations.base import Outcome, Prepared, Status
from conversion_relay.model import ConversionEvent, Source


class MemoryLedger:
    def __init__(self, delivered: set[str] | None = None, *, fail_lookup: bool = False) -> None:
        self.delivered_ids = set(delivered or ())
        self.fail_lookup = fail_lookup

    def delivered(self, event_ids):
        if self.fail_lookup:
            raise RuntimeError("dynamodb down")
        return {e for e in event_ids if e in self.delivered_ids}

    def mark_delivered(self, event_ids):
        self.delivered_ids.update(event_ids)


class MemorySqs:
    def __init__(self, *, fail: bool = False) -> None:
        self.sent: list[dict] = []
        self.fail = fail

    def send_message_batch(self, QueueUrl, Entries):
        if self.fail:
            raise RuntimeError("sqs down")
        self.sent.extend(Entries)
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


class ScriptedDestination:
    """Answers with a scripted outcome per event id; records what it was asked to send."""

    name = "test"

    def __init__(self, send_outcomes: dict[str, Outcome], prepare_outcomes: dict[str, Outcome] | None = None):
        self.send_outcomes = send_outcomes
        self.prepare_outcomes = prepare_outcomes or {}
        self.sent_batches: list[list[str]] = []

    def prepare(self, event):
        if event.event_id in self.prepare_outcomes:
            return self.prepare_outcomes[event.event_id]
        return Prepared(event=event, payload={"id": event.event_id})

    def send(self, batch: Sequence[Prepared]):
        self.sent_batches.append([p.event.event_id for p in batch])
        return [self.send_outcomes.get(p.event.event_id, Outcome.delivered(200)) for p in batch]


def event_body(event_id: str) -> str:
    return ConversionEvent(
        event_id=event_id,
        name="purchase",
        occurred_at=datetime(2026, 11, 28, tzinfo=UTC),
        source=Source("stripe", f"evt_{event_id}", "checkout.session.completed", f"cs_{event_id}"),
        value=Decimal("10"),
        currency="USD",
    ).to_json()


def sqs_event(*bodies: tuple[str, str], receive_count: int = 1) -> dict:
    return {
        "Records": [
            {
                "messageId": message_id,
                "body": body,
                "attributes": {"ApproximateReceiveCount": str(receive_count)},
            }
            for message_id, body in bodies
        ]
    }


def run(event, destination, *, ledger=None, sqs=None, max_receive_count=5):
    sqs = sqs or MemorySqs()
    ledger = ledger or MemoryLedger()
    response = process_batch(
        event,
        destination_name="test",
        build=lambda: destination,
        ledger=ledger,
        dead_letters=DeadLetters(sqs, "https://dlq", "test"),
        max_receive_count=max_receive_count,
    )
    return response, sqs, ledger


def failures(response) -> list[str]:
    return [f["itemIdentifier"] for f in response["batchItemFailures"]]


def attributes(entry) -> dict[str, str]:
    return {name: value["StringValue"] for name, value in entry["MessageAttributes"].items()}


def test_delivered_events_are_acknowledged_and_recorded_in_the_ledger():
    destination = ScriptedDestination({})
    response, sqs, ledger = run(sqs_event(("m1", event_body("e1")), ("m2", event_body("e2"))), destination)
    assert failures(response) == []
    assert destination.sent_batches == [["e1", "e2"]]  # one send call for the whole batch
    assert ledger.delivered_ids == {"e1", "e2"}
    assert sqs.sent == []


def test_retryable_failures_are_reported_and_nothing_else():
    destination = ScriptedDestination({"e2": Outcome.retry("HTTP 503", http_status=503)})
    response, sqs, ledger = run(sqs_event(("m1", event_body("e1")), ("m2", event_body("e2"))), destination)
    assert failures(response) == ["m2"]
    assert ledger.delivered_ids == {"e1"}
    assert sqs.sent == []


def test_a_batch_whose_every_record_fails_returns_item_failures_instead_of_raising():
    destination = ScriptedDestination({"e1": Outcome.retry("timeout"), "e2": Outcome.retry("timeout")})
    response, _, _ = run(sqs_event(("m1", event_body("e1")), ("m2", event_body("e2"))), destination)
    assert failures(response) == ["m1", "m2"]


def test_permanent_failures_go_to_the_dlq_with_reason_and_are_acknowledged():
    destination = ScriptedDestination(
        {"e1": Outcome.reject("HTTP 400: bad field", http_status=400, error_code="x")}
    )
    response, sqs, ledger = run(sqs_event(("m1", event_body("e1"))), destination)
    assert failures(response) == []
    assert len(sqs.sent) == 1
    assert sqs.sent[0]["MessageBody"] == event_body("e1")
    assert attributes(sqs.sent[0]) == {
        "destination": "test",
        "failure": "rejected",
        "reason": "HTTP 400: bad field",
        "attempts": "1",
        "original_message_id": "m1",
        "event_id": "e1",
        "http_status": "400",
        "error_code": "x",
    }
    assert ledger.delivered_ids == set()


def test_validation_rejects_never_reach_send():
    destination = ScriptedDestination(
        {}, prepare_outcomes={"e1": Outcome.reject("events[0].params.currency")}
    )
    response, sqs, _ = run(sqs_event(("m1", event_body("e1")), ("m2", event_body("e2"))), destination)
    assert destination.sent_batches == [["e2"]]
    assert failures(response) == []
    assert attributes(sqs.sent[0])["reason"] == "events[0].params.currency"


def test_skipped_events_are_acknowledged_without_dlq():
    destination = ScriptedDestination({}, prepare_outcomes={"e1": Outcome.skip("refunds are not sent")})
    response, sqs, ledger = run(sqs_event(("m1", event_body("e1"))), destination)
    assert failures(response) == [] and sqs.sent == [] and destination.sent_batches == []
    assert ledger.delivered_ids == set()


def test_last_allowed_attempt_of_a_retryable_failure_is_dead_lettered_with_its_reason():
    destination = ScriptedDestination({"e1": Outcome.retry("HTTP 500", http_status=500)})
    response, sqs, _ = run(
        sqs_event(("m1", event_body("e1")), receive_count=3), destination, max_receive_count=3
    )
    assert failures(response) == []
    assert attributes(sqs.sent[0])["failure"] == "retries_exhausted"
    assert attributes(sqs.sent[0])["attempts"] == "3"


def test_if_the_dlq_cannot_be_written_the_record_stays_in_the_queue():
    destination = ScriptedDestination({"e1": Outcome.reject("bad")})
    response, _, _ = run(sqs_event(("m1", event_body("e1"))), destination, sqs=MemorySqs(fail=True))
    assert failures(response) == ["m1"]


def test_already_delivered_events_and_in_batch_duplicates_are_not_sent_again():
    destination = ScriptedDestination({})
    event = sqs_event(("m1", event_body("e1")), ("m2", event_body("e2")), ("m3", event_body("e2")))
    response, _, _ = run(event, destination, ledger=MemoryLedger({"e1"}))
    assert destination.sent_batches == [["e2"]]
    assert failures(response) == []


def test_ledger_outage_retries_rather_than_risking_a_double_send():
    destination = ScriptedDestination({})
    response, _, _ = run(
        sqs_event(("m1", event_body("e1"))), destination, ledger=MemoryLedger(fail_lookup=True)
    )
    assert destination.sent_batches == []
    assert failures(response) == ["m1"]


def test_malformed_message_goes_to_the_dlq_naming_the_field():
    destination = ScriptedDestination({})
    response, sqs, _ = run(sqs_event(("m1", '{"name": "purchase"}')), destination)
    assert failures(response) == []
    assert attributes(sqs.sent[0])["reason"].startswith("malformed canonical event: source: is required")


def test_a_destination_that_cannot_be_configured_keeps_the_messages():
    def broken():
        raise RuntimeError("secret missing")

    response = process_batch(
        sqs_event(("m1", event_body("e1"))),
        destination_name="test",
        build=broken,
        ledger=MemoryLedger(),
        dead_letters=DeadLetters(MemorySqs(), "https://dlq", "test"),
        max_receive_count=5,
    )
    assert failures(response) == ["m1"]


@pytest.mark.parametrize("wrong_count", [0, 2])
def test_a_destination_returning_the_wrong_number_of_outcomes_is_retried(wrong_count):
    class Wrong(ScriptedDestination):
        def send(self, batch):
            return [Outcome(Status.DELIVERED)] * wrong_count

    response, _, ledger = run(sqs_event(("m1", event_body("e1"))), Wrong({}))
    assert failures(response) == ["m1"]
    assert ledger.delivered_ids == set()


def test_a_destination_that_raises_does_not_lose_the_batch():
    class Raising(ScriptedDestination):
        def send(self, batch):
            raise KeyError("bug")

    response, _, _ = run(sqs_event(("m1", event_body("e1")), ("m2", event_body("e2"))), Raising({}))
    assert failures(response) == ["m1", "m2"]
