"""Delivery ledger: what each destination has done with each event, so nothing is sent twice.

One item per (destination, event_id) in the idempotency table (key `id` = "<destination>#<event_id>",
TTL attribute `expiration`), with a state:

- in_progress: a consumer claimed the event and may be sending it right now. The claim carries a
  lease (`lease_until`); a claim whose lease ran out means its consumer died between claiming and
  recording the result: the event may or may not have reached the destination ("uncertain").
- delivered: the destination accepted it. Claims are refused from then on, so SQS redeliveries,
  provider retries and DLQ replays of a delivered event are no-ops.
- failed: rejected, or a retryable failure that is waiting for its next attempt. Claimable again.
- expired: the destination's acceptance window closed before it could be delivered. Claimable
  again (a replay is re-checked, and expires again without being sent).
- skipped: deliberately not sent (e.g. refunds to a destination that does not take them).
- uncertain: dead-lettered because the destination may have recorded it and does not de-duplicate
  (AppsFlyer). Automatic copies (SQS redeliveries, provider retries) are refused like delivered
  ones; only an explicit replay (`relay replay`, which marks the message) may claim it again.

A claim is a conditional PutItem, so two consumers holding copies of the same event (SQS delivers
at least once) cannot both send it: the loser sees the winner's live claim and retries later.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

LEDGER_TTL_SECONDS = 8 * 24 * 3600  # longer than the longest acceptance window (Meta: 7 days)
# Longer than a consumer's Lambda timeout (30 s): a live invocation's claim never looks abandoned.
DEFAULT_LEASE_SECONDS = 90
_BATCH_GET_LIMIT = 100
_BATCH_WRITE_LIMIT = 25
_MAX_UNPROCESSED_ROUNDS = 5


class LedgerState(enum.StrEnum):
    IN_PROGRESS = "in_progress"
    DELIVERED = "delivered"
    FAILED = "failed"
    EXPIRED = "expired"
    SKIPPED = "skipped"
    UNCERTAIN = "uncertain"


class ClaimResult(enum.Enum):
    CLAIMED = "claimed"  # nobody had it, or its last attempt failed: send it
    UNCERTAIN = "uncertain"  # claimed, but a previous claim was abandoned mid-send: it may have arrived
    DELIVERED = "delivered"  # already delivered: do not send
    HELD_UNCERTAIN = "held_uncertain"  # in the DLQ as uncertain: only a replay may send it again
    BUSY = "busy"  # another consumer holds a live claim: try again after `retry_after`


@dataclass(frozen=True, slots=True)
class Claim:
    result: ClaimResult
    retry_after_seconds: float | None = None


def ledger_key(destination: str, event_id: str) -> str:
    return f"{destination}#{event_id}"


class Ledger:
    def __init__(
        self,
        dynamodb_client: Any,
        table_name: str,
        destination: str,
        *,
        lease_seconds: int = DEFAULT_LEASE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = dynamodb_client
        self._table = table_name
        self._destination = destination
        self._lease_seconds = lease_seconds
        self._clock = clock

    def claim(self, event_id: str, *, replay: bool = False) -> Claim:
        """Take the event for sending unless it is delivered or someone else is sending it.

        An event left uncertain is taken only by a replay: a person checked the destination.
        """
        now = int(self._clock())
        settled_states = "#state <> :delivered" if replay else "#state <> :delivered AND #state <> :uncertain"
        try:
            response = self._client.put_item(
                TableName=self._table,
                Item={
                    "id": {"S": ledger_key(self._destination, event_id)},
                    "state": {"S": LedgerState.IN_PROGRESS.value},
                    "lease_until": {"N": str(now + self._lease_seconds)},
                    "updated_at": {"N": str(now)},
                    "expiration": {"N": str(now + LEDGER_TTL_SECONDS)},
                },
                ConditionExpression=(
                    f"attribute_not_exists(id) OR ({settled_states} AND "
                    "(#state <> :in_progress OR lease_until < :now))"
                ),
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={
                    ":delivered": {"S": LedgerState.DELIVERED.value},
                    ":in_progress": {"S": LedgerState.IN_PROGRESS.value},
                    ":now": {"N": str(now)},
                    **({} if replay else {":uncertain": {"S": LedgerState.UNCERTAIN.value}}),
                },
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self._client.exceptions.ConditionalCheckFailedException as error:
            old = getattr(error, "response", {}).get("Item") or {}
            if _state(old) == LedgerState.IN_PROGRESS:
                lease_until = int(old.get("lease_until", {}).get("N", now))
                return Claim(ClaimResult.BUSY, max(1.0, float(lease_until - now)))
            if _state(old) == LedgerState.UNCERTAIN:
                return Claim(ClaimResult.HELD_UNCERTAIN)
            return Claim(ClaimResult.DELIVERED)
        old = response.get("Attributes") or {}
        if _state(old) == LedgerState.IN_PROGRESS:
            return Claim(ClaimResult.UNCERTAIN)
        return Claim(ClaimResult.CLAIMED)

    def states(self, event_ids: Iterable[str]) -> dict[str, LedgerState]:
        """The recorded state of each event that has one (for tools and tests; consumers claim)."""
        wanted = list(dict.fromkeys(event_ids))
        found: dict[str, LedgerState] = {}
        for start in range(0, len(wanted), _BATCH_GET_LIMIT):
            keys = [
                {"id": {"S": ledger_key(self._destination, e)}}
                for e in wanted[start : start + _BATCH_GET_LIMIT]
            ]
            request: dict[str, Any] = {
                self._table: {
                    "Keys": keys,
                    "ProjectionExpression": "id, #state",
                    "ExpressionAttributeNames": {"#state": "state"},
                }
            }
            for _ in range(_MAX_UNPROCESSED_ROUNDS):
                response = self._client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self._table, []):
                    state = _state(item)
                    if state is not None:
                        found[item["id"]["S"].split("#", 1)[1]] = state
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
            else:
                raise RuntimeError("ledger lookup left unprocessed keys after retries")
        return found

    def delivered(self, event_ids: Iterable[str]) -> set[str]:
        """The subset of event_ids already delivered to this destination."""
        return {e for e, state in self.states(event_ids).items() if state is LedgerState.DELIVERED}

    def record(self, states: dict[str, LedgerState]) -> None:
        """Write the outcome of an attempt for events this consumer claimed (releases the claims)."""
        now = int(self._clock())
        puts = [
            {
                "PutRequest": {
                    "Item": {
                        "id": {"S": ledger_key(self._destination, event_id)},
                        "state": {"S": state.value},
                        "updated_at": {"N": str(now)},
                        "expiration": {"N": str(now + LEDGER_TTL_SECONDS)},
                    }
                }
            }
            for event_id, state in states.items()
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

    def mark_delivered(self, event_ids: Iterable[str]) -> None:
        self.record(dict.fromkeys(event_ids, LedgerState.DELIVERED))


def _state(item: dict[str, Any]) -> LedgerState | None:
    raw = (item.get("state") or {}).get("S")
    if raw is None:
        # Items written before states existed carried status=DELIVERED.
        return LedgerState.DELIVERED if (item.get("status") or {}).get("S") == "DELIVERED" else None
    try:
        return LedgerState(raw)
    except ValueError:
        return None
