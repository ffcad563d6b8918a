"""Delivery ledger: which (destination, event_id) pairs a destination has already accepted.

SQS is at-least-once and the ingest can enqueue a message twice when a provider retries after
a partial failure. Before sending, a consumer drops events the ledger says are delivered; after
a destination accepts them, it records them. Items live in the idempotency table (key `id`)
and expire through its TTL attribute.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

LEDGER_TTL_SECONDS = 8 * 24 * 3600  # longer than the longest acceptance window (Meta: 7 days)
_BATCH_GET_LIMIT = 100
_BATCH_WRITE_LIMIT = 25
_MAX_UNPROCESSED_ROUNDS = 5


def ledger_key(destination: str, event_id: str) -> str:
    return f"{destination}#{event_id}"


class Ledger:
    def __init__(self, dynamodb_client: Any, table_name: str, destination: str) -> None:
        self._client = dynamodb_client
        self._table = table_name
        self._destination = destination

    def delivered(self, event_ids: Iterable[str]) -> set[str]:
        """The subset of event_ids already delivered to this destination."""
        wanted = list(dict.fromkeys(event_ids))
        found: set[str] = set()
        for start in range(0, len(wanted), _BATCH_GET_LIMIT):
            keys = [
                {"id": {"S": ledger_key(self._destination, e)}}
                for e in wanted[start : start + _BATCH_GET_LIMIT]
            ]
            request: dict[str, Any] = {self._table: {"Keys": keys, "ProjectionExpression": "id"}}
            for _ in range(_MAX_UNPROCESSED_ROUNDS):
                response = self._client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self._table, []):
                    found.add(item["id"]["S"].split("#", 1)[1])
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
            else:
                raise RuntimeError("ledger lookup left unprocessed keys after retries")
        return found

    def mark_delivered(self, event_ids: Iterable[str]) -> None:
        expires = int(time.time()) + LEDGER_TTL_SECONDS
        now = int(time.time())
        puts = [
            {
                "PutRequest": {
                    "Item": {
                        "id": {"S": ledger_key(self._destination, event_id)},
                        "status": {"S": "DELIVERED"},
                        "delivered_at": {"N": str(now)},
                        "expiration": {"N": str(expires)},
                    }
                }
            }
            for event_id in dict.fromkeys(event_ids)
        ]
        for start in range(0, len(puts), _BATCH_WRITE_LIMIT):
            request: dict[str, Any] = {self._table: puts[start : start + _BATCH_WRITE_LIMIT]}
            for _ in range(_MAX_UNPROCESSED_ROUNDS):
                response = self._client.batch_write_item(RequestItems=request)
                request = response.get("UnprocessedItems") or {}
                if not request:
                    break
            else:
                raise RuntimeError("ledger write left unprocessed items after retries")
