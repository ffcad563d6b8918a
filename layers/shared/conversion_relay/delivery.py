"""The one delivery routine every destination consumer runs on its SQS batch.

parse each record -> claim it in the ledger (drops what is delivered or being sent elsewhere) ->
map + validate (prepare) -> send the prepared events together (destinations batch them as their
API allows) -> classify -> record the result in the ledger -> schedule retries / dead-letter.

Retries are deadline-aware. Each destination accepts an event only for a while after it happened
(its acceptance window, ACCEPTANCE_WINDOWS). A retryable failure gets an exponential backoff with
full jitter (per message: ChangeMessageVisibility on its receipt handle, so SQS brings it back after
the delay instead of after the queue's fixed visibility timeout), honouring the destination's
Retry-After when that is longer. When the window would close before the next attempt, or has
closed, the message goes to the DLQ as `expired`; after MaxReceiveCount receives as
`retries_exhausted`; a permanent failure as `rejected`. Every DLQ message carries destination,
failure, reason, attempts, last HTTP status and error code: never customer data or credentials.

A record is only acknowledged once its fate is durable (delivered, or in the DLQ): if the DLQ write
fails, the record is reported as failed and SQS keeps it.

Powertools' BatchProcessor handles records one at a time; GA4 and Meta need the whole batch
before they can send, so the routine works on the batch and shapes the same response itself.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit

from conversion_relay import redaction
from conversion_relay.destinations.base import Destination, Outcome, Prepared, Status
from conversion_relay.ledger import ClaimResult, Ledger, LedgerState
from conversion_relay.model import ConversionEvent, InvalidEvent
from conversion_relay.observability import logger, metrics

_REASON_LIMIT = 1000
_SQS_BATCH_LIMIT = 10
# Message attribute `relay replay` sets on what it moves back from a DLQ: an explicit, checked resend.
REPLAY_ATTRIBUTE = "replay"
# Concurrent ledger claims per batch: enough to hide DynamoDB latency, within botocore's pool of 10.
_CLAIM_CONCURRENCY = 10
SQS_MAX_VISIBILITY_SECONDS = 43_200  # ChangeMessageVisibility's upper bound (12 hours)


def _next_utc_midnight(moment: datetime) -> datetime:
    day = moment.astimezone(UTC).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class AcceptanceWindow:
    describe: str  # for reasons: "7 days after the event time"
    closes: Callable[[datetime], datetime]


# How long after an event happened each destination still takes it. Meta rejects event_time older
# than 7 days; GA4 drops timestamp_micros more than 72 hours back; AppsFlyer Web S2S restamps an
# event that arrives after the next UTC midnight with the arrival time, so a retry past that point
# would count the conversion on the wrong day: we stop there.
ACCEPTANCE_WINDOWS: dict[str, AcceptanceWindow] = {
    "meta": AcceptanceWindow("7 days after the event time", lambda t: t + timedelta(days=7)),
    "ga4": AcceptanceWindow("72 hours after the event time", lambda t: t + timedelta(hours=72)),
    "appsflyer": AcceptanceWindow("until the UTC midnight after the event time", _next_utc_midnight),
}

# When a previous attempt died between sending and recording the result, the event may or may not
# have arrived. Destinations that de-duplicate (Meta by event_name + event_id, GA4 purchases by
# transaction_id) are sent again; AppsFlyer does not de-duplicate, so the event goes to the DLQ as
# `uncertain` for a person to check before replaying it.
RESEND_WHEN_UNCERTAIN: dict[str, bool] = {"ga4": True, "meta": True, "appsflyer": False}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter: delay = uniform(0, min(cap, base * 2**(attempt-1)))."""

    base_seconds: float = 30.0
    cap_seconds: float = 900.0
    # Hard limit on any delay, Retry-After included (SQS's maximum; the local stack sets 0 in tests).
    limit_seconds: float = SQS_MAX_VISIBILITY_SECONDS

    @classmethod
    def from_environment(cls) -> RetryPolicy:
        default = cls()
        return cls(
            base_seconds=float(os.environ.get("RETRY_BASE_SECONDS", default.base_seconds)),
            cap_seconds=float(os.environ.get("RETRY_CAP_SECONDS", default.cap_seconds)),
            limit_seconds=float(os.environ.get("RETRY_LIMIT_SECONDS", default.limit_seconds)),
        )

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> int:
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** max(0, attempt - 1))
        delay = rng.uniform(0, ceiling)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return int(min(max(0.0, delay), self.limit_seconds, SQS_MAX_VISIBILITY_SECONDS) + 0.5)


@dataclass(frozen=True, slots=True)
class Record:
    message_id: str
    body: str
    receive_count: int
    receipt_handle: str = ""
    sent_timestamp_ms: int | None = None  # when the message was first enqueued
    correlation_id: str = ""  # set by the ingest ("<provider>:<delivery id>"): follows the event
    replay: bool = False  # moved back from the DLQ by `relay replay` after a person's check


@dataclass(frozen=True, slots=True)
class Settled:
    """A record's final word for this attempt."""

    record: Record
    outcome: Outcome
    event_id: str = ""
    occurred_at: datetime | None = None
    claimed: bool = False  # this invocation holds the ledger claim and must release it
    stage: str = "send"  # parse | ledger | config | prepare | send: where the outcome came from
    failure: str | None = None  # a DLQ failure kind decided before settling (expired, uncertain)


@dataclass(frozen=True, slots=True)
class Decision:
    action: str  # ack | retry | dead_letter
    failure: str = ""  # rejected | retries_exhausted | expired | uncertain
    delay_seconds: int = 0
    reason: str = ""
    extra: dict[str, str] = field(default_factory=dict)


@cache
def _sqs() -> Any:
    return boto3.client("sqs")


@cache
def _dynamodb() -> Any:
    return boto3.client("dynamodb")


def consume(
    sqs_event: dict[str, Any], destination_name: str, build: Callable[[], Destination]
) -> dict[str, Any]:
    """Entry point for a consumer handler: wires the AWS clients and settings from the environment."""
    prefix = destination_name.upper()
    return process_batch(
        sqs_event,
        destination_name=destination_name,
        build=build,
        ledger=Ledger(_dynamodb(), os.environ["IDEMPOTENCY_TABLE"], destination_name),
        dead_letters=DeadLetters(_sqs(), os.environ[f"{prefix}_DLQ_URL"], destination_name),
        max_receive_count=int(os.environ.get("MAX_RECEIVE_COUNT", "5")),
        visibility=Visibility(_sqs(), os.environ.get(f"{prefix}_QUEUE_URL", "")),
        retry_policy=RetryPolicy.from_environment(),
    )


def process_batch(
    sqs_event: dict[str, Any],
    *,
    destination_name: str,
    build: Callable[[], Destination],
    ledger: Any,
    dead_letters: DeadLetters,
    max_receive_count: int,
    visibility: Visibility | None = None,
    retry_policy: RetryPolicy | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    rng: random.Random | None = None,
) -> dict[str, Any]:
    metrics.add_dimension("destination", destination_name)
    records = [_record(raw) for raw in sqs_event.get("Records", [])]
    metrics.add_metric("Received", MetricUnit.Count, len(records))
    settled: list[Settled] = []
    parsed: list[tuple[Record, ConversionEvent]] = []
    for record in records:
        try:
            parsed.append((record, ConversionEvent.from_json(record.body)))
        except InvalidEvent as error:
            reason = f"malformed canonical event: {error}"
            settled.append(Settled(record, Outcome.reject(reason), stage="parse"))

    with redaction.known_values(value for _, event in parsed for value in redaction.event_values(event)):
        window = ACCEPTANCE_WINDOWS.get(destination_name)
        fresh = _drop_closed_windows(parsed, window, now(), settled)
        to_send = _claim(fresh, ledger, destination_name, settled)
        _prepare_and_send(to_send, destination_name, build, settled)
        decisions = [
            _decide(
                item,
                window=window,
                now=now(),
                max_receive_count=max_receive_count,
                policy=retry_policy or RetryPolicy(),
                rng=rng or random.Random(),
            )
            for item in settled
        ]
        _record_in_ledger(ledger, settled, decisions)
        failures = _settle(settled, decisions, dead_letters, visibility)
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failures]}


def _record(raw: dict[str, Any]) -> Record:
    attributes = raw.get("attributes") or {}
    sent = attributes.get("SentTimestamp")
    message_attributes = raw.get("messageAttributes") or {}
    correlation = (message_attributes.get("correlation_id") or {}).get("stringValue")
    replay = (message_attributes.get(REPLAY_ATTRIBUTE) or {}).get("stringValue") == "true"
    return Record(
        message_id=raw["messageId"],
        body=raw.get("body", ""),
        receive_count=int(attributes.get("ApproximateReceiveCount", "1")),
        receipt_handle=raw.get("receiptHandle", ""),
        sent_timestamp_ms=int(sent) if sent and str(sent).isdigit() else None,
        correlation_id=correlation or "",
        replay=replay,
    )


def _drop_closed_windows(
    parsed: list[tuple[Record, ConversionEvent]],
    window: AcceptanceWindow | None,
    moment: datetime,
    settled: list[Settled],
) -> list[tuple[Record, ConversionEvent]]:
    """A redelivered message whose window closed while it waited is not sent again.

    Only redeliveries (receive count > 1): on its first receive the destination's own validation
    decides (AppsFlyer restamps a late first attempt rather than losing it).
    """
    if window is None:
        return parsed
    fresh = []
    for record, event in parsed:
        closes = window.closes(event.occurred_at)
        if record.receive_count > 1 and moment >= closes:
            reason = f"acceptance window closed at {_iso(closes)} ({window.describe}) before this attempt"
            outcome = Outcome.reject(reason)
            settled.append(
                Settled(record, outcome, event.event_id, event.occurred_at, stage="window", failure="expired")
            )
        else:
            fresh.append((record, event))
    return fresh


def _claim(
    parsed: list[tuple[Record, ConversionEvent]],
    ledger: Any,
    destination_name: str,
    settled: list[Settled],
) -> list[tuple[Record, ConversionEvent]]:
    fresh: list[tuple[Record, ConversionEvent]] = []
    unique: list[tuple[Record, ConversionEvent]] = []
    seen_in_batch: set[str] = set()
    for record, event in parsed:
        if event.event_id in seen_in_batch:
            base = Settled(
                record, Outcome.skip("duplicate in the same batch"), event.event_id, event.occurred_at
            )
            settled.append(replace(base, stage="ledger"))
            metrics.add_metric("DuplicateSuppressed", MetricUnit.Count, 1)
        else:
            seen_in_batch.add(event.event_id)
            unique.append((record, event))
    claims = _claim_all(ledger, [(event.event_id, record.replay) for record, event in unique])
    for record, event in unique:
        base = Settled(record, Outcome.skip(""), event.event_id, event.occurred_at, stage="ledger")
        claim = claims[event.event_id]
        if isinstance(claim, Exception):
            # Without the ledger we cannot tell duplicates; retry rather than risk a double send.
            logger.error(
                "ledger claim failed", extra={"event_id": event.event_id, "error": claim.__class__.__name__}
            )
            settled.append(replace(base, outcome=Outcome.retry("delivery ledger unavailable")))
        elif claim.result is ClaimResult.DELIVERED:
            settled.append(replace(base, outcome=Outcome.skip("already delivered")))
            metrics.add_metric("DuplicateSuppressed", MetricUnit.Count, 1)
        elif claim.result is ClaimResult.HELD_UNCERTAIN:
            reason = "already in the DLQ as uncertain: replay it from there after checking the destination"
            settled.append(replace(base, outcome=Outcome.skip(reason)))
            metrics.add_metric("DuplicateSuppressed", MetricUnit.Count, 1)
        elif claim.result is ClaimResult.BUSY:
            outcome = Outcome.retry(
                "another consumer is sending this event", retry_after_seconds=claim.retry_after_seconds
            )
            settled.append(replace(base, outcome=outcome))
            metrics.add_metric("DuplicateInFlight", MetricUnit.Count, 1)
        elif claim.result is ClaimResult.UNCERTAIN and not RESEND_WHEN_UNCERTAIN.get(destination_name, True):
            reason = (
                "a previous attempt stopped between sending and recording the result, so the event may "
                f"already have reached {destination_name}, which does not de-duplicate: check it there "
                "before replaying"
            )
            settled.append(replace(base, outcome=Outcome.reject(reason), claimed=True, failure="uncertain"))
            metrics.add_metric("Uncertain", MetricUnit.Count, 1)
        else:
            if claim.result is ClaimResult.UNCERTAIN:
                metrics.add_metric("ResentAfterUncertain", MetricUnit.Count, 1)
                logger.warning(
                    "resending an event whose previous attempt was interrupted; the destination "
                    "de-duplicates it",
                    extra={"event_id": event.event_id},
                )
            fresh.append((record, event))
    return fresh


def _claim_all(ledger: Any, requests: list[tuple[str, bool]]) -> dict[str, Any]:
    """Each event's claim (or the exception it raised), by event id. Claims are conditional writes,
    which DynamoDB cannot batch, so a large batch claims them concurrently instead of one by one."""

    def claim(request: tuple[str, bool]) -> Any:
        event_id, replay = request
        try:
            return ledger.claim(event_id, replay=True) if replay else ledger.claim(event_id)
        except Exception as error:
            return error

    event_ids = [event_id for event_id, _ in requests]
    if len(requests) <= 1:
        return dict(zip(event_ids, map(claim, requests), strict=True))
    with ThreadPoolExecutor(max_workers=min(_CLAIM_CONCURRENCY, len(requests))) as pool:
        return dict(zip(event_ids, pool.map(claim, requests), strict=True))


def _prepare_and_send(
    to_send: list[tuple[Record, ConversionEvent]],
    destination_name: str,
    build: Callable[[], Destination],
    settled: list[Settled],
) -> None:
    if not to_send:
        return
    try:
        destination = build()
    except Exception as error:  # config or secret problem: keep the messages, say why
        logger.exception("destination could not be configured", extra={"destination": destination_name})
        reason = f"destination not configured: {error.__class__.__name__}: {redaction.redact(str(error))}"
        settled.extend(
            Settled(record, Outcome.retry(reason), event.event_id, event.occurred_at, True, "config")
            for record, event in to_send
        )
        return
    prepared_pairs: list[tuple[Record, Prepared]] = []
    for record, event in to_send:
        try:
            result = destination.prepare(event)
        except Exception as error:  # a mapping bug must not lose the batch or hide the others
            logger.exception("destination prepare raised", extra={"event_id": event.event_id})
            result = Outcome.retry(f"unexpected error while preparing: {error.__class__.__name__}")
        if isinstance(result, Outcome):
            settled.append(Settled(record, result, event.event_id, event.occurred_at, True, "prepare"))
        else:
            prepared_pairs.append((record, result))
            for reason in result.dropped_identifiers:
                metrics.add_metric(f"IdentifierDropped_{reason}", MetricUnit.Count, 1)
    if prepared_pairs:
        outcomes = _send(destination, [prepared for _, prepared in prepared_pairs])
        settled.extend(
            Settled(record, outcome, prepared.event.event_id, prepared.event.occurred_at, True, "send")
            for (record, prepared), outcome in zip(prepared_pairs, outcomes, strict=True)
        )


def _send(destination: Destination, batch: Sequence[Prepared]) -> list[Outcome]:
    try:
        outcomes = destination.send(batch)
    except Exception as error:  # a destination module must not lose a batch to a bug
        logger.exception("destination send raised", extra={"destination": destination.name})
        return [Outcome.retry(f"unexpected error while sending: {error.__class__.__name__}")] * len(batch)
    if len(outcomes) != len(batch):
        logger.error(
            "destination returned the wrong number of outcomes", extra={"destination": destination.name}
        )
        return [Outcome.retry("destination returned the wrong number of outcomes")] * len(batch)
    return outcomes


def _decide(
    item: Settled,
    *,
    window: AcceptanceWindow | None,
    now: datetime,
    max_receive_count: int,
    policy: RetryPolicy,
    rng: random.Random,
) -> Decision:
    outcome = item.outcome
    if item.failure:
        return Decision("dead_letter", item.failure, reason=outcome.reason)
    if outcome.status is Status.REJECT:
        # "uncertain": the destination may have recorded it (no answer came back) and does not dedupe.
        failure = "uncertain" if outcome.error_code == "uncertain" else "rejected"
        return Decision("dead_letter", failure, reason=outcome.reason)
    if outcome.status is not Status.RETRY:
        return Decision("ack")
    attempt = item.record.receive_count
    closes = window.closes(item.occurred_at) if window and item.occurred_at else None
    last = f"last failure: {outcome.reason or 'unspecified'}"
    if closes is not None and now >= closes:
        reason = f"acceptance window closed at {_iso(closes)} ({window.describe}); {last}"  # type: ignore[union-attr]
        return Decision("dead_letter", "expired", reason=reason, extra={"window_closes_at": _iso(closes)})
    if attempt >= max_receive_count:
        reason = f"still failing after {attempt} attempts (MaxReceiveCount); {last}"
        return Decision("dead_letter", "retries_exhausted", reason=reason)
    delay = policy.delay(attempt, outcome.retry_after_seconds, rng)
    if closes is not None and now + timedelta(seconds=delay) >= closes:
        reason = (
            f"acceptance window closes at {_iso(closes)} ({window.describe}), before the next attempt "  # type: ignore[union-attr]
            f"in {delay} s; {last}"
        )
        return Decision("dead_letter", "expired", reason=reason, extra={"window_closes_at": _iso(closes)})
    return Decision("retry", delay_seconds=delay, reason=outcome.reason)


_LEDGER_STATE_BY_FAILURE = {"expired": LedgerState.EXPIRED, "uncertain": LedgerState.UNCERTAIN}


def _record_in_ledger(ledger: Any, settled: list[Settled], decisions: list[Decision]) -> None:
    states: dict[str, LedgerState] = {}
    for item, decision in zip(settled, decisions, strict=True):
        if not item.claimed or not item.event_id:
            continue
        status = item.outcome.status
        if status is Status.DELIVERED:
            states[item.event_id] = LedgerState.DELIVERED
        elif status is Status.SKIP:
            states[item.event_id] = LedgerState.SKIPPED
        else:
            states[item.event_id] = _LEDGER_STATE_BY_FAILURE.get(decision.failure, LedgerState.FAILED)
    if not states:
        return
    try:
        ledger.record(states)
    except Exception:
        delivered = sum(1 for state in states.values() if state is LedgerState.DELIVERED)
        # Already accepted by the destination: acknowledging is right. The claims stay in progress
        # until their lease runs out; a redelivery then is "uncertain" (see RESEND_WHEN_UNCERTAIN).
        logger.exception("ledger write failed after sending", extra={"count": len(states)})
        metrics.add_metric("LedgerWriteFailed", MetricUnit.Count, delivered)


def _settle(
    settled: list[Settled],
    decisions: list[Decision],
    dead_letters: DeadLetters,
    visibility: Visibility | None,
) -> list[str]:
    """Count outcomes, dead-letter what is final, delay retries; return the ids SQS must redeliver."""
    failures: list[str] = []
    to_dead_letter: list[tuple[Settled, Decision]] = []
    delays: list[tuple[Record, int]] = []
    now_ms = int(time.time() * 1000)
    for item, decision in zip(settled, decisions, strict=True):
        outcome = item.outcome
        status = outcome.status
        metrics.add_metric(_METRIC_BY_STATUS[status], MetricUnit.Count, 1)
        if status is Status.DELIVERED and item.record.sent_timestamp_ms:
            latency = max(0, now_ms - item.record.sent_timestamp_ms)
            metrics.add_metric("DeliveryLatency", MetricUnit.Milliseconds, latency)
        if status is Status.REJECT:
            metrics.add_metric(f"Rejected_{reason_class(item)}", MetricUnit.Count, 1)
        if is_auth_error(outcome):
            metrics.add_metric("DestinationAuthError", MetricUnit.Count, 1)
        if decision.action == "dead_letter":
            to_dead_letter.append((item, decision))
            if decision.failure == "expired":
                metrics.add_metric("Expired", MetricUnit.Count, 1)
        elif decision.action == "retry":
            failures.append(item.record.message_id)
            delays.append((item.record, decision.delay_seconds))
        log_fields = {
            "event_id": item.event_id,
            "correlation_id": item.record.correlation_id or None,
            "message_id": item.record.message_id,
            "status": status.value,
            "reason": decision.reason or outcome.reason,
            "http_status": outcome.http_status,
            "error_code": outcome.error_code,
            "attempt": item.record.receive_count,
            "decision": decision.action,
        }
        if decision.failure:
            log_fields["failure"] = decision.failure
        if decision.action == "retry":
            log_fields["retry_in_seconds"] = decision.delay_seconds
        if status in (Status.REJECT, Status.RETRY):
            logger.warning("event not delivered", extra=log_fields)
        else:
            # Per-event success lines only at DEBUG: every line is redacted, and a 1,000-event Meta
            # batch would spend seconds of billed time on them. The batch summary below stays at INFO.
            logger.debug("event settled", extra=log_fields)
    by_status = Counter(item.outcome.status.value for item in settled)
    logger.info(
        "batch settled",
        extra={
            "records": len(settled),
            **by_status,
            "retrying": len(delays),
            "dead_lettering": len(to_dead_letter),
        },
    )
    if visibility is not None and delays:
        visibility.delay(delays)
    if to_dead_letter:
        failures.extend(dead_letters.put(to_dead_letter))
    return failures


_METRIC_BY_STATUS = {
    Status.DELIVERED: "Delivered",
    Status.RETRY: "Retried",
    Status.REJECT: "Rejected",
    Status.SKIP: "Skipped",
}


def is_auth_error(outcome: Outcome) -> bool:
    """The destination refused our credentials (Meta's token/permission codes, HTTP 401/403)."""
    if outcome.status not in (Status.REJECT, Status.RETRY):
        return False
    return bool(outcome.error_code and outcome.error_code.startswith("meta_auth_")) or (
        outcome.http_status in (401, 403)
    )


def reason_class(item: Settled) -> str:
    """A small fixed vocabulary for the Rejected_<class> metrics (reasons themselves are free text)."""
    if item.failure:
        return item.failure
    if is_auth_error(item.outcome):
        return "auth"
    return {"parse": "malformed", "prepare": "validation", "window": "expired"}.get(item.stage, "destination")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Visibility:
    """Delays each retry by its own backoff: ChangeMessageVisibility on the message's receipt handle."""

    def __init__(self, sqs_client: Any, queue_url: str) -> None:
        self._sqs = sqs_client
        self._queue_url = queue_url

    def delay(self, items: list[tuple[Record, int]]) -> None:
        usable = [(record, seconds) for record, seconds in items if record.receipt_handle]
        if not self._queue_url or not usable:
            return  # the queue's own visibility timeout applies
        for start in range(0, len(usable), _SQS_BATCH_LIMIT):
            chunk = usable[start : start + _SQS_BATCH_LIMIT]
            entries = [
                {"Id": str(index), "ReceiptHandle": record.receipt_handle, "VisibilityTimeout": seconds}
                for index, (record, seconds) in enumerate(chunk)
            ]
            try:
                response = self._sqs.change_message_visibility_batch(
                    QueueUrl=self._queue_url, Entries=entries
                )
            except Exception:
                # Not fatal: the message still comes back, after the queue's visibility timeout.
                logger.exception("could not set the retry delay", extra={"count": len(chunk)})
                continue
            if response.get("Failed"):
                logger.warning(
                    "retry delay not set for some messages", extra={"count": len(response["Failed"])}
                )


class DeadLetters:
    """Writes final failures to the destination's DLQ with their reason as message attributes."""

    def __init__(self, sqs_client: Any, queue_url: str, destination: str) -> None:
        self._sqs = sqs_client
        self._queue_url = queue_url
        self._destination = destination

    def put(self, items: list[tuple[Settled, Decision]] | list[tuple[Settled, str]]) -> list[str]:
        """Returns the message ids that could NOT be dead-lettered (SQS must keep those)."""
        normalized = [
            (settled, decision if isinstance(decision, Decision) else Decision("dead_letter", decision))
            for settled, decision in items
        ]
        not_written: list[str] = []
        for start in range(0, len(normalized), _SQS_BATCH_LIMIT):
            chunk = normalized[start : start + _SQS_BATCH_LIMIT]
            entries = [
                self._entry(index, settled, decision) for index, (settled, decision) in enumerate(chunk)
            ]
            try:
                response = self._sqs.send_message_batch(QueueUrl=self._queue_url, Entries=entries)
            except Exception:
                logger.exception("DLQ write failed", extra={"destination": self._destination})
                not_written.extend(settled.record.message_id for settled, _ in chunk)
                continue
            for failed in response.get("Failed", []):
                not_written.append(chunk[int(failed["Id"])][0].record.message_id)
            metrics.add_metric("DeadLettered", MetricUnit.Count, len(response.get("Successful", [])))
        return not_written

    def _entry(self, index: int, settled: Settled, decision: Decision) -> dict[str, Any]:
        outcome = settled.outcome
        reason = redaction.redact(decision.reason or outcome.reason or "unspecified")
        attributes = {
            "destination": self._destination,
            "failure": decision.failure,
            "reason": reason[:_REASON_LIMIT],
            "attempts": str(settled.record.receive_count),
            "original_message_id": settled.record.message_id,
        }
        if settled.event_id:
            attributes["event_id"] = settled.event_id
        if outcome.http_status is not None:
            attributes["http_status"] = str(outcome.http_status)
        if outcome.error_code:
            attributes["error_code"] = outcome.error_code
        attributes.update(decision.extra)
        return {
            "Id": str(index),
            "MessageBody": settled.record.body,
            "MessageAttributes": {
                name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
            },
        }
