"""In-memory stand-ins for the DynamoDB and SQS clients, counting what the real services would bill.

They replace `boto3.client(...)` for the whole benchmark process, so every module that talks to AWS
(the ledger, the DLQ writer, the visibility changer, AppsFlyer's link store) is covered without
knowing where each builds its client. Only the calls the relay makes are implemented; any other
raises AttributeError, so a new call shows up as a loud benchmark failure, not a silent zero.
Billing rules (per item): a write of up to 1 KB is 1 write unit; an eventually consistent read of up
to 4 KB is 0.5 read unit, a strongly consistent one 1; a conditional write is billed even when its
condition fails. SQS bills each 64 KB chunk of a request's payload as one request.
"""

from __future__ import annotations

import json
import math
from typing import Any


class _Exceptions:
    class ConditionalCheckFailedException(Exception):
        def __init__(self, item: dict[str, Any] | None = None) -> None:
            super().__init__("The conditional request failed")
            self.response = {"Error": {"Code": "ConditionalCheckFailedException"}, "Item": item or {}}

    class ClientError(Exception):
        pass


def _write_units(item: dict[str, Any]) -> int:
    return max(1, math.ceil(len(json.dumps(item)) / 1024))


class StubDynamoDB:
    exceptions = _Exceptions

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.calls = 0
        self.write_units = 0.0
        self.read_units = 0.0

    @staticmethod
    def _key(key_or_item: dict[str, Any]) -> str:
        return str(key_or_item["id"]["S"])

    def put_item(self, TableName: str, Item: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        self.write_units += _write_units(Item)
        key = self._key(Item)
        # Fresh events only in these benchmarks: a condition can only fail on a key we already hold.
        if "ConditionExpression" in kwargs and key in self.items:
            raise self.exceptions.ConditionalCheckFailedException(self.items[key])
        self.items[key] = Item
        return {}

    def update_item(self, TableName: str, Key: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        self.write_units += 1
        self.items.setdefault(self._key(Key), dict(Key))
        return {"Attributes": self.items[self._key(Key)]}

    def delete_item(self, TableName: str, Key: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        self.write_units += 1
        self.items.pop(self._key(Key), None)
        return {}

    def get_item(self, TableName: str, Key: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        self.read_units += 1 if kwargs.get("ConsistentRead") else 0.5
        item = self.items.get(self._key(Key))
        return {"Item": item} if item else {}

    def batch_get_item(self, RequestItems: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        responses: dict[str, list[dict[str, Any]]] = {}
        for table, request in RequestItems.items():
            per_item = 1 if request.get("ConsistentRead") else 0.5
            found = []
            for key in request["Keys"]:
                self.read_units += per_item
                if self._key(key) in self.items:
                    found.append(self.items[self._key(key)])
            responses[table] = found
        return {"Responses": responses, "UnprocessedKeys": {}}

    def batch_write_item(self, RequestItems: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        for requests in RequestItems.values():
            for request in requests:
                if "PutRequest" in request:
                    item = request["PutRequest"]["Item"]
                    self.write_units += _write_units(item)
                    self.items[self._key(item)] = item
                else:
                    self.write_units += 1
                    self.items.pop(self._key(request["DeleteRequest"]["Key"]), None)
        return {"UnprocessedItems": {}}


class StubSqs:
    exceptions = _Exceptions

    def __init__(self) -> None:
        self.calls = 0
        self.billed_requests = 0
        self.messages = 0

    def _bill(self, payload_bytes: int) -> None:
        self.calls += 1
        self.billed_requests += max(1, math.ceil(payload_bytes / 65536))

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self._bill(sum(len(e["MessageBody"].encode()) for e in Entries))
        self.messages += len(Entries)
        return {"Successful": [{"Id": e["Id"], "MessageId": e["Id"]} for e in Entries], "Failed": []}

    def send_message(self, QueueUrl: str, MessageBody: str, **kwargs: Any) -> dict[str, Any]:
        self._bill(len(MessageBody.encode()))
        self.messages += 1
        return {"MessageId": "bench"}

    def change_message_visibility_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self._bill(0)
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


class Stubs:
    def __init__(self) -> None:
        self.dynamodb = StubDynamoDB()
        self.sqs = StubSqs()

    def client(self, service: str, *args: Any, **kwargs: Any) -> Any:
        if service == "dynamodb":
            return self.dynamodb
        if service == "sqs":
            return self.sqs
        raise AttributeError(f"the benchmark has no stand-in for {service!r}; add one in bench/aws_stubs.py")


def install() -> Stubs:
    """Route boto3.client('dynamodb'|'sqs') to in-memory stand-ins for the rest of this process."""
    import boto3

    stubs = Stubs()
    boto3.client = stubs.client  # type: ignore[assignment]
    return stubs
