"""CPU time per webhook in the ingest, with AWS replaced at the boundary, beside the HMAC check alone.

Three levels, each over the same distinct signed deliveries (a repeat would short-circuit as a duplicate):
  - hmac:     HMAC-SHA256 of "t.body" and a constant-time compare: the floor any verifier pays;
  - receive:  conversion_relay.ingest.receive: verify + parse + to_events + the SQS messages, through the
              real Powertools idempotency code with an in-memory persistence layer and an SQS client
              stub that accepts every entry;
  - handler:  functions/ingest/app.handler on an API Gateway v2 event: adds routing, Logger context,
              and the EMF metrics flush, i.e. what Lambda bills.
The stubs also count what the real services would have been asked (DynamoDB writes, SQS requests) and
the log + EMF bytes written; bench.cost prices those counts.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from types import ModuleType
from typing import Any

from bench import aws_stubs, common, fixtures

ENV = {
    **common.FUNCTION_ENV,
    "POWERTOOLS_SERVICE_NAME": "ingest",
    "ENABLED_DESTINATIONS": "ga4,meta,appsflyer",
    "GA4_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/ga4",
    "META_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/meta",
    "APPSFLYER_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/appsflyer",
    "STRIPE_SECRET_NAME": "bench/stripe",
    "WEBHOOK_TOLERANCE_SECONDS": "300",
}


def in_memory_persistence() -> Any:
    """A Powertools persistence layer in a dict, counting the writes DynamoDB would bill."""
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyItemAlreadyExistsError,
        IdempotencyItemNotFoundError,
    )
    from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer

    class InMemoryPersistence(BasePersistenceLayer):
        def __init__(self, table_name: str = "") -> None:
            super().__init__()
            self.records: dict[str, Any] = {}
            self.writes = 0
            self.reads = 0

        def _get_record(self, idempotency_key: str) -> Any:
            self.reads += 1
            try:
                return self.records[idempotency_key]
            except KeyError:
                raise IdempotencyItemNotFoundError from None

        def _put_record(self, data_record: Any) -> None:
            self.writes += 1  # a conditional PutItem is billed even when the condition fails
            if data_record.idempotency_key in self.records:
                raise IdempotencyItemAlreadyExistsError(
                    old_data_record=self.records[data_record.idempotency_key]
                )
            self.records[data_record.idempotency_key] = data_record

        def _update_record(self, data_record: Any) -> None:
            self.writes += 1
            self.records[data_record.idempotency_key] = data_record

        def _delete_record(self, data_record: Any) -> None:
            self.writes += 1
            self.records.pop(data_record.idempotency_key, None)

    return InMemoryPersistence


class Boundary:
    """Replaces the AWS calls the ingest makes, leaving every line of our code and Powertools' in place."""

    def __init__(self) -> None:
        from conversion_relay import ingest

        # boto3.client is rerouted for the whole process, so a renamed helper cannot reach real AWS.
        self.sqs = aws_stubs.install().sqs
        self.persistence: Any = None
        persistence_class = in_memory_persistence()

        def persistence_factory(table_name: str) -> Any:
            self.persistence = persistence_class(table_name)
            return self.persistence

        ingest.get_secret = lambda component: {
            "webhook_secrets": [fixtures.STRIPE_SECRET]
        }  # cached in Lambda
        ingest._sqs.cache_clear()
        ingest.DynamoDBPersistenceLayer = persistence_factory
        ingest._enqueue_once.cache_clear()


def load_handler(name: str) -> ModuleType:
    path = common.ROOT / "functions" / name / "app.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}_app", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def api_event(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": "POST /webhooks/{provider}",
        "rawPath": "/webhooks/stripe",
        "rawQueryString": "",
        "headers": {**headers, "content-length": str(len(body)), "host": "bench.execute-api.amazonaws.com"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "bench",
            "domainName": "bench.execute-api.amazonaws.com",
            "http": {
                "method": "POST",
                "path": "/webhooks/stripe",
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.1",
                "userAgent": "Stripe/1.0",
            },
            "requestId": "bench",
            "routeKey": "POST /webhooks/{provider}",
            "stage": "$default",
            "time": "28/Nov/2026:00:00:00 +0000",
            "timeEpoch": int(time.time() * 1000),
        },
        "pathParameters": {"provider": "stripe"},
        "body": body.decode(),
        "isBase64Encoded": False,
    }


def run(count: int = 400, repeats: int = 5) -> dict[str, Any]:
    os.environ.update(ENV)
    from conversion_relay import ingest
    from conversion_relay.config import Settings
    from conversion_relay.observability import logger
    from conversion_relay.providers import stripe
    from conversion_relay.signatures import constant_time_equal, hmac_sha256_hex

    boundary = Boundary()
    app = load_handler("ingest")
    context = common.LambdaContext("bench-ingest", 512)
    key = fixtures.STRIPE_SECRET.encode()

    def hmac_only(webhook: tuple[dict[str, str], bytes]) -> None:
        headers, body = webhook
        timestamp, expected = headers["stripe-signature"][2:].split(",v1=")
        constant_time_equal(hmac_sha256_hex(key, timestamp.encode() + b"." + body), expected)

    def verify_only(webhook: tuple[dict[str, str], bytes]) -> None:
        stripe.verify(webhook[0], webhook[1], [fixtures.STRIPE_SECRET], 300)

    def log_line(events: list[Any]) -> None:
        # the one INFO line receive() writes per accepted webhook, through the shared Logger
        logger.info(
            "webhook accepted",
            extra={"provider": "stripe", "delivery_id": "evt_x", "event_ids": [e.event_id for e in events]},
        )

    def receive(webhook: tuple[dict[str, str], bytes]) -> None:
        result = ingest.receive("stripe", webhook[0], webhook[1], Settings.from_env(), context)
        if result.status != "accepted":
            raise AssertionError(f"ingest answered {result.status}, expected accepted")

    def handler(event: dict[str, Any]) -> None:
        response = app.handler(event, context)
        if response["statusCode"] != 200:
            raise AssertionError(f"handler answered {response['statusCode']}: {response.get('body')}")

    samples: dict[str, list[float]] = {
        name: []
        for name in ("hmac", "verify", "parse", "to_events", "messages", "log_line", "receive", "handler")
    }
    sink = common.CountingSink()
    with common.captured_output(sink):
        receive(fixtures.signed_webhooks(1)[0])  # first call builds the idempotency wiring
        handler(api_event(*fixtures.signed_webhooks(1)[0]))
        for _ in range(repeats):
            webhooks = fixtures.signed_webhooks(count)
            samples["hmac"].append(common.cpu_us_per_item(hmac_only, webhooks))
            samples["verify"].append(common.cpu_us_per_item(verify_only, webhooks))
            payloads = [stripe.parse(body) for _, body in webhooks]
            samples["parse"].append(common.cpu_us_per_item(stripe.parse, [body for _, body in webhooks]))
            samples["to_events"].append(common.cpu_us_per_item(stripe.to_events, payloads))
            events_per_webhook = [stripe.to_events(payload) for payload in payloads]

            def message_bodies(events: list[Any]) -> list[str]:
                return [event.to_json() for event in events]

            samples["messages"].append(common.cpu_us_per_item(message_bodies, events_per_webhook))
            samples["log_line"].append(common.cpu_us_per_item(log_line, events_per_webhook))
            samples["receive"].append(common.cpu_us_per_item(receive, webhooks))
            events = [api_event(*webhook) for webhook in fixtures.signed_webhooks(count)]
            sqs_before, writes_before = boundary.sqs.billed_requests, boundary.persistence.writes
            sink.bytes = 0
            samples["handler"].append(common.cpu_us_per_item(handler, events))
            handler_log_bytes = sink.bytes / count
            sqs_per_webhook = (boundary.sqs.billed_requests - sqs_before) / count
            writes_per_webhook = (boundary.persistence.writes - writes_before) / count
    medians = {name: common.median(values) for name, values in samples.items()}
    body_bytes = len(fixtures.signed_webhooks(1)[0][1])
    return {
        "webhooks": count,
        "repeats": repeats,
        "body_bytes": body_bytes,
        "destinations": 3,
        "hmac_us": medians["hmac"],
        "verify_us": medians["verify"],
        "parse_us": medians["parse"],
        "to_events_us": medians["to_events"],
        "messages_us": medians["messages"],
        "log_line_us": medians["log_line"],
        # idempotency (in memory), SQS entries, Settings, the log line and metrics: receive minus stages
        "rest_of_receive_us": medians["receive"]
        - medians["verify"]
        - medians["parse"]
        - medians["to_events"]
        - medians["messages"],
        "receive_us": medians["receive"],
        "handler_us": medians["handler"],
        "ratio_receive_to_hmac": medians["receive"] / medians["hmac"],
        "ratio_handler_to_hmac": medians["handler"] / medians["hmac"],
        "sqs_requests_per_webhook": sqs_per_webhook,
        "dynamodb_writes_per_webhook": writes_per_webhook,
        "log_bytes_per_webhook": handler_log_bytes,
    }


def main() -> None:
    result = run()
    target = common.out_path(sys.argv)
    if target:
        common.write_json(target, result)
    print(
        f"ingest: HMAC {result['hmac_us']:.1f} us, verify {result['verify_us']:.1f} us, parse "
        f"{result['parse_us']:.0f} us, to_events {result['to_events_us']:.0f} us, messages "
        f"{result['messages_us']:.0f} us, log line {result['log_line_us']:.0f} us, receive "
        f"{result['receive_us']:.0f} us ({result['ratio_receive_to_hmac']:.0f}x HMAC), handler "
        f"{result['handler_us']:.0f} us; {result['sqs_requests_per_webhook']:.1f} SQS requests, "
        f"{result['dynamodb_writes_per_webhook']:.1f} DynamoDB writes, "
        f"{result['log_bytes_per_webhook']:.0f} log bytes per webhook"
    )


if __name__ == "__main__":
    main()
