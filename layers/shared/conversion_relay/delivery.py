"""The one delivery routine every destination consumer runs on its SQS batch.

parse each record -> drop what the ledger says is delivered -> map + validate (prepare) ->
send the prepared events together (destinations batch them as their API allows) -> classify.

Returns the SQS partial batch response. Retryable failures are reported as batchItemFailures so
SQS redelivers them; permanent ones are written to the destination's DLQ with the reason and then
acknowledged; so is a retryable failure on its last allowed receive, so every DLQ message carries
a reason. A record is only acknowledged once its fate is durable (delivered, or in the DLQ):
if the DLQ write fails, the record is reported as failed and SQS keeps it.

Powertools' BatchProcessor handles records one at a time; GA4 and Meta need the whole batch
before they can send, so the routine works on the batch and shapes the same response itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit

from conversion_relay.destinations.base import Destination, Outcome, Prepared, Status
from conversion_relay.ledger import Ledger
from conversion_relay.model import ConversionEvent, InvalidEvent
from conversion_relay.observability import logger, metrics

_REASON_LIMIT = 1000
_SQS_BATCH_LIMIT = 10


@dataclass(frozen=True, slots=True)
class Record:
    message_id: str
    body: str
    receive_count: int


@dataclass(frozen=True, slots=True)
class Settled:
    """A record's final word for this attempt."""

    record: Record
    outcome: Outcome
    event_id: str = ""


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
    )


def process_batch(
    sqs_event: dict[str, Any],
    *,
    destination_name: str,
    build: Callable[[], Destination],
    ledger: Ledger,
    dead_letters: DeadLetters,
    max_receive_count: int,
) -> dict[str, Any]:
    metrics.add_dimension("destination", destination_name)
    records = [_record(raw) for raw in sqs_event.get("Records", [])]
    settled: list[Settled] = []
    parsed: list[tuple[Record, ConversionEvent]] = []
    for record in records:
        try:
            parsed.append((record, ConversionEvent.from_json(record.body)))
        except InvalidEvent as error:
            settled.append(Settled(record, Outcome.reject(f"malformed canonical event: {error}")))

    to_send = _drop_delivered(parsed, ledger, settled)
    prepared_pairs: list[tuple[Record, Prepared]] = []
    if to_send:
        try:
            destination = build()
        except Exception as error:  # config or secret problem: keep the messages, say why
            logger.exception("destination could not be configured", extra={"destination": destination_name})
            reason = f"destination not configured: {error.__class__.__name__}: {error}"
            settled.extend(
                Settled(record, Outcome.retry(reason), event.event_id) for record, event in to_send
            )
            to_send = []
        for record, event in to_send:
            result = destination.prepare(event)
            if isinstance(result, Outcome):
                settled.append(Settled(record, result, event.event_id))
            else:
                prepared_pairs.append((record, result))
                for reason in result.dropped_identifiers:
                    metrics.add_metric(f"IdentifierDropped_{reason}", MetricUnit.Count, 1)
        if prepared_pairs:
            outcomes = _send(destination, [prepared for _, prepared in prepared_pairs])
            settled.extend(
                Settled(record, outcome, prepared.event.event_id)
                for (record, prepared), outcome in zip(prepared_pairs, outcomes, strict=True)
            )

    delivered_ids = [s.event_id for s in settled if s.outcome.status is Status.DELIVERED]
    if delivered_ids:
        try:
            ledger.mark_delivered(delivered_ids)
        except Exception:
            # Already accepted by the destination: acknowledging is right. The cost is that an SQS
            # duplicate of these messages could be sent again; count it so it is visible.
            logger.exception("ledger write failed after delivery", extra={"count": len(delivered_ids)})
            metrics.add_metric("LedgerWriteFailed", MetricUnit.Count, len(delivered_ids))

    failures = _settle(settled, dead_letters, max_receive_count)
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failures]}


def _record(raw: dict[str, Any]) -> Record:
    attributes = raw.get("attributes") or {}
    return Record(
        message_id=raw["messageId"],
        body=raw.get("body", ""),
        receive_count=int(attributes.get("ApproximateReceiveCount", "1")),
    )


def _drop_delivered(
    parsed: list[tuple[Record, ConversionEvent]], ledger: Ledger, settled: list[Settled]
) -> list[tuple[Record, ConversionEvent]]:
    if not parsed:
        return []
    try:
        already = ledger.delivered(event.event_id for _, event in parsed)
    except Exception:
        # Without the ledger we cannot tell duplicates; retry rather than risk a double send.
        logger.exception("ledger lookup failed")
        settled.extend(
            Settled(r, Outcome.retry("delivery ledger unavailable"), e.event_id) for r, e in parsed
        )
        return []
    fresh: list[tuple[Record, ConversionEvent]] = []
    seen_in_batch: set[str] = set()
    for record, event in parsed:
        if event.event_id in already or event.event_id in seen_in_batch:
            settled.append(Settled(record, Outcome.skip("already delivered"), event.event_id))
            metrics.add_metric("DuplicateSuppressed", MetricUnit.Count, 1)
        else:
            seen_in_batch.add(event.event_id)
            fresh.append((record, event))
    return fresh


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


def _settle(settled: list[Settled], dead_letters: DeadLetters, max_receive_count: int) -> list[str]:
    """Count outcomes, dead-letter what is final, and return the message ids SQS must redeliver."""
    failures: list[str] = []
    to_dead_letter: list[tuple[Settled, str]] = []
    for item in settled:
        status = item.outcome.status
        metrics.add_metric(_METRIC_BY_STATUS[status], MetricUnit.Count, 1)
        if status is Status.REJECT:
            to_dead_letter.append((item, "rejected"))
        elif status is Status.RETRY:
            if item.record.receive_count >= max_receive_count:
                to_dead_letter.append((item, "retries_exhausted"))
            else:
                failures.append(item.record.message_id)
        log_fields = {
            "event_id": item.event_id,
            "message_id": item.record.message_id,
            "status": status.value,
            "reason": item.outcome.reason,
            "http_status": item.outcome.http_status,
            "attempt": item.record.receive_count,
        }
        if status in (Status.REJECT, Status.RETRY):
            logger.warning("event not delivered", extra=log_fields)
        else:
            logger.info("event settled", extra=log_fields)
    if to_dead_letter:
        failures.extend(dead_letters.put(to_dead_letter))
    return failures


_METRIC_BY_STATUS = {
    Status.DELIVERED: "Delivered",
    Status.RETRY: "Retried",
    Status.REJECT: "Rejected",
    Status.SKIP: "Skipped",
}


class DeadLetters:
    """Writes final failures to the destination's DLQ with their reason as message attributes."""

    def __init__(self, sqs_client: Any, queue_url: str, destination: str) -> None:
        self._sqs = sqs_client
        self._queue_url = queue_url
        self._destination = destination

    def put(self, items: list[tuple[Settled, str]]) -> list[str]:
        """Returns the message ids that could NOT be dead-lettered (SQS must keep those)."""
        not_written: list[str] = []
        for start in range(0, len(items), _SQS_BATCH_LIMIT):
            chunk = items[start : start + _SQS_BATCH_LIMIT]
            entries = [self._entry(index, settled, kind) for index, (settled, kind) in enumerate(chunk)]
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

    def _entry(self, index: int, settled: Settled, kind: str) -> dict[str, Any]:
        outcome = settled.outcome
        attributes = {
            "destination": self._destination,
            "failure": kind,
            "reason": (outcome.reason or "unspecified")[:_REASON_LIMIT],
            "attempts": str(settled.record.receive_count),
            "original_message_id": settled.record.message_id,
        }
        if settled.event_id:
            attributes["event_id"] = settled.event_id
        if outcome.http_status is not None:
            attributes["http_status"] = str(outcome.http_status)
        if outcome.error_code:
            attributes["error_code"] = outcome.error_code
        return {
            "Id": str(index),
            "MessageBody": settled.record.body,
            "MessageAttributes": {
                name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
            },
        }
