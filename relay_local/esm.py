"""An emulator of Lambda's SQS event source mapping (ESM) for one consumer function.

What it reproduces, from the settings in template.yaml:
- receive up to BatchSize messages (10 per ReceiveMessage call), waiting up to
  MaximumBatchingWindowInSeconds to fill the batch;
- build the Lambda SQS event (Records in Lambda's shape) and call the handler with a context whose
  remaining time comes from the function's Timeout;
- partial batch responses (ReportBatchItemFailures): delete every record not listed in
  batchItemFailures; a malformed response or a raised exception fails the whole batch, as Lambda does;
- failed records become visible again after the queue's VisibilityTimeout, and SQS (moto) moves a
  message to the DLQ on the receive after its receive count reached maxReceiveCount.

What it does not: MaximumConcurrency (one poller per function; invocations run one at a time, see
lambda_context.LambdaInvoker), and Lambda's scaling of pollers.

`fast_retries` (tests): failed records are made visible again at once (ChangeMessageVisibility 0)
instead of after the visibility timeout, so a retry test does not wait 180 s.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from relay_local.lambda_context import Handler, LambdaInvoker
from relay_local.template_settings import LOCAL_REGION, ConsumerSettings

log = logging.getLogger("relay_local")

SQS_RECEIVE_LIMIT = 10
LONG_POLL_SECONDS = 1  # background polling: short enough that stop() is prompt
ERROR_BACKOFF_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class PollResult:
    received: int = 0
    deleted: int = 0
    failed: tuple[str, ...] = ()  # message ids left for SQS to redeliver
    handler_error: str | None = None  # exception class name when the handler raised
    records: tuple[dict[str, Any], ...] = field(default=(), repr=False)


class SqsEventSource:
    def __init__(
        self,
        consumer: ConsumerSettings,
        handler: Handler,
        *,
        sqs_client: Any,
        queue_url: str,
        queue_arn: str,
        invoker: LambdaInvoker,
        fast_retries: bool = False,
        region: str = LOCAL_REGION,
    ) -> None:
        self.consumer = consumer
        self.handler = handler
        self._sqs = sqs_client
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self._invoker = invoker
        self.fast_retries = fast_retries
        self.region = region
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None
        self.invocations = 0

    @property
    def name(self) -> str:
        return self.consumer.destination

    # -- one poll ---------------------------------------------------------------------------------------
    def poll_once(self, *, wait_seconds: int = 0, honor_batching_window: bool = True) -> PollResult:
        """Receive one batch, invoke the handler, settle the batch. Nothing received: PollResult(0).

        `honor_batching_window=False` (drain) stops filling the batch at the first empty receive
        instead of waiting out MaximumBatchingWindowInSeconds.
        """
        messages = self._receive_batch(wait_seconds, honor_batching_window)
        if not messages:
            return PollResult()
        records = [self._record(message) for message in messages]
        handles = {message["MessageId"]: message["ReceiptHandle"] for message in messages}
        failed, error = self._invoke(records)
        done = [message_id for message_id in handles if message_id not in failed]
        self._delete(done, handles)
        if failed and self.fast_retries:
            self._make_visible([handles[message_id] for message_id in failed])
        return PollResult(len(messages), len(done), tuple(failed), error, tuple(records))

    def _receive_batch(self, wait_seconds: int, honor_batching_window: bool) -> list[dict[str, Any]]:
        batch_size = self.consumer.batch_size
        window = self.consumer.batching_window_seconds if honor_batching_window else 0
        messages: list[dict[str, Any]] = []
        deadline: float | None = None
        while len(messages) < batch_size and not (messages and self._stop.is_set()):
            if messages:
                remaining = (deadline or 0) - time.monotonic()
                if remaining <= 0 and window:
                    break
                # One second at a time, so that stop() does not wait out a long batching window.
                wait = min(1, max(0, int(remaining + 0.999))) if window else 0
            else:
                wait = wait_seconds
            response = self._sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(SQS_RECEIVE_LIMIT, batch_size - len(messages)),
                WaitTimeSeconds=wait,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            received = response.get("Messages", [])
            if not received:
                if not messages or not window:
                    break
                continue
            if not messages:
                deadline = time.monotonic() + window
            messages.extend(received)
        return messages

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        record: dict[str, Any] = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message.get("Body", ""),
            "attributes": dict(message.get("Attributes") or {}),
            "messageAttributes": {
                name: _lambda_attribute(value)
                for name, value in (message.get("MessageAttributes") or {}).items()
            },
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": self.region,
        }
        if "MD5OfMessageAttributes" in message:
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        return record

    def _invoke(self, records: list[dict[str, Any]]) -> tuple[set[str], str | None]:
        everything = {record["messageId"] for record in records}
        self.invocations += 1
        try:
            response = self._invoker.invoke(self.consumer.function, self.handler, {"Records": records})
        except Exception as error:  # Lambda: a function error fails the whole batch
            log.exception(
                "%s raised: the whole batch of %d will be retried",
                self.consumer.function.logical_id,
                len(records),
            )
            return everything, error.__class__.__name__
        if "ReportBatchItemFailures" not in self.consumer.function_response_types:
            return set(), None
        failures = _batch_item_failures(response, everything)
        if failures is None:
            log.error(
                "%s returned an invalid partial batch response: the whole batch will be retried",
                self.consumer.function.logical_id,
            )
            return everything, "InvalidBatchItemFailures"
        return failures, None

    def _delete(self, message_ids: list[str], handles: dict[str, str]) -> None:
        for start in range(0, len(message_ids), SQS_RECEIVE_LIMIT):
            chunk = message_ids[start : start + SQS_RECEIVE_LIMIT]
            entries = [{"Id": str(i), "ReceiptHandle": handles[m]} for i, m in enumerate(chunk)]
            response = self._sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
            if response.get("Failed"):
                log.warning("%s: %d message(s) could not be deleted", self.name, len(response["Failed"]))

    def _make_visible(self, receipt_handles: list[str]) -> None:
        for start in range(0, len(receipt_handles), SQS_RECEIVE_LIMIT):
            chunk = receipt_handles[start : start + SQS_RECEIVE_LIMIT]
            self._sqs.change_message_visibility_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0} for i, h in enumerate(chunk)
                ],
            )

    # -- background mode --------------------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"esm-{self.name}", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def request_pause(self) -> None:
        """Take no new batch; pause() also waits for the one in flight (so drain runs alone)."""
        self._paused.set()

    def pause(self, timeout: float = 60.0) -> None:
        self._paused.set()
        if self._thread is not None and not self._idle.wait(timeout):
            raise TimeoutError(f"{self.name} poller did not finish its batch within {timeout} s")

    def resume(self) -> None:
        self._paused.clear()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._paused.is_set():
                time.sleep(0.05)
                continue
            self._idle.clear()
            try:
                if self._paused.is_set():
                    continue
                self.poll_once(wait_seconds=LONG_POLL_SECONDS)
            except Exception:
                if self._stop.is_set():
                    break
                log.exception("%s poller failed; retrying in %.0f s", self.name, ERROR_BACKOFF_SECONDS)
                self._stop.wait(ERROR_BACKOFF_SECONDS)
            finally:
                self._idle.set()


def _lambda_attribute(value: dict[str, Any]) -> dict[str, Any]:
    """SQS API shape (StringValue, DataType) -> Lambda event shape (stringValue, dataType, ...)."""
    converted: dict[str, Any] = {
        "stringListValues": list(value.get("StringListValues") or []),
        "binaryListValues": list(value.get("BinaryListValues") or []),
        "dataType": value.get("DataType", "String"),
    }
    if "StringValue" in value:
        converted["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        raw = value["BinaryValue"]
        converted["binaryValue"] = base64.b64encode(raw).decode("ascii") if isinstance(raw, bytes) else raw
    return converted


def _batch_item_failures(response: Any, batch: set[str]) -> set[str] | None:
    """The message ids to retry, or None when the response is malformed (Lambda then retries the batch).

    Lambda treats an empty/None response or an empty list as "all succeeded" and a failure entry with
    a missing, empty or unknown itemIdentifier as a failure of the whole batch.
    """
    if response is None:
        return set()
    if not isinstance(response, dict):
        return None
    failures = response.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return None
    identifiers: set[str] = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not identifier or identifier not in batch:
            return None
        identifiers.add(identifier)
    return identifiers
