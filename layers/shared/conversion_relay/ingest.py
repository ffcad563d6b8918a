"""Ingest: verify a provider's webhook, turn it into canonical events, dedupe it, enqueue it.

The answer is 2xx only once every message for every enabled destination is in SQS; any failure
before that is a 5xx, so the provider retries the whole delivery. A delivery is recorded with
Powertools Idempotency keyed on `provider:delivery_id`: a repeat of an accepted delivery is
acknowledged without enqueuing again, and a delivery that failed half-way is not recorded (the
record is removed when the function raises), so the provider's retry is processed in full.
Messages that reached SQS before such a failure are sent again on the retry; the consumers'
delivery ledger keeps them from reaching a destination twice.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError

from conversion_relay.config import Settings
from conversion_relay.errors import DeliveryInProgress, EnqueueFailed, PayloadTooLarge
from conversion_relay.http import new_session
from conversion_relay.observability import count_for, logger, metrics
from conversion_relay.providers import Provider, get_provider
from conversion_relay.redaction import event_values, known_values
from conversion_relay.secrets import get_secret

# Providers retry for up to 3 days (Stripe, Paddle); remember deliveries a little longer.
DELIVERY_MEMORY_SECONDS = 4 * 24 * 3600
_SQS_BATCH_LIMIT = 10
_ENQUEUE_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class IngestResult:
    status: str  # accepted | duplicate | ignored
    provider: str
    delivery_id: str
    event_type: str
    event_ids: tuple[str, ...] = ()
    destinations: tuple[str, ...] = ()

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": self.status,
            "provider": self.provider,
            "delivery_id": self.delivery_id,
        }
        if self.status == "ignored":
            body["reason"] = f"event type {self.event_type!r} does not map to a conversion"
        else:
            body["event_ids"] = list(self.event_ids)
            body["destinations"] = list(self.destinations)
        return body


@cache
def _sqs() -> Any:
    return boto3.client("sqs")


@cache
def _session() -> Any:
    """For providers whose webhooks must be completed from their API (PortOne, Toss)."""
    return new_session(pool_size=4)


@cache
def _idempotency_config() -> IdempotencyConfig:
    return IdempotencyConfig(
        event_key_jmespath="delivery_key",
        expires_after_seconds=DELIVERY_MEMORY_SECONDS,
        raise_on_no_idempotency_key=True,
    )


@cache
def _enqueue_once() -> Any:
    """The idempotent enqueue, built on first use so importing this module needs no AWS settings."""
    persistence = DynamoDBPersistenceLayer(table_name=os.environ["IDEMPOTENCY_TABLE"])

    @idempotent_function(
        data_keyword_argument="delivery", config=_idempotency_config(), persistence_store=persistence
    )
    def enqueue_delivery(delivery: dict[str, Any]) -> dict[str, Any]:
        enqueue(delivery["messages"], delivery["queue_urls"], delivery["correlation_id"])
        return {"attempt": delivery["attempt"]}

    return enqueue_delivery


def receive(
    provider_name: str,
    headers: Mapping[str, str],
    body: bytes,
    settings: Settings,
    lambda_context: Any = None,
    *,
    source_ip: str | None = None,
    provider: Provider | None = None,
) -> IngestResult:
    """Raises errors.WebhookRejected subclasses; the handler turns them into HTTP answers.

    `provider` overrides the lookup of `provider_name` in the registry (POST /events passes the
    first-party handler); `provider_name` still names the secret and prefixes the dedupe key.
    """
    if provider is None:
        provider = get_provider(provider_name)
    check_source = getattr(provider, "check_source", None)
    if check_source is not None:
        check_source(source_ip)
    if len(body) > settings.max_body_bytes:
        raise PayloadTooLarge(f"body is {len(body)} bytes; the limit is {settings.max_body_bytes}")
    lowered = {name.lower(): value for name, value in headers.items()}
    secret = get_secret(provider_name)
    provider.verify_request(lowered, body, secret, settings.webhook_tolerance_seconds)
    payload = provider.parse(body)
    resolve = getattr(provider, "resolve", None)
    if resolve is not None:
        payload = resolve(payload, lowered, secret, _session())
    delivery_id = provider.delivery_id(payload)
    event_type = provider.event_type(payload)
    metrics.add_metric("WebhookReceived", MetricUnit.Count, 1)
    events = provider.to_events(payload)
    result = IngestResult("accepted", provider_name, delivery_id, event_type)
    if not events:
        metrics.add_metric("WebhookIgnored", MetricUnit.Count, 1)
        logger.info("webhook ignored", extra={"provider": provider_name, "event_type": event_type})
        return replace(result, status="ignored")

    attempt = uuid.uuid4().hex
    delivery = {
        "delivery_key": f"{provider_name}:{delivery_id}",
        "attempt": attempt,
        "correlation_id": f"{provider_name}:{delivery_id}",
        "messages": [{"event_id": event.event_id, "body": event.to_json()} for event in events],
        "queue_urls": [settings.queue_urls[name] for name in settings.enabled_destinations],
    }
    enqueue_delivery = _enqueue_once()
    if lambda_context is not None:
        _idempotency_config().register_lambda_context(lambda_context)
    # Anything logged while the events are in flight (botocore at DEBUG included) has their
    # personal values masked, not only the shapes the redaction rules recognise.
    personal = [value for event in events for value in event_values(event)]
    try:
        with known_values(personal):
            outcome = enqueue_delivery(delivery=delivery)
    except IdempotencyAlreadyInProgressError:
        raise DeliveryInProgress(
            f"delivery {delivery_id} is being processed by another request; retry later"
        ) from None
    result = replace(
        result,
        event_ids=tuple(event.event_id for event in events),
        destinations=settings.enabled_destinations,
    )
    if outcome.get("attempt") != attempt:
        metrics.add_metric("WebhookDuplicate", MetricUnit.Count, 1)
        logger.info(
            "duplicate delivery acknowledged", extra={"provider": provider_name, "delivery_id": delivery_id}
        )
        return replace(result, status="duplicate")
    metrics.add_metric("EventsEnqueued", MetricUnit.Count, len(events) * len(settings.enabled_destinations))
    for destination in settings.enabled_destinations:
        count_for(destination, "Enqueued", len(events))
    logger.info(
        "webhook accepted",
        extra={"provider": provider_name, "delivery_id": delivery_id, "event_ids": list(result.event_ids)},
    )
    return result


def enqueue(messages: list[dict[str, str]], queue_urls: list[str], correlation_id: str) -> None:
    """Put every message on every queue, or raise EnqueueFailed."""
    for queue_url in queue_urls:
        for start in range(0, len(messages), _SQS_BATCH_LIMIT):
            chunk = messages[start : start + _SQS_BATCH_LIMIT]
            pending = {
                str(index): {
                    "Id": str(index),
                    "MessageBody": message["body"],
                    "MessageAttributes": {
                        "correlation_id": {"DataType": "String", "StringValue": correlation_id},
                        "event_id": {"DataType": "String", "StringValue": message["event_id"]},
                    },
                }
                for index, message in enumerate(chunk)
            }
            for _ in range(_ENQUEUE_ATTEMPTS):
                try:
                    response = _sqs().send_message_batch(QueueUrl=queue_url, Entries=list(pending.values()))
                except Exception as error:
                    logger.exception("SQS send failed")
                    raise EnqueueFailed(
                        f"could not enqueue ({error.__class__.__name__}); retry the delivery"
                    ) from None
                for sent in response.get("Successful", []):
                    pending.pop(sent["Id"], None)
                if not pending:
                    break
            if pending:
                raise EnqueueFailed(f"{len(pending)} message(s) could not be enqueued; retry the delivery")
