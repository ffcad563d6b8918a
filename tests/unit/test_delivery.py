"""The shared consumer routine, with in-memory stand-ins for the ledger, the DLQ and a destination."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from conversion_relay.delivery import DeadLetters, RetryPolicy, process_batch
from conversion_relay.destinations.base import Outcome, Prepared, Status
from conversion_relay.ledger import Claim, ClaimResult, LedgerState
from conversion_relay.model import ConversionEvent, Source


class MemoryLedger:
    """The Ledger's claim/record protocol over a dict; `busy` and `uncertain` script claim answers."""

    def __init__(self, delivered=None, *, fail_lookup=False, busy=(), uncertain=(), fail_record=False):
        self.states = dict.fromkeys(delivered or (), LedgerState.DELIVERED)
        self.fail_lookup = fail_lookup
        self.fail_record = fail_record
        self.busy = set(busy)
        self.uncertain = set(uncertain)
        self.claims: list[str] = []

    def claim(self, event_id, *, replay=False):
        if self.fail_lookup:
            raise RuntimeError("dynamodb down")
        self.claims.append(event_id)
        if self.states.get(event_id) is LedgerState.DELIVERED:
            return Claim(ClaimResult.DELIVERED)
        if self.states.get(event_id) is LedgerState.UNCERTAIN and not replay:
            return Claim(ClaimResult.HELD_UNCERTAIN)
        if event_id in self.busy:
            return Claim(ClaimResult.BUSY, 42.0)
        self.states[event_id] = LedgerState.IN_PROGRESS
        return Claim(ClaimResult.UNCERTAIN if event_id in self.uncertain else ClaimResult.CLAIMED)

    def record(self, states):
        if self.fail_record:
            raise RuntimeError("dynamodb down")
        self.states.update(states)

    @property
    def delivered_ids(self) -> set[str]:
        return {e for e, state in self.states.items() if state is LedgerState.DELIVERED}


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


# ---------------------------------------------------------------- deadline-aware retries


class MemoryVisibility:
    def __init__(self):
        self.delays: dict[str, int] = {}

    def delay(self, items):
        self.delays.update({record.receipt_handle: seconds for record, seconds in items})


class FixedRandom:
    """uniform(a, b) -> a + fraction * (b - a): makes the jitter's extremes testable."""

    def __init__(self, fraction: float):
        self.fraction = fraction

    def uniform(self, a, b):
        return a + self.fraction * (b - a)


NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def timed_body(event_id: str, occurred_at: datetime, *, email: str | None = None) -> str:
    from conversion_relay.model import Person

    return ConversionEvent(
        event_id=event_id,
        name="purchase",
        occurred_at=occurred_at,
        source=Source("stripe", f"evt_{event_id}", "checkout.session.completed", f"cs_{event_id}"),
        value=Decimal("10"),
        currency="USD",
        person=Person(email=email),
    ).to_json()


def timed_event(body: str, *, receive_count: int = 1, message_id: str = "m1") -> dict:
    return {
        "Records": [
            {
                "messageId": message_id,
                "receiptHandle": f"rh-{message_id}",
                "body": body,
                "attributes": {"ApproximateReceiveCount": str(receive_count), "SentTimestamp": "1"},
            }
        ]
    }


def run_at(event, destination, *, name="meta", ledger=None, max_receive_count=5, fraction=1.0, policy=None):
    sqs, visibility, ledger = MemorySqs(), MemoryVisibility(), ledger or MemoryLedger()
    response = process_batch(
        event,
        destination_name=name,
        build=lambda: destination,
        ledger=ledger,
        dead_letters=DeadLetters(sqs, "https://dlq", name),
        max_receive_count=max_receive_count,
        visibility=visibility,
        retry_policy=policy or RetryPolicy(base_seconds=30, cap_seconds=900),
        now=lambda: NOW,
        rng=FixedRandom(fraction),
    )
    return response, sqs, visibility, ledger


@pytest.mark.parametrize(
    ("attempt", "fraction", "retry_after", "expected"),
    [
        (1, 1.0, None, 30),  # base
        (2, 1.0, None, 60),
        (4, 1.0, None, 240),
        (6, 1.0, None, 900),  # capped at 15 minutes
        (20, 1.0, None, 900),
        (3, 0.0, None, 0),  # full jitter reaches 0
        (3, 0.5, None, 60),
        (1, 1.0, 120.0, 120),  # Retry-After longer than the backoff wins
        (4, 1.0, 5.0, 240),  # ... and a shorter one does not shorten it
        (1, 1.0, 86_400.0, 43_200),  # SQS cannot hide a message longer than 12 hours
    ],
)
def test_backoff_is_exponential_with_full_jitter_and_honours_retry_after(
    attempt, fraction, retry_after, expected
):
    policy = RetryPolicy(base_seconds=30, cap_seconds=900)
    assert policy.delay(attempt, retry_after, FixedRandom(fraction)) == expected


def test_the_limit_caps_every_delay_including_retry_after():
    assert RetryPolicy(limit_seconds=0).delay(5, 600.0, FixedRandom(1.0)) == 0


def test_a_retry_sets_its_own_visibility_from_the_receive_count():
    destination = ScriptedDestination({"e1": Outcome.retry("HTTP 503", http_status=503)})
    response, sqs, visibility, ledger = run_at(
        timed_event(timed_body("e1", NOW), receive_count=3), destination
    )
    assert failures(response) == ["m1"]
    assert visibility.delays == {"rh-m1": 120}
    assert sqs.sent == []
    assert ledger.states["e1"] is LedgerState.FAILED  # claim released: the next attempt may claim it


@pytest.mark.parametrize(
    ("name", "occurred_at", "fraction", "failure"),
    [
        # Meta: 7 days. 30 s backoff still fits with a minute left; it does not with 10 s left.
        ("meta", NOW - timedelta(days=7) + timedelta(minutes=1), 1.0, None),
        ("meta", NOW - timedelta(days=7) + timedelta(seconds=10), 1.0, "expired"),
        ("meta", NOW - timedelta(days=7), 0.0, "expired"),  # closed exactly now
        # GA4: 72 hours.
        ("ga4", NOW - timedelta(hours=72) + timedelta(minutes=1), 1.0, None),
        ("ga4", NOW - timedelta(hours=72) + timedelta(seconds=29), 1.0, "expired"),
        # AppsFlyer: until the next UTC midnight (NOW is noon).
        ("appsflyer", NOW - timedelta(hours=11), 1.0, None),
        ("appsflyer", NOW - timedelta(days=1), 0.0, "expired"),
        # No window for an unknown destination.
        ("test", NOW - timedelta(days=365), 1.0, None),
    ],
)
def test_retries_stop_when_the_acceptance_window_closes_before_the_next_attempt(
    name, occurred_at, fraction, failure
):
    destination = ScriptedDestination({"e1": Outcome.retry("HTTP 500", http_status=500, error_code="x1")})
    response, sqs, visibility, ledger = run_at(
        timed_event(timed_body("e1", occurred_at)), destination, name=name, fraction=fraction
    )
    if failure is None:
        assert failures(response) == ["m1"] and sqs.sent == []
        return
    assert failures(response) == []
    assert visibility.delays == {}
    dead = attributes(sqs.sent[0])
    assert dead["failure"] == "expired"
    assert dead["destination"] == name
    assert dead["http_status"] == "500" and dead["error_code"] == "x1" and dead["attempts"] == "1"
    assert "acceptance window" in dead["reason"] and "last failure: HTTP 500" in dead["reason"]
    assert dead["window_closes_at"].endswith("Z")
    assert ledger.states["e1"] is LedgerState.EXPIRED


def test_a_redelivery_whose_window_closed_while_waiting_is_not_sent():
    destination = ScriptedDestination({})
    response, sqs, _, _ = run_at(
        timed_event(timed_body("e1", NOW - timedelta(days=8)), receive_count=2), destination
    )
    assert destination.sent_batches == []
    assert failures(response) == []
    assert attributes(sqs.sent[0])["failure"] == "expired"


def test_a_late_first_attempt_is_left_to_the_destination_to_judge():
    destination = ScriptedDestination({})
    _, sqs, _, _ = run_at(
        timed_event(timed_body("e1", NOW - timedelta(days=1)), receive_count=1), destination, name="appsflyer"
    )
    assert destination.sent_batches == [["e1"]] and sqs.sent == []


def test_retries_exhausted_names_the_attempts_and_the_last_failure():
    destination = ScriptedDestination({"e1": Outcome.retry("HTTP 502", http_status=502)})
    _, sqs, _, _ = run_at(
        timed_event(timed_body("e1", NOW), receive_count=5), destination, max_receive_count=5
    )
    dead = attributes(sqs.sent[0])
    assert dead["failure"] == "retries_exhausted"
    assert dead["reason"] == "still failing after 5 attempts (MaxReceiveCount); last failure: HTTP 502"


# ---------------------------------------------------------------- ledger states


def test_a_replay_of_a_delivered_event_is_a_no_op():
    destination = ScriptedDestination({})
    response, sqs, _, ledger = run_at(
        timed_event(timed_body("e1", NOW)), destination, ledger=MemoryLedger({"e1"})
    )
    assert destination.sent_batches == [] and failures(response) == [] and sqs.sent == []
    assert ledger.states == {"e1": LedgerState.DELIVERED}


def test_an_event_another_consumer_is_sending_comes_back_after_its_lease():
    destination = ScriptedDestination({})
    response, _, visibility, ledger = run_at(
        timed_event(timed_body("e1", NOW)), destination, ledger=MemoryLedger(busy={"e1"}), fraction=0.0
    )
    assert destination.sent_batches == []
    assert failures(response) == ["m1"]
    assert visibility.delays == {"rh-m1": 42}
    assert "e1" not in ledger.states  # the other consumer's claim is not touched


@pytest.mark.parametrize(("name", "resent"), [("meta", True), ("ga4", True), ("appsflyer", False)])
def test_an_interrupted_attempt_is_resent_only_where_the_destination_deduplicates(name, resent):
    destination = ScriptedDestination({})
    occurred = NOW - timedelta(hours=1)
    response, sqs, _, ledger = run_at(
        timed_event(timed_body("e1", occurred)), destination, name=name, ledger=MemoryLedger(uncertain={"e1"})
    )
    assert failures(response) == []
    if resent:
        assert destination.sent_batches == [["e1"]] and sqs.sent == []
        assert ledger.states["e1"] is LedgerState.DELIVERED
    else:
        assert destination.sent_batches == []
        assert attributes(sqs.sent[0])["failure"] == "uncertain"
        assert ledger.states["e1"] is LedgerState.UNCERTAIN  # only an explicit replay sends it again


def _with_replay_attribute(event: dict) -> dict:
    for record in event["Records"]:
        record["messageAttributes"] = {"replay": {"stringValue": "true", "dataType": "String"}}
    return event


@pytest.mark.parametrize(("replayed", "sent"), [(False, False), (True, True)])
def test_an_uncertain_event_is_resent_only_by_an_explicit_replay(replayed, sent):
    # An SQS copy or a provider retry of an event dead-lettered as uncertain must not reach
    # AppsFlyer again on its own; a replay (a person checked it is missing) must.
    ledger = MemoryLedger()
    ledger.states["e1"] = LedgerState.UNCERTAIN
    event = timed_event(timed_body("e1", NOW - timedelta(hours=1)))
    if replayed:
        event = _with_replay_attribute(event)
    destination = ScriptedDestination({})
    response, sqs, _, ledger = run_at(event, destination, name="appsflyer", ledger=ledger)
    assert failures(response) == [] and sqs.sent == []
    assert destination.sent_batches == ([["e1"]] if sent else [])
    assert ledger.states["e1"] is (LedgerState.DELIVERED if sent else LedgerState.UNCERTAIN)


def test_states_recorded_per_outcome():
    destination = ScriptedDestination(
        {"e2": Outcome.reject("bad"), "e3": Outcome.retry("HTTP 500")},
        prepare_outcomes={"e4": Outcome.skip("refunds are not sent")},
    )
    event = {
        "Records": [
            timed_event(timed_body(e, NOW), message_id=f"m{e}")["Records"][0]
            for e in ("e1", "e2", "e3", "e4")
        ]
    }
    _, _, _, ledger = run_at(event, destination)
    assert ledger.states == {
        "e1": LedgerState.DELIVERED,
        "e2": LedgerState.FAILED,
        "e3": LedgerState.FAILED,
        "e4": LedgerState.SKIPPED,
    }


def test_a_ledger_write_failure_after_delivery_still_acknowledges():
    destination = ScriptedDestination({})
    response, sqs, _, _ = run_at(
        timed_event(timed_body("e1", NOW)), destination, ledger=MemoryLedger(fail_record=True)
    )
    assert failures(response) == [] and sqs.sent == []


# ---------------------------------------------------------------- DLQ content and metrics


def test_dead_letter_reasons_never_carry_the_customer_s_data():
    email = "dlq.person@example.org"
    destination = ScriptedDestination(
        {"e1": Outcome.reject(f"user_data.em {email} is not allowed; ip 198.51.100.7")}
    )
    _, sqs, _, _ = run_at(timed_event(timed_body("e1", NOW, email=email)), destination)
    reason = attributes(sqs.sent[0])["reason"]
    assert email not in reason and "198.51.100.7" not in reason
    assert "[REDACTED:" in reason


@pytest.mark.parametrize(
    ("outcome", "metric"),
    [
        (Outcome.reject("token expired", http_status=400, error_code="meta_auth_190"), "Rejected_auth"),
        (Outcome.reject("HTTP 401", http_status=401), "Rejected_auth"),
        (
            Outcome.reject("invalid parameter", http_status=400, error_code="100/2804003"),
            "Rejected_destination",
        ),
    ],
)
def test_rejections_are_counted_by_reason_class(outcome, metric):
    from conversion_relay.observability import metrics

    metrics.clear_metrics()
    run_at(timed_event(timed_body("e1", NOW)), ScriptedDestination({"e1": outcome}))
    recorded = metrics.provider.metric_set
    assert metric in recorded
    assert ("DestinationAuthError" in recorded) == (metric == "Rejected_auth")
    assert {"Received", "Rejected", "DeadLettered"} <= set(recorded)
    metrics.clear_metrics()


def test_validation_rejects_and_expiry_have_their_own_classes():
    from conversion_relay.observability import metrics

    metrics.clear_metrics()
    destination = ScriptedDestination(
        {}, prepare_outcomes={"e1": Outcome.reject("events[0].params.currency")}
    )
    run_at(timed_event(timed_body("e1", NOW)), destination)
    assert "Rejected_validation" in metrics.provider.metric_set
    metrics.clear_metrics()
    run_at(timed_event(timed_body("e2", NOW - timedelta(days=9)), receive_count=2), ScriptedDestination({}))
    assert {"Rejected_expired", "Expired"} <= set(metrics.provider.metric_set)
    metrics.clear_metrics()


def test_retry_policy_reads_the_environment(monkeypatch):
    assert RetryPolicy.from_environment() == RetryPolicy()
    monkeypatch.setenv("RETRY_BASE_SECONDS", "2")
    monkeypatch.setenv("RETRY_CAP_SECONDS", "10")
    monkeypatch.setenv("RETRY_LIMIT_SECONDS", "0")
    assert RetryPolicy.from_environment() == RetryPolicy(base_seconds=2, cap_seconds=10, limit_seconds=0)


def test_an_uncertain_reject_is_dead_lettered_as_uncertain_not_as_rejected():
    reason = "uncertain: network error: ReadTimeout; check the event in AppsFlyer's raw data"
    destination = ScriptedDestination({"e1": Outcome.reject(reason, error_code="uncertain")})
    response, sqs, _ = run(sqs_event(("m1", event_body("e1"))), destination)
    assert failures(response) == []
    assert attributes(sqs.sent[0])["failure"] == "uncertain"
    assert attributes(sqs.sent[0])["reason"].startswith("uncertain: network error")
