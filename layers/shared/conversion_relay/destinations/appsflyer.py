"""AppsFlyer Web Server-to-Server events API for PBA (People-Based Attribution), and what both targets share.

`POST {base_url}/v1/{bundle_id}/event`, one event per request, JSON body of at most 1 KB with the
Web Dev Key inside the body (there is no auth header). See destinations.md §3.1 for the field list.
The mobile S2S target (`api3` `/inappevent/{app_id}`) lives in appsflyer_mobile.py; APPSFLYER_TARGET
picks one, and `AppsflyerDestination.from_environment` returns whichever is configured.

Payload budget. AppsFlyer caps the whole JSON body at 1,024 bytes and `eventValue` at 1,000
characters (it truncates beyond that, which would corrupt the map). We measure the exact bytes we
send (`encode_payload`) and, when over, drop optional parts in this order until it fits:
  1. `eventValue` keys: custom properties (last added first), then the derived keys in
     data/appsflyer_rules.json `web.event_value_trim_order` (af_order_id last); an emptied
     `eventValue` is left out;
  2. `referrer`;
  3. `UserAgent`.
User ids, `eventName`, `timestamp`, `ip`, `eventRevenue` and `eventRevenueCurrency` are never
dropped: if the payload still does not fit, the event is rejected with the byte count and the fields
to shorten. With our compact UTF-8 encoding an `eventValue` over 1,000 characters can never fit in
1,024 bytes next to the mandatory fields, so the byte rule always catches it; we check it anyway so a
larger documented body limit cannot let AppsFlyer cut our map mid-value.

Timestamps. AppsFlyer keeps our `timestamp` only if the event arrives before 00:00 UTC of the day after
it happened; later ones, and future ones, are restamped with the arrival time. `TimestampRule` detects
both before sending; APPSFLYER_LATE_EVENT_POLICY decides: `send` (default) sends anyway and counts the
metric TimestampLate / TimestampFuture, `reject` dead-letters the event with a reason starting
"expired:" (or "future:") so an operator can decide what to do with it.

setcuid. When an event carries both a customer user id and an afUserId, we link the pair with
`/v1/{bundle_id}/setcuid` once: a `LinkStore` claims the pair (DynamoDB conditional put in the
idempotency table, key "appsflyer_cuid#<sha256>", so no raw id is a key), confirms it after AppsFlyer's
200 and releases it on failure so a later event tries again. A failed link never fails the event.

Rate. AppsFlyer allows 60,000 POSTs a minute per account. Every POST (events and setcuid) takes a token
from a per-container `TokenBucket` (APPSFLYER_MAX_REQUESTS_PER_SECOND); the template's
AppsflyerMaximumConcurrency bounds the containers, so containers x rate x 60 stays under the limit.

Trade-off, read before changing retry rules: AppsFlyer has no deduplication key, so an ambiguous
failure (read timeout after the request left us, a dropped connection, 5xx after AppsFlyer may have
recorded it) that we retry can count the purchase twice. We retry them anyway, because a lost purchase
cannot be recovered while a duplicate is visible (same af_order_id in raw data); the reason says
"ambiguous" and the metric AmbiguousRetry counts them. Errors that provably never reached AppsFlyer
(connect timeout) are plain retries.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, ClassVar, Protocol
from urllib.parse import quote

import requests
import urllib3

from conversion_relay import config
from conversion_relay.config import ConfigError
from conversion_relay.destinations.base import Outcome, Prepared, Status, classify_transport_error
from conversion_relay.http import TIMEOUT
from conversion_relay.model import REFUND, ConversionEvent
from conversion_relay.secrets import get_secret, require

if TYPE_CHECKING:
    from conversion_relay.destinations.appsflyer_mobile import AppsflyerMobileDestination

logger = logging.getLogger(__name__)


@cache
def rules() -> dict[str, Any]:
    """data/appsflyer_rules.json: limits, trim orders, timestamp grace, identifier patterns."""
    text = resources.files("conversion_relay").joinpath("data/appsflyer_rules.json").read_text("utf-8")
    return json.loads(text)


DEFAULT_BASE_URL = "https://webs2s.appsflyer.com"
DEFAULT_MAX_WORKERS = 8
# 5 containers (the template's default AppsflyerMaximumConcurrency) x 150/s x 60 = 45,000 POSTs a minute,
# under AppsFlyer's 60,000 with room for the setcuid calls of a second stack or a replay.
DEFAULT_MAX_REQUESTS_PER_SECOND = 150.0
MAX_PAYLOAD_BYTES: int = rules()["max_payload_bytes"]
MAX_EVENT_VALUE_CHARS: int = rules()["max_event_value_chars"]
MAX_POSTS_PER_MINUTE: int = rules()["max_posts_per_minute"]
MAX_REASON_DETAIL_CHARS = 200
LINK_KEY_PREFIX = "appsflyer_cuid#"
LINK_TTL_SECONDS = 180 * 24 * 3600  # re-linking after this is harmless; it only keeps the table small
LINK_LEASE_SECONDS = 300  # a claim whose holder crashed before confirming is taken over after this

# The API reference (dev.appsflyer.com OpenAPI) spells it `UserAgent`; the help-center article
# (seed 003) says `userAgent`. We follow the API reference; one constant to flip if a live check disagrees.
USER_AGENT_FIELD = "UserAgent"

# Fields dropped, in this order, after `eventValue` when the payload is over MAX_PAYLOAD_BYTES.
_TOP_LEVEL_TRIM_ORDER: tuple[str, ...] = tuple(rules()["web"]["top_level_trim_order"])
# eventValue keys we derive, most expendable first; custom properties go before all of them.
_EVENT_VALUE_TRIM_ORDER: tuple[str, ...] = tuple(rules()["web"]["event_value_trim_order"])
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Counter = Callable[[str], None]


def encode_payload(payload: Mapping[str, Any]) -> bytes:
    """The exact bytes we POST; sizes are measured on this, so measuring and sending cannot disagree."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def event_value_length(event_value: Mapping[str, str]) -> int:
    """Characters of `eventValue` as serialised inside the body (AppsFlyer's 1,000-character rule)."""
    return len(json.dumps(event_value, separators=(",", ":"), ensure_ascii=False))


def count_metric(name: str) -> None:
    """Default counter: one CloudWatch EMF count (flushed by the handler's log_metrics)."""
    from aws_lambda_powertools.metrics import MetricUnit

    from conversion_relay.observability import metrics

    metrics.add_metric(name, MetricUnit.Count, 1)


def utc_now() -> datetime:
    return datetime.now(UTC)


# -- settings from the environment -------------------------------------------------------------------
class Target(enum.StrEnum):
    WEB = "web"
    MOBILE = "mobile"


class LatePolicy(enum.StrEnum):
    SEND = "send"  # send anyway (AppsFlyer restamps it) and count it
    REJECT = "reject"  # dead-letter it with reason "expired: ..." / "future: ..."


class AmbiguousPolicy(enum.StrEnum):
    """What to do when a request may have reached AppsFlyer but no answer came back."""

    DEAD_LETTER = "dead_letter"  # DLQ as "uncertain": a person checks AppsFlyer, then replays
    RETRY = "retry"  # resend: never missing, but counted twice if the first one was recorded


@dataclass(frozen=True, slots=True)
class Settings:
    target: Target = Target.WEB
    late_policy: LatePolicy = LatePolicy.SEND
    max_requests_per_second: float = DEFAULT_MAX_REQUESTS_PER_SECOND
    ambiguous_policy: AmbiguousPolicy = AmbiguousPolicy.DEAD_LETTER

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            target=_choice("APPSFLYER_TARGET", Target, Target.WEB),
            late_policy=_choice("APPSFLYER_LATE_EVENT_POLICY", LatePolicy, LatePolicy.SEND),
            max_requests_per_second=_positive(
                "APPSFLYER_MAX_REQUESTS_PER_SECOND", DEFAULT_MAX_REQUESTS_PER_SECOND
            ),
            ambiguous_policy=_choice(
                "APPSFLYER_AMBIGUOUS_POLICY", AmbiguousPolicy, AmbiguousPolicy.DEAD_LETTER
            ),
        )


def _choice[E: enum.StrEnum](variable: str, kind: type[E], default: E) -> E:
    raw = os.environ.get(variable, "").strip().lower()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise ConfigError(f"{variable} must be one of {allowed}; got {raw!r}") from None


def _positive(variable: str, default: float) -> float:
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{variable} must be a positive number of requests per second; got {raw!r}")
    return value


# -- timestamps --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TimestampRule:
    """When AppsFlyer would replace an event's time with the arrival time (module docstring)."""

    grace: timedelta
    margin: timedelta
    future_tolerance: timedelta

    @classmethod
    def for_target(cls, target: Target) -> TimestampRule:
        spec = rules()["timestamp"]
        return cls(
            grace=timedelta(seconds=spec[f"{target.value}_grace_seconds"]),
            margin=timedelta(seconds=spec["margin_seconds"]),
            future_tolerance=timedelta(seconds=spec["future_tolerance_seconds"]),
        )

    def cutoff(self, occurred_at: datetime) -> datetime:
        """The first instant at which AppsFlyer treats the event as late."""
        event_day = occurred_at.astimezone(UTC).date()
        next_midnight = datetime(event_day.year, event_day.month, event_day.day, tzinfo=UTC) + timedelta(
            days=1
        )
        return next_midnight + self.grace

    def check(self, occurred_at: datetime, now: datetime) -> str | None:
        """ "late", "future" or None (AppsFlyer keeps the time)."""
        if now + self.margin >= self.cutoff(occurred_at):
            return "late"
        if occurred_at > now + self.future_tolerance:
            return "future"
        return None


def timestamp_outcome(
    rule: TimestampRule, policy: LatePolicy, occurred_at: datetime, now: datetime, count: Counter
) -> Outcome | None:
    """None: send the event. An Outcome: the REJECT the policy asks for. Counts either way."""
    verdict = rule.check(occurred_at, now)
    if verdict is None:
        return None
    count("TimestampLate" if verdict == "late" else "TimestampFuture")
    if policy is LatePolicy.SEND:
        return None
    if verdict == "late":
        return Outcome.reject(
            f"expired: the event happened {occurred_at:%Y-%m-%dT%H:%M:%SZ} and AppsFlyer restamps events "
            f"that arrive from {rule.cutoff(occurred_at):%Y-%m-%dT%H:%M:%SZ} on with the arrival time "
            "(APPSFLYER_LATE_EVENT_POLICY=reject; set it to send to deliver it anyway)",
            error_code="expired",
        )
    return Outcome.reject(
        f"future: the event time {occurred_at:%Y-%m-%dT%H:%M:%SZ} is ahead of the clock by more than "
        f"{int(rule.future_tolerance.total_seconds())} s; AppsFlyer would restamp it with the arrival time "
        "(APPSFLYER_LATE_EVENT_POLICY=reject)",
        error_code="future",
    )


# -- rate --------------------------------------------------------------------------------------------
class TokenBucket:
    """Thread-safe token bucket: `acquire()` blocks until the caller may send one request.

    Callers reserve a token under the lock (the count may go negative) and sleep outside it, so waiting
    threads queue up in order without holding the lock.
    """

    def __init__(
        self,
        rate_per_second: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_second <= 0 or burst < 1:
            raise ValueError("rate_per_second must be positive and burst at least 1")
        self.rate = rate_per_second
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._last = clock()

    def acquire(self) -> float:
        """Take one token; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait


@cache
def shared_bucket(rate_per_second: float, burst: int) -> TokenBucket:
    """One bucket per container: the destination object is rebuilt per batch, the budget is not."""
    return TokenBucket(rate_per_second, burst)


# -- setcuid bookkeeping -----------------------------------------------------------------------------
def link_key(bundle_id: str, customer_user_id: str, af_user_id: str) -> str:
    """Table key of one (bundle, CUID, afUserId) pair: hashed, so no raw id is stored as a key."""
    digest = hashlib.sha256("\n".join((bundle_id, customer_user_id, af_user_id)).encode("utf-8")).hexdigest()
    return LINK_KEY_PREFIX + digest


class LinkStore(Protocol):
    def claim(self, key: str) -> bool:
        """True: the caller should link this pair now. False: linked already, or another worker is on it."""
        ...

    def confirm(self, key: str) -> None:
        """AppsFlyer accepted the link: remember it for LINK_TTL_SECONDS."""
        ...

    def release(self, key: str) -> None:
        """The link failed: let a later event claim the pair again."""
        ...


class MemoryLinkStore:
    """Per-container store: the fallback without a table, and what unit tests use."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._expires: dict[str, tuple[str, float]] = {}

    def claim(self, key: str) -> bool:
        with self._lock:
            now = self._clock()
            held = self._expires.get(key)
            if held is not None and held[1] > now:
                return False
            self._expires[key] = ("pending", now + LINK_LEASE_SECONDS)
            return True

    def confirm(self, key: str) -> None:
        with self._lock:
            self._expires[key] = ("linked", self._clock() + LINK_TTL_SECONDS)

    def release(self, key: str) -> None:
        with self._lock:
            if self._expires.get(key, ("", 0.0))[0] == "pending":
                del self._expires[key]

    def linked(self) -> set[str]:
        with self._lock:
            return {key for key, (state, _) in self._expires.items() if state == "linked"}


class DynamoLinkStore:
    """Pairs in the idempotency table (key `id`, TTL attribute `expiration`), shared by every container.

    A claim is a conditional PutItem of a "pending" item that expires after LINK_LEASE_SECONDS: it wins only
    if no item exists or the existing one has expired (DynamoDB deletes expired items lazily, hence the
    explicit comparison). Confirm turns it into "linked" for LINK_TTL_SECONDS.
    """

    def __init__(
        self, dynamodb_client: Any, table_name: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._client = dynamodb_client
        self._table = table_name
        self._clock = clock
        self._confirmed: set[str] = set()  # this container's own confirmations: skips a write per event

    def claim(self, key: str) -> bool:
        if key in self._confirmed:
            return False
        now = int(self._clock())
        try:
            self._client.put_item(
                TableName=self._table,
                Item={
                    "id": {"S": key},
                    "status": {"S": "pending"},
                    "expiration": {"N": str(now + LINK_LEASE_SECONDS)},
                },
                ConditionExpression="attribute_not_exists(id) OR expiration < :now",
                ExpressionAttributeValues={":now": {"N": str(now)}},
            )
        except Exception as error:
            if _error_code(error) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def confirm(self, key: str) -> None:
        now = int(self._clock())
        self._client.put_item(
            TableName=self._table,
            Item={
                "id": {"S": key},
                "status": {"S": "linked"},
                "linked_at": {"N": str(now)},
                "expiration": {"N": str(now + LINK_TTL_SECONDS)},
            },
        )
        self._confirmed.add(key)

    def release(self, key: str) -> None:
        try:
            self._client.delete_item(
                TableName=self._table,
                Key={"id": {"S": key}},
                ConditionExpression="#s = :pending",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":pending": {"S": "pending"}},
            )
        except Exception as error:
            if _error_code(error) != "ConditionalCheckFailedException":
                raise


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


@cache
def _table_link_store(table_name: str) -> DynamoLinkStore:
    import boto3

    return DynamoLinkStore(boto3.client("dynamodb"), table_name)


def link_store_from_environment() -> LinkStore:
    table = os.environ.get("IDEMPOTENCY_TABLE", "")
    if not table:
        logger.warning("IDEMPOTENCY_TABLE is not set: setcuid pairs are remembered per container only")
        return _memory_link_store()
    return _table_link_store(table)


@cache
def _memory_link_store() -> MemoryLinkStore:
    return MemoryLinkStore()


# -- sending, shared by both targets -----------------------------------------------------------------
class ConcurrentSender:
    """One request per event, at most `max_workers` in flight on a pooled session; POSTs rate-limited."""

    name: ClassVar[str] = "appsflyer"

    def __init__(
        self,
        session: requests.Session,
        *,
        max_workers: int,
        timeout: tuple[float, float],
        rate_limiter: TokenBucket | None,
        count: Counter,
        ambiguous_policy: AmbiguousPolicy = AmbiguousPolicy.DEAD_LETTER,
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self._session = session
        self.max_workers = max_workers
        self._timeout = timeout
        self.rate_limiter = rate_limiter
        self._count = count
        self.ambiguous_policy = AmbiguousPolicy(ambiguous_policy)

    def send(self, batch: Sequence[Prepared]) -> list[Outcome]:
        """One request per event, at most `max_workers` in flight; outcomes in input order."""
        if not batch:
            return []
        workers = min(self.max_workers, len(batch))
        if workers == 1:
            return [self._send_counted(prepared) for prepared in batch]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="appsflyer") as pool:
            return list(pool.map(self._send_counted, batch))

    def _send_counted(self, prepared: Prepared) -> Outcome:
        outcome = self._send_one(prepared)
        if outcome.error_code != "ambiguous":
            return outcome
        if self.ambiguous_policy is AmbiguousPolicy.RETRY:
            # A retry that may double count (no dedup at AppsFlyer): visible, so it can be reconciled.
            self._count("AmbiguousRetry")
            return outcome
        # AppsFlyer does not de-duplicate, so resending could count the revenue twice; the DLQ keeps
        # the event, with a reason, for a person to check and replay if it is missing.
        self._count("AmbiguousDeadLettered")
        return Outcome.reject(
            f"uncertain: {outcome.reason}; check the event in AppsFlyer's raw data, and replay it "
            "(relay replay --reason uncertain) only if it is missing",
            error_code="uncertain",
        )

    def _send_one(self, prepared: Prepared) -> Outcome:
        raise NotImplementedError

    def _post(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        redact: Iterable[str],
        hints: Mapping[int, str],
    ) -> Outcome:
        if self.rate_limiter is not None:
            self.rate_limiter.acquire()
        try:
            response = self._session.post(
                url,
                data=body,
                headers={"Content-Type": "application/json", **headers},
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.RequestException as error:
            return classify_network_error(error)
        return classify_response(
            response.status_code,
            response.text,
            response.headers.get("Retry-After"),
            redact=redact,
            hints=hints,
        )


_WEB_HINTS = {
    401: " (check web_dev_key in the appsflyer secret)",
    404: " (check bundle_id in the appsflyer secret and APPSFLYER_BASE_URL)",
}


class AppsflyerDestination(ConcurrentSender):
    """Web S2S (PBA): `/v1/{bundle_id}/event`, plus `/setcuid` once per (CUID, afUserId) pair."""

    name: ClassVar[str] = "appsflyer"

    def __init__(
        self,
        credentials: Mapping[str, Any],
        session: requests.Session,
        base_url: str = DEFAULT_BASE_URL,
        *,
        max_workers: int = DEFAULT_MAX_WORKERS,
        timeout: tuple[float, float] = TIMEOUT,
        late_policy: LatePolicy = LatePolicy.SEND,
        ambiguous_policy: AmbiguousPolicy = AmbiguousPolicy.DEAD_LETTER,
        rate_limiter: TokenBucket | None = None,
        link_store: LinkStore | None = None,
        clock: Callable[[], datetime] = utc_now,
        count: Counter = count_metric,
    ) -> None:
        require(dict(credentials), self.name, "bundle_id", "web_dev_key")
        super().__init__(
            session,
            max_workers=max_workers,
            timeout=timeout,
            rate_limiter=rate_limiter,
            count=count,
            ambiguous_policy=ambiguous_policy,
        )
        self._web_dev_key = str(credentials["web_dev_key"])
        self._bundle_id = str(credentials["bundle_id"])
        root = f"{base_url.rstrip('/')}/v1/{quote(self._bundle_id, safe='')}"
        self.url = f"{root}/event"
        self.setcuid_url = f"{root}/setcuid"
        self.late_policy = LatePolicy(late_policy)
        self.timestamp_rule = TimestampRule.for_target(Target.WEB)
        self.link_store: LinkStore = link_store if link_store is not None else MemoryLinkStore()
        self._clock = clock

    @classmethod
    def from_environment(
        cls, session: requests.Session, *, max_workers: int = DEFAULT_MAX_WORKERS
    ) -> AppsflyerDestination | AppsflyerMobileDestination:
        """The configured target (APPSFLYER_TARGET, default web) with its secret and settings.

        Web: credentials from the `appsflyer` secret, endpoint from APPSFLYER_BASE_URL, setcuid pairs in
        IDEMPOTENCY_TABLE. Give `session` a pool of at least `max_workers` connections.
        """
        settings = Settings.from_env()
        if settings.target is Target.MOBILE:
            from conversion_relay.destinations.appsflyer_mobile import AppsflyerMobileDestination

            return AppsflyerMobileDestination.from_environment(session, max_workers=max_workers)
        base_url = os.environ.get("APPSFLYER_BASE_URL", "") or DEFAULT_BASE_URL
        return cls(
            get_secret(cls.name),
            session,
            base_url,
            max_workers=max_workers,
            late_policy=settings.late_policy,
            rate_limiter=shared_bucket(settings.max_requests_per_second, max_workers),
            link_store=link_store_from_environment(),
            ambiguous_policy=settings.ambiguous_policy,
        )

    # -- prepare -------------------------------------------------------------------------------------
    def prepare(self, event: ConversionEvent) -> Prepared | Outcome:
        built = self.build_payload(event)
        if isinstance(built, Outcome):
            return built
        fitted, dropped = fit_payload(built)
        size = len(encode_payload(fitted))
        if size > MAX_PAYLOAD_BYTES:
            return Outcome.reject(
                f"payload: {size} bytes after dropping eventValue, referrer and {USER_AGENT_FIELD}, over "
                f"AppsFlyer's {MAX_PAYLOAD_BYTES}-byte limit; shorten customerUserId/afUserId (metadata) "
                "or the eventName mapping"
            )
        if dropped:
            # Field names only: the values may be personal data.
            logger.info(
                "appsflyer payload trimmed to fit", extra={"event_id": event.event_id, "dropped": dropped}
            )
        late = timestamp_outcome(
            self.timestamp_rule, self.late_policy, event.occurred_at, self._clock(), self._count
        )
        if late is not None:
            return late
        return Prepared(event=event, payload=fitted, group_key=event.event_id)

    def build_payload(self, event: ConversionEvent) -> dict[str, Any] | Outcome:
        """The full `/event` body before the size budget is applied, or why the event is not sent."""
        event_name = config.destination_event_name(self.name, event.name)
        if event_name is None:
            return Outcome.skip(f"mapping event_names.appsflyer.{event.name} is null: not sent to AppsFlyer")
        ids = _user_ids(event)
        if not ids:
            keys = ", ".join(config.metadata_key(k) for k in ("customer_user_id", "user_id", "af_user_id"))
            return Outcome.reject(
                f"customerUserId/afUserId: at least one is required; pass {keys} in the payment's metadata"
            )
        if event.value is not None and event.currency is None:
            return Outcome.reject(
                "currency: required when value is set "
                "(AppsFlyer needs eventRevenue and eventRevenueCurrency together)"
            )

        payload: dict[str, Any] = {
            **ids,
            "webDevKey": self._web_dev_key,
            "eventType": "EVENT",
            "eventName": event_name,
            "timestamp": (event.occurred_at - _EPOCH) // timedelta(milliseconds=1),
        }
        if event.value is not None:
            payload["eventRevenue"] = _revenue(event)
            payload["eventRevenueCurrency"] = event.currency
        event_value = _event_value(event)
        if event_value:
            payload["eventValue"] = event_value
        context = event.context
        if context.client_ip and _is_ipv4(context.client_ip):
            payload["ip"] = context.client_ip
        if context.client_user_agent:
            payload[USER_AGENT_FIELD] = context.client_user_agent
        if context.referrer_url:
            payload["referrer"] = context.referrer_url
        return payload

    # -- send ----------------------------------------------------------------------------------------
    def _send_one(self, prepared: Prepared) -> Outcome:
        self.link_once(prepared.payload)
        return self._post(
            self.url,
            encode_payload(prepared.payload),
            {},
            redact=_sensitive_values(prepared.payload),
            hints=_WEB_HINTS,
        )

    def link_once(self, payload: Mapping[str, Any]) -> None:
        """setcuid for the payload's (customerUserId, afUserId) pair unless it is linked already.

        Never raises and never changes the event's outcome: the event counts without the link.
        """
        customer_user_id, af_user_id = payload.get("customerUserId"), payload.get("afUserId")
        if not customer_user_id or not af_user_id:
            return
        key = link_key(self._bundle_id, str(customer_user_id), str(af_user_id))
        try:
            if not self.link_store.claim(key):
                return
        except Exception as error:
            logger.warning(
                "setcuid skipped: link store unavailable", extra={"error": error.__class__.__name__}
            )
            self._count("SetcuidFailed")
            return
        body = {"customerUserId": customer_user_id, "afUserId": af_user_id, "webDevKey": self._web_dev_key}
        outcome = self._post(
            self.setcuid_url, encode_payload(body), {}, redact=_sensitive_values(body), hints=_WEB_HINTS
        )
        try:
            if outcome.status is Status.DELIVERED:
                self.link_store.confirm(key)
                self._count("SetcuidLinked")
                return
            self.link_store.release(key)
        except Exception as error:
            # A lost confirm costs one more setcuid later (after the lease), which AppsFlyer tolerates.
            logger.warning("setcuid bookkeeping failed", extra={"error": error.__class__.__name__})
        if outcome.status is not Status.DELIVERED:
            logger.warning(
                "setcuid failed; the event is sent without the link", extra={"reason": outcome.reason}
            )
            self._count("SetcuidFailed")


# -- payload building --------------------------------------------------------------------------------
def _user_ids(event: ConversionEvent) -> dict[str, str]:
    ids: dict[str, str] = {}
    customer_user_id = event.context.customer_user_id or event.context.user_id
    if customer_user_id:
        ids["customerUserId"] = customer_user_id
    if event.context.af_user_id:
        ids["afUserId"] = event.context.af_user_id
    return ids


def _revenue(event: ConversionEvent) -> float:
    value: Decimal = event.value  # type: ignore[assignment]  # caller checked it is set
    if event.name == REFUND and value:
        # AppsFlyer nets refunds by negative revenue; the canonical value may carry either sign.
        value = -value.copy_abs()
    return float(value)


def _event_value(event: ConversionEvent) -> dict[str, str]:
    """Rich event details as a map of strings (the API's schema), custom properties first.

    Derived keys are written after the properties so a property cannot overwrite an id we derive.
    """
    details: dict[str, str] = dict(event.properties)
    item_ids = [item.id for item in event.items if item.id]
    if item_ids:
        details["af_content_id"] = ",".join(item_ids)
    if event.items:
        details["af_quantity"] = str(sum(item.quantity for item in event.items))
    if event.coupon:
        details["af_coupon_code"] = event.coupon
    if event.subscription_id:
        details["subscription_id"] = event.subscription_id
    if event.transaction_id:
        details["af_order_id"] = event.transaction_id
    return details


def _is_ipv4(value: str) -> bool:
    # The API reference types `ip` as ipv4; dropping anything else costs geo only, not the event.
    try:
        return isinstance(ipaddress.ip_address(value), ipaddress.IPv4Address)
    except ValueError:
        return False


def event_value_trim_order(
    event_value: Mapping[str, Any], derived_order: Sequence[str], protected: Sequence[str] = ()
) -> list[str]:
    """Keys to drop first to last: custom properties (last added first), then the derived keys in order.

    `protected` keys (mobile's af_revenue, af_currency, af_order_id) are never listed, so never dropped.
    """
    custom = [key for key in reversed(list(event_value)) if key not in derived_order and key not in protected]
    return custom + [key for key in derived_order if key in event_value]


def _event_value_trim_order(event_value: Mapping[str, str]) -> list[str]:
    return event_value_trim_order(event_value, _EVENT_VALUE_TRIM_ORDER)


def fit_payload(payload: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(the payload trimmed to AppsFlyer's limits as far as allowed, names of what was dropped).

    Never drops ids, eventName, timestamp, ip or revenue (order in the module docstring), so the result
    can still be over MAX_PAYLOAD_BYTES: the caller checks.
    """
    fitted = dict(payload)
    dropped: list[str] = []
    event_value: dict[str, str] = dict(fitted.pop("eventValue", None) or {})
    candidates = _event_value_trim_order(event_value)

    def assembled() -> dict[str, Any]:
        return {**fitted, "eventValue": event_value} if event_value else dict(fitted)

    def over() -> bool:
        return len(encode_payload(assembled())) > MAX_PAYLOAD_BYTES

    while event_value and (event_value_length(event_value) > MAX_EVENT_VALUE_CHARS or over()):
        key = candidates.pop(0)
        del event_value[key]
        dropped.append(f"eventValue.{key}")
    for name in _TOP_LEVEL_TRIM_ORDER:
        if name in fitted and over():
            del fitted[name]
            dropped.append(name)
    return assembled(), dropped


# -- response classification -------------------------------------------------------------------------
def classify_network_error(error: requests.RequestException) -> Outcome:
    """Retry every network failure; say whether AppsFlyer may have recorded the event (no dedup there)."""
    outcome = classify_transport_error(error)
    if outcome.status is not Status.RETRY:
        return outcome
    if _provably_not_sent(error):
        return Outcome.retry(f"{outcome.reason} (not sent: no connection)", error_code="not_sent")
    return Outcome.retry(
        f"{outcome.reason} (ambiguous: AppsFlyer may have recorded it and does not deduplicate)",
        error_code="ambiguous",
    )


def _provably_not_sent(error: requests.RequestException) -> bool:
    """A connect timeout, a refused connection or a failed DNS lookup: no byte reached AppsFlyer."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    cause = error.args[0] if error.args else None
    return isinstance(getattr(cause, "reason", cause), urllib3.exceptions.NewConnectionError)


def classify_response(
    status: int,
    text: str,
    retry_after: str | None = None,
    *,
    redact: Iterable[str] = (),
    hints: Mapping[int, str] = _WEB_HINTS,
) -> Outcome:
    """delivered (2xx) / retry (408, 429, 5xx) / reject (other 4xx and anything unexpected)."""
    if 200 <= status < 300:
        return Outcome.delivered(status)
    detail = _error_detail(text, redact)
    if status == 429 or status == 408 or status >= 500:
        return Outcome.retry(
            f"AppsFlyer answered {status}: {detail}",
            http_status=status,
            retry_after_seconds=_retry_after(retry_after),
        )
    hint = hints.get(status, "")
    return Outcome.reject(f"AppsFlyer answered {status}{hint}: {detail}", http_status=status)


_PII_SHAPES = re.compile(
    r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"  # email
    r"|\b(?:\d{1,3}\.){3}\d{1,3}\b"  # IPv4
    r"|\+\d[\d -]{7,}\d"  # international phone number
)
_IPV6_CANDIDATE = re.compile(r"[0-9A-Fa-f]*:[0-9A-Fa-f:.]*:[0-9A-Fa-f.]*")


def _redact_ipv6(match: re.Match[str]) -> str:
    try:
        ipaddress.IPv6Address(match.group(0))
    except ValueError:
        return match.group(0)  # a time such as 12:30:45, not an address
    return "[redacted]"


def _error_detail(text: str, redact: Iterable[str]) -> str:
    detail = text.strip()
    try:
        body = json.loads(detail) if detail else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        # AppsFlyer's error shape: {"error": "<what is wrong>", "message": "Bad Request", "status": 400}
        parts = [str(body[key]) for key in ("error", "message") if body.get(key)]
        detail = " - ".join(dict.fromkeys(parts)) or detail
    for value in redact:
        # An echoed id, IP or the dev key must not reach a DLQ reason or a log line. Values under 3
        # characters identify no one and would shred the message ("e" is in every word).
        if len(value) >= 3:
            detail = detail.replace(value, "[redacted]")
    # Values we did not send can be echoed too (an error page quoting another request): shapes of
    # personal data go whatever their source.
    detail = _PII_SHAPES.sub("[redacted]", detail)
    detail = _IPV6_CANDIDATE.sub(_redact_ipv6, detail)
    detail = " ".join(detail.split())
    if len(detail) > MAX_REASON_DETAIL_CHARS:
        detail = detail[: MAX_REASON_DETAIL_CHARS - 3] + "..."
    return detail or "empty response body"


def _retry_after(value: str | None) -> float | None:
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None  # HTTP-date form: leave the delay to SQS
    return seconds if seconds is not None and seconds >= 0 else None


def _sensitive_values(payload: Mapping[str, Any]) -> list[str]:
    return [
        str(payload[key])
        for key in ("webDevKey", "customerUserId", "afUserId", "ip", USER_AGENT_FIELD, "referrer")
        if payload.get(key)
    ]
