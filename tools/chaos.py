"""`make chaos`: thousands of Stripe webhooks, duplicates included, through the local stack while the fake
destinations misbehave; then it proves nothing was lost and nothing was sent twice.

    .venv/bin/python tools/chaos.py [--webhooks 2000] [--seed 7] [--max-seconds 900] [--json report.json]

Loopback only: moto, the real handlers and the fake destinations of relay_local, all on 127.0.0.1.
Bounded: a fixed number of posts, a bounded number of attempts per post, and one overall time limit
(--max-seconds) that every wait below counts against. Exit status 0: every check passed; 1: a check
failed; 2: the time limit was hit before the pipeline settled.

What happens:
- Webhooks: `--webhooks` POSTs of signed `checkout.session.completed` events. About a quarter of the
  deliveries are posted two or three times (Stripe redelivers the same event id), half of those at
  the same moment from different threads, the rest later in the run. A small share carries no
  AppsFlyer user id, which AppsFlyer must refuse for good (a `rejected` DLQ message, not a loss). A
  409 (`delivery_in_progress`) or 5xx answer is retried as Stripe would.
- Faults: each fake destination draws, per request and from its own seeded RNG, one of: 500/502/503,
  429, a timeout (the fake holds the request past the client's read timeout, HTTP_READ_TIMEOUT_SECONDS)
  or a dropped connection. Those never reach the destination's API. A share of the timeouts and drops
  is *processed* first: the destination records the event and the answer is lost on the way back
  (relay_local.fakes.base.Fault.processed). That is the ambiguous case: the relay cannot know it
  arrived.
- Retries are immediate (LocalRelay fast_retries); MaxReceiveCount and every other setting come
  from template.yaml.

What it checks, per destination (ids: GA4/AppsFlyer transaction id, Meta event_id):
- lost = 0: every event of an accepted webhook was accepted by the fake or is in that destination's
  DLQ with a `failure` and `reason`;
- double-sent = 0: no event was accepted twice by the fake except where the earlier copy's answer was
  lost (a relay that resends something it saw delivered fails here);
- copies after a lost answer are counted separately: GA4 and Meta de-duplicate them (transaction_id,
  event_id: delivery.RESEND_WHEN_UNCERTAIN), so they are resent; AppsFlyer does not, so by default
  (APPSFLYER_AMBIGUOUS_POLICY=dead_letter) it never resends them: they go to its DLQ as
  `uncertain`, and the run fails if any AppsFlyer event was accepted twice.
- the ingest: each delivery accepted exactly once, every other copy answered `duplicate` (or 409
  and then `duplicate`).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import hashlib
import hmac
import io
import json
import os
import random
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LAYER = PROJECT_ROOT / "layers" / "shared"

if TYPE_CHECKING:
    from relay_local.fakes.base import FakeServer, Fault, Request
    from relay_local.stack import LocalRelay

DESTINATIONS = ("ga4", "meta", "appsflyer")
# Local-only credentials: the fakes accept exactly these.
SECRETS: dict[str, dict[str, Any]] = {
    "stripe": {"webhook_secrets": ["whsec_chaos_local_only"]},
    "ga4": {"measurement_id": "G-CHAOS00001", "api_secret": "chaos-ga4-api-secret"},
    "meta": {"pixel_id": "998877665544332", "access_token": "chaos-meta-access-token"},
    "appsflyer": {"bundle_id": "com.example.chaos", "web_dev_key": "chaos-appsflyer-web-dev-key"},
}
POST_ATTEMPTS = 20  # per webhook copy, as Stripe retries a 409 / 5xx
POST_RETRY_SECONDS = 0.2
# Fault kinds and their weights, drawn when a request is faulted at all (--fault-rate).
FAULT_WEIGHTS = {
    "http_5xx": 3.0,
    "http_429": 2.0,
    "timeout": 1.5,  # held past the read timeout, never processed
    "dropped": 1.5,  # connection closed, never processed
    "lost_answer": 1.0,  # processed, then timeout or dropped connection: ambiguous
}


@dataclass(frozen=True, slots=True)
class ChaosConfig:
    webhooks: int = 2000
    seed: int = 7
    max_seconds: float = 900.0
    fault_rate: float = 0.2  # share of destination requests that meet a fault
    duplicate_share: float = 0.25  # share of deliveries posted more than once
    no_af_user_share: float = 0.02  # deliveries AppsFlyer must reject (no user id)
    # Deliveries whose queue messages SQS hands out twice (at-least-once): the consumers' ledger must
    # drop the copy.
    sqs_duplicate_share: float = 0.05
    read_timeout_seconds: float = 0.5
    post_workers: int = 4


@dataclass(slots=True)
class Delivery:
    """One Stripe event (one delivery id) and the ids each destination should see for it."""

    index: int
    body: bytes
    stripe_event_id: str
    canonical_event_id: str
    transaction_id: str
    copies: int
    concurrent: bool
    expect_appsflyer_reject: bool
    sqs_duplicate: bool = False
    answers: list[str] = field(default_factory=list)  # final ingest status of each copy

    def destination_id(self, destination: str) -> str:
        return self.canonical_event_id if destination == "meta" else self.transaction_id


# -- webhooks -------------------------------------------------------------------------------------------
def plan_deliveries(config: ChaosConfig, rng: random.Random) -> list[Delivery]:
    """Deliveries whose copies add up to exactly `config.webhooks` POSTs."""
    deliveries: list[Delivery] = []
    posts = 0
    while posts < config.webhooks:
        index = len(deliveries)
        copies = 1
        if rng.random() < config.duplicate_share:
            copies = rng.choice((2, 2, 3))
        copies = min(copies, config.webhooks - posts)
        no_af_user = rng.random() < config.no_af_user_share
        body, stripe_id, session_id, intent = _checkout_completed(config.seed, index, rng, no_af_user)
        deliveries.append(
            Delivery(
                index=index,
                body=body,
                stripe_event_id=stripe_id,
                canonical_event_id=f"stripe:purchase:{session_id}",
                transaction_id=intent,
                copies=copies,
                concurrent=copies > 1 and rng.random() < 0.5,
                expect_appsflyer_reject=no_af_user,
                sqs_duplicate=rng.random() < config.sqs_duplicate_share,
            )
        )
        posts += copies
    return deliveries


def _checkout_completed(
    seed: int, index: int, rng: random.Random, no_af_user: bool
) -> tuple[bytes, str, str, str]:
    tag = f"{seed:x}x{index:06d}"
    now = int(time.time())
    currency, amount = rng.choice(
        (("krw", rng.randrange(1000, 500_000, 100)), ("usd", rng.randrange(100, 50_000)))
    )
    metadata = {
        "ga_client_id": f"{rng.randrange(10**9, 10**10)}.{now - rng.randrange(0, 86_400)}",
        "fbp": f"fb.1.{now * 1000}.{rng.randrange(10**9, 10**10)}",
        "af_user_id": f"0d7f3c2e-5b7a-4c1e-9a51-{rng.getrandbits(48):012x}",
        "client_user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15",
        "client_ip": f"203.0.113.{rng.randrange(1, 255)}",
        "event_source_url": "https://shop.example.com/checkout/complete",
    }
    if no_af_user:
        del metadata["af_user_id"]
    stripe_id, session_id, intent = f"evt_chaos_{tag}", f"cs_chaos_{tag}", f"pi_chaos_{tag}"
    event = {
        "id": stripe_id,
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": now,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "checkout.session.completed",
        "data": {
            "object": {
                "id": session_id,
                "object": "checkout.session",
                "amount_subtotal": amount,
                "amount_total": amount,
                "created": now - 60,
                "currency": currency,
                "customer": f"cus_chaos_{tag}",
                "customer_details": {
                    "email": f"buyer{index}@example.com",
                    "name": "Chaos Buyer",
                    "phone": f"+8210{rng.randrange(10**7, 10**8)}",
                    "address": {"city": "Seoul", "country": "KR", "postal_code": "06236"},
                },
                "livemode": False,
                "metadata": metadata,
                "mode": "payment",
                "payment_intent": intent,
                "payment_status": "paid",
                "status": "complete",
                "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            }
        },
    }
    body = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return body, stripe_id, session_id, intent


def stripe_signature(body: bytes, secret: str) -> str:
    """Stripe-Signature as Stripe sends it; signed per attempt, so a late retry is still fresh."""
    signed_at = int(time.time())
    digest = hmac.new(secret.encode(), f"{signed_at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={signed_at},v1={digest}"


@dataclass(slots=True)
class IngestTally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    answers: Counter[str] = field(default_factory=Counter)  # final answer per copy
    retried: Counter[str] = field(default_factory=Counter)  # intermediate answers that were retried
    errors: list[str] = field(default_factory=list)
    sqs_copies: int = 0  # messages put on a destination queue a second time


def post_all(
    relay: LocalRelay, deliveries: list[Delivery], config: ChaosConfig, deadline: float, rng: random.Random
) -> IngestTally:
    """Every copy of every delivery, through a few threads; concurrent duplicates start together."""
    import requests

    tally = IngestTally()
    secret = SECRETS["stripe"]["webhook_secrets"][0]
    url = f"{relay.api_url}/webhooks/stripe"
    session_local = threading.local()

    def session() -> requests.Session:
        if not hasattr(session_local, "session"):
            session_local.session = requests.Session()
        return session_local.session

    def post_copy(delivery: Delivery, start: threading.Barrier | None) -> None:
        if start is not None:
            # A sibling copy that cannot start breaks the barrier: post anyway, just not at the same instant.
            with contextlib.suppress(threading.BrokenBarrierError):
                start.wait(timeout=10)
        answer = "not_posted"
        for _ in range(POST_ATTEMPTS):
            if time.monotonic() > deadline:
                answer = "deadline"
                break
            headers = {
                "Content-Type": "application/json",
                "Stripe-Signature": stripe_signature(delivery.body, secret),
            }
            try:
                response = session().post(url, data=delivery.body, headers=headers, timeout=30)
            except requests.RequestException as error:
                answer = f"network:{error.__class__.__name__}"
                with tally.lock:
                    tally.retried[answer] += 1
                time.sleep(POST_RETRY_SECONDS)
                continue
            if response.status_code == 200:
                answer = str(response.json().get("status"))
                break
            answer = f"http_{response.status_code}"
            if response.status_code == 409 or response.status_code >= 500:
                with tally.lock:
                    tally.retried[answer] += 1
                time.sleep(POST_RETRY_SECONDS)  # Stripe retries later; so do we, sooner
                continue
            break  # a 4xx other than 409: Stripe would give up too
        with tally.lock:
            tally.answers[answer] += 1
            delivery.answers.append(answer)
            if answer not in ("accepted", "duplicate"):
                tally.errors.append(f"{delivery.stripe_event_id}: {answer}")
        if answer == "accepted" and delivery.sqs_duplicate:
            copies = enqueue_again(relay, delivery)
            with tally.lock:
                tally.sqs_copies += copies

    # Jobs: a concurrent group posts all its copies at once; other copies are spread over the run.
    jobs: list[tuple[Delivery, int]] = []
    late: list[tuple[Delivery, int]] = []
    for delivery in deliveries:
        if delivery.concurrent:
            jobs.append((delivery, delivery.copies))
        else:
            jobs.append((delivery, 1))
            late.extend((delivery, 1) for _ in range(delivery.copies - 1))
    for job in late:
        jobs.insert(rng.randrange(len(jobs) // 2, len(jobs) + 1), job)  # after the first copy, mostly

    workers = max(config.post_workers, 3)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chaos-post") as pool:
        pending: set[concurrent.futures.Future[None]] = set()
        for delivery, together in jobs:
            if time.monotonic() > deadline:
                break
            barrier = threading.Barrier(together) if together > 1 else None
            for _ in range(together):
                pending.add(pool.submit(post_copy, delivery, barrier))
            # Keep the backlog small so "later" copies really come later.
            while len(pending) > workers * 2:
                _, pending = concurrent.futures.wait(pending, timeout=1, return_when="FIRST_COMPLETED")
                if time.monotonic() > deadline + 60:
                    break
        concurrent.futures.wait(pending, timeout=max(1.0, deadline - time.monotonic() + 30))
    return tally


def enqueue_again(relay: LocalRelay, delivery: Delivery) -> int:
    """Put the delivery's canonical events on every destination queue once more, as the ingest does.

    SQS delivers at least once, and an ingest retry after a half-failed enqueue sends again: the
    copy reaches the consumer as a second message with the same event_id.
    """
    from conversion_relay.providers import stripe

    events = stripe.to_events(stripe.parse(delivery.body))
    sent = 0
    for url in relay.queue_urls.values():
        for event in events:
            relay.sqs.send_message(
                QueueUrl=url,
                MessageBody=event.to_json(),
                MessageAttributes={
                    "correlation_id": {
                        "DataType": "String",
                        "StringValue": f"stripe:{delivery.stripe_event_id}",
                    },
                    "event_id": {"DataType": "String", "StringValue": event.event_id},
                },
            )
            sent += 1
    return sent


# -- faults ---------------------------------------------------------------------------------------------
class FaultPlan:
    """Per request: no fault, or one of FAULT_WEIGHTS, from a seeded RNG (thread-safe, counted)."""

    def __init__(self, destination: str, config: ChaosConfig) -> None:
        from relay_local.fakes.base import Fault

        self._fault = Fault
        self._rng = random.Random(f"{config.seed}:{destination}")
        self._lock = threading.Lock()
        self._rate = config.fault_rate
        self._hold = config.read_timeout_seconds * 3  # well past the client's read timeout
        self._kinds = list(FAULT_WEIGHTS)
        self._weights = list(FAULT_WEIGHTS.values())
        self.counts: Counter[str] = Counter()
        self.lost_answer_bodies: list[bytes] = []

    def __call__(self, request: Request) -> Fault | None:
        if request.method != "POST":
            return None
        with self._lock:
            self.counts["requests"] += 1
            if self._rng.random() >= self._rate:
                return None
            kind = self._rng.choices(self._kinds, self._weights)[0]
            status_5xx = self._rng.choice((500, 502, 503))
            lost_by_timeout = self._rng.random() < 0.5
            self.counts[kind] += 1
        fault = self._fault
        if kind == "http_5xx":
            return fault(status_5xx, {"error": {"message": "chaos: server error", "code": 2}})
        if kind == "http_429":
            return fault(429, {"error": {"message": "chaos: too many requests", "code": 4}})
        if kind == "timeout":
            return fault(None, delay_seconds=self._hold)
        if kind == "dropped":
            return fault(None)
        return fault(None, delay_seconds=self._hold if lost_by_timeout else 0.0, processed=True)


# -- what the fakes accepted ----------------------------------------------------------------------------
def accepted_ids(destination: str, request: Request) -> list[str]:
    """The event ids one accepted request carried (GA4/AppsFlyer: transaction id; Meta: event_id)."""
    try:
        body = request.json()
    except ValueError:
        return []
    if not isinstance(body, dict):
        return []
    if destination == "ga4":
        if request.path != "/mp/collect":
            return []
        return [str((event.get("params") or {}).get("transaction_id")) for event in body.get("events") or []]
    if destination == "meta":
        return [str(event.get("event_id")) for event in body.get("data") or [] if isinstance(event, dict)]
    if not request.path.endswith("/event"):
        return []  # setcuid: a link, not a conversion
    value = body.get("eventValue") or {}
    return [str(value.get("af_order_id"))] if isinstance(value, dict) else []


@dataclass(slots=True)
class DestinationReport:
    expected: int = 0
    delivered: int = 0  # ids the fake accepted at least once
    in_dlq: int = 0  # ids with a DLQ message carrying failure + reason
    dlq_by_failure: dict[str, int] = field(default_factory=dict)
    dlq_by_reason: dict[str, int] = field(default_factory=dict)
    dlq_without_reason: int = 0
    delivered_and_in_dlq: int = 0  # e.g. every attempt's answer was lost, then retries ran out
    lost: int = 0
    lost_ids: list[str] = field(default_factory=list)
    double_sent: int = 0  # accepted again after an answered acceptance: the relay resent a delivery
    double_sent_ids: list[str] = field(default_factory=list)
    resent_after_lost_answer: int = 0  # ids accepted more than once, every extra copy explained
    extra_copies_after_lost_answer: int = 0
    unexpected_ids: int = 0  # accepted ids no accepted webhook produced
    requests: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    queued_at_end: int = 0


def judge_destination(
    relay: LocalRelay, destination: str, deliveries: list[Delivery], plan: FaultPlan
) -> DestinationReport:
    fake: FakeServer = relay.fakes[destination]
    report = DestinationReport()
    accepted_deliveries = [d for d in deliveries if "accepted" in d.answers]
    expected = {d.destination_id(destination) for d in accepted_deliveries}
    by_canonical = {d.canonical_event_id: d.destination_id(destination) for d in deliveries}
    report.expected = len(expected)

    with fake._lock:
        accepted = list(fake.accepted)
        lost_answer = {id(request) for request, fault in fake.faulted if fault.processed}
    copies: Counter[str] = Counter()
    answered: Counter[str] = Counter()  # copies whose success the relay actually saw
    for request in accepted:
        for event_id in accepted_ids(destination, request):
            copies[event_id] += 1
            if id(request) not in lost_answer:
                answered[event_id] += 1
    report.delivered = len(set(copies) & expected)
    report.unexpected_ids = len(set(copies) - expected)
    for event_id, count in sorted(copies.items()):
        if answered[event_id] > 1:
            report.double_sent += 1
            report.double_sent_ids.append(event_id)
        elif count > 1:
            report.resent_after_lost_answer += 1
            report.extra_copies_after_lost_answer += count - 1

    in_dlq: set[str] = set()
    failures: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for message in relay.dlq_messages(destination):
        attributes = message["attributes"]
        event_id = by_canonical.get(str(attributes.get("event_id")), str(attributes.get("event_id")))
        if not attributes.get("failure") or not attributes.get("reason"):
            report.dlq_without_reason += 1
            continue
        in_dlq.add(event_id)
        failures[attributes["failure"]] += 1
        reasons[f"{attributes['failure']}: {_reason_head(attributes['reason'])}"] += 1
    report.in_dlq = len(in_dlq & expected)
    report.dlq_by_failure = dict(failures.most_common())
    report.dlq_by_reason = dict(reasons.most_common(8))
    report.delivered_and_in_dlq = len(set(copies) & in_dlq & expected)
    lost = sorted(expected - set(copies) - in_dlq)
    report.lost, report.lost_ids = len(lost), lost[:20]
    report.requests = plan.counts["requests"]
    report.faults = {kind: plan.counts[kind] for kind in FAULT_WEIGHTS}
    report.queued_at_end = relay.queue_depths().get(destination, 0)
    return report


def _reason_head(reason: str, limit: int = 90) -> str:
    """Reasons name a field or an error first; the tail varies per event (ids, attempts, times)."""
    head = reason.split("; last failure:")[0] if reason.startswith("still failing") else reason
    if head.startswith("still failing after"):
        head = (
            "still failing after MaxReceiveCount attempts; last failure: "
            + reason.split("last failure: ", 1)[-1]
        )
    return head if len(head) <= limit else head[: limit - 1] + "…"


# -- metrics the handlers printed (EMF) -----------------------------------------------------------------
class EmfSink(io.TextIOBase):
    """Stands in for stdout while the stack runs: sums EMF metrics, counts other lines, keeps errors."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = ""
        self.metrics: dict[str, Counter[str]] = defaultdict(Counter)
        self.other_lines = 0
        self.error_lines: list[str] = []

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            self._buffer += text
            *lines, self._buffer = self._buffer.split("\n")
            for line in lines:
                self._take(line)
        return len(text)

    def _take(self, line: str) -> None:
        if not line.strip():
            return
        try:
            record = json.loads(line)
        except ValueError:
            self.other_lines += 1
            return
        if not isinstance(record, dict) or "_aws" not in record:
            self.other_lines += 1
            is_error = isinstance(record, dict) and str(record.get("level", "")).upper() == "ERROR"
            if is_error and len(self.error_lines) < 20:
                self.error_lines.append(line[:400])
            return
        scope = str(record.get("destination") or "ingest")
        for directive in record["_aws"].get("CloudWatchMetrics", []):
            for metric in directive.get("Metrics", []):
                name = metric.get("Name")
                value = record.get(name)
                values = value if isinstance(value, list) else [value]
                if metric.get("Unit") == "Count":
                    self.metrics[scope][name] += int(sum(v for v in values if isinstance(v, int | float)))


@contextmanager
def stdout_to(sink: EmfSink) -> Iterator[None]:
    saved = sys.stdout
    sys.stdout = sink
    try:
        yield
    finally:
        sys.stdout = saved


# -- the run --------------------------------------------------------------------------------------------
def _prepare_imports(read_timeout: float) -> None:
    """The HTTP read timeout is read when conversion_relay.http is imported: set it first."""
    os.environ["HTTP_READ_TIMEOUT_SECONDS"] = str(read_timeout)
    for path in (str(PROJECT_ROOT), str(LAYER)):
        if path not in sys.path:
            sys.path.insert(0, path)
    from conversion_relay import http

    if abs(http.TIMEOUT[1] - read_timeout) > 1e-9:
        raise SystemExit(
            "conversion_relay.http was imported before chaos set HTTP_READ_TIMEOUT_SECONDS "
            f"(read timeout {http.TIMEOUT[1]} s, wanted {read_timeout} s): run chaos in a fresh process"
        )


def run(config: ChaosConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    _prepare_imports(config.read_timeout_seconds)
    from relay_local.stack import DrainTimeout, LocalRelay

    started = time.monotonic()
    deadline = started + config.max_seconds
    rng = random.Random(config.seed)
    deliveries = plan_deliveries(config, rng)
    environment = {
        "HTTP_READ_TIMEOUT_SECONDS": str(config.read_timeout_seconds),
        "POWERTOOLS_LOG_LEVEL": "ERROR",  # thousands of retries would drown the summary
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    plans = {name: FaultPlan(name, config) for name in DESTINATIONS}
    sink = EmfSink()
    settled = True
    phases: dict[str, float] = {}
    log(
        f"chaos: {config.webhooks} webhooks ({len(deliveries)} deliveries), seed {config.seed}, "
        f"fault rate {config.fault_rate:.0%}, read timeout {config.read_timeout_seconds} s, "
        f"limit {config.max_seconds:.0f} s"
    )
    with stdout_to(sink), LocalRelay(secrets=SECRETS, fast_retries=True, environment=environment) as relay:
        for name, plan in plans.items():
            relay.fakes[name].fault_plan = plan
        phases["start"] = time.monotonic() - started
        tally = post_all(relay, deliveries, config, deadline, rng)
        phases["post"] = time.monotonic() - started - phases["start"]
        try:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DrainTimeout("no time left to drain")
            relay.drain(timeout_seconds=remaining, max_polls=100_000)
        except DrainTimeout as error:
            settled = False
            sink.error_lines.append(f"drain: {error}")
        phases["drain"] = time.monotonic() - started - phases["start"] - phases["post"]
        for plan in plans.values():
            plan._rate = 0.0  # nothing else is sent; stop drawing faults while we read the DLQs
        destinations = {
            name: judge_destination(relay, name, deliveries, plans[name]) for name in DESTINATIONS
        }
    duration = time.monotonic() - started
    return _report(config, deliveries, tally, destinations, sink, settled, duration, phases)


def _report(
    config: ChaosConfig,
    deliveries: list[Delivery],
    tally: IngestTally,
    destinations: dict[str, DestinationReport],
    sink: EmfSink,
    settled: bool,
    duration: float,
    phases: dict[str, float],
) -> dict[str, Any]:
    accepted = [d for d in deliveries if "accepted" in d.answers]
    accepted_twice = [d.stripe_event_id for d in deliveries if d.answers.count("accepted") > 1]
    duplicate_copies = sum(d.copies - 1 for d in deliveries)
    webhooks = {
        "posted": sum(len(d.answers) for d in deliveries),
        "deliveries": len(deliveries),
        "duplicate_copies": duplicate_copies,
        "concurrent_groups": sum(1 for d in deliveries if d.concurrent),
        "accepted": len(accepted),
        "answered_duplicate": tally.answers["duplicate"],
        "retried_after": dict(tally.retried),
        "final_answers": dict(tally.answers),
        "accepted_twice": len(accepted_twice),
        "sqs_copies": tally.sqs_copies,
        "not_accepted": [d.stripe_event_id for d in deliveries if "accepted" not in d.answers][:20],
    }
    metrics = {scope: dict(sorted(counter.items())) for scope, counter in sorted(sink.metrics.items())}
    checks: list[dict[str, Any]] = []

    def check(name: str, ok: bool, detail: str) -> None:
        checks.append({"name": name, "ok": bool(ok), "detail": detail})

    check("pipeline settled in time", settled, "queues drained" if settled else "time limit hit")
    check(
        "every delivery accepted by the ingest once",
        len(accepted) == len(deliveries) and not accepted_twice,
        f"{len(accepted)}/{len(deliveries)} accepted, {len(accepted_twice)} accepted twice",
    )
    check(
        "every other copy answered duplicate",
        tally.answers["duplicate"] == duplicate_copies,
        f"{tally.answers['duplicate']} duplicate answers for {duplicate_copies} extra copies",
    )
    for name, report in destinations.items():
        check(f"{name}: lost = 0", report.lost == 0, f"{report.lost} lost {report.lost_ids[:5]}")
        check(
            f"{name}: double-sent = 0",
            report.double_sent == 0,
            f"{report.double_sent} accepted again after an answered delivery {report.double_sent_ids[:5]}",
        )
        check(
            f"{name}: DLQ messages carry a reason",
            report.dlq_without_reason == 0,
            str(report.dlq_without_reason),
        )
        check(f"{name}: nothing left queued", report.queued_at_end == 0, str(report.queued_at_end))
        check(f"{name}: nothing unexpected accepted", report.unexpected_ids == 0, str(report.unexpected_ids))
    rejected_for_appsflyer = sum(1 for d in accepted if d.expect_appsflyer_reject)
    check(
        "appsflyer: events without a user id dead-lettered as rejected",
        destinations["appsflyer"].dlq_by_failure.get("rejected", 0) >= rejected_for_appsflyer,
        f"{destinations['appsflyer'].dlq_by_failure.get('rejected', 0)} rejected, "
        f"{rejected_for_appsflyer} expected",
    )
    af = destinations["appsflyer"]
    check(
        "appsflyer: no event counted twice, lost answers included (they go to the DLQ as uncertain)",
        af.resent_after_lost_answer == 0,
        f"{af.resent_after_lost_answer} events resent after a lost answer",
    )
    return {
        "config": asdict(config),
        "duration_seconds": round(duration, 1),
        "phases_seconds": {name: round(value, 1) for name, value in phases.items()},
        "webhooks": webhooks,
        "destinations": {name: asdict(report) for name, report in destinations.items()},
        "metrics": metrics,
        "log_lines": sink.other_lines,
        "error_lines": sink.error_lines,
        "checks": checks,
        "ok": all(c["ok"] for c in checks),
        "settled": settled,
    }


def render(report: dict[str, Any]) -> str:
    w = report["webhooks"]
    phases = ", ".join(f"{name} {seconds} s" for name, seconds in report["phases_seconds"].items())
    m = report["metrics"]
    suppressed = sum(m.get(n, {}).get("DuplicateSuppressed", 0) for n in DESTINATIONS)
    lines = [
        f"chaos run: {report['duration_seconds']} s ({phases})",
        f"webhooks posted        {w['posted']:>6}  ({w['deliveries']} deliveries; {w['duplicate_copies']} "
        f"duplicate copies, {w['concurrent_groups']} deliveries posted concurrently)",
        f"accepted               {w['accepted']:>6}",
        f"duplicates suppressed  {w['answered_duplicate']:>6}  by the ingest (answered `duplicate`; "
        f"retried first: {w['retried_after'] or 'none'})",
        f"{'':<23}{suppressed:>6}  by the consumers' ledger ({w['sqs_copies']} messages put on the "
        "queues twice)",
        "",
        f"{'':<34}{'ga4':>10}{'meta':>10}{'appsflyer':>11}",
    ]
    d = report["destinations"]

    def row(label: str, values: list[Any]) -> None:
        lines.append(f"{label:<34}{values[0]!s:>10}{values[1]!s:>10}{values[2]!s:>11}")

    names = list(DESTINATIONS)
    row("expected events", [d[n]["expected"] for n in names])
    row("delivered (accepted by the fake)", [d[n]["delivered"] for n in names])
    row("in DLQ with a reason", [d[n]["in_dlq"] for n in names])
    row("  of which also delivered", [d[n]["delivered_and_in_dlq"] for n in names])
    row("LOST", [d[n]["lost"] for n in names])
    row("DOUBLE-SENT", [d[n]["double_sent"] for n in names])
    row("resent after a lost answer", [d[n]["resent_after_lost_answer"] for n in names])
    row("requests to the destination", [d[n]["requests"] for n in names])
    for kind in FAULT_WEIGHTS:
        row(f"  fault {kind}", [d[n]["faults"][kind] for n in names])
    for metric in (
        "Delivered",
        "Retried",
        "DuplicateSuppressed",
        "DuplicateInFlight",
        "AmbiguousDeadLettered",
        "DeadLettered",
    ):
        row(f"metric {metric}", [m.get(n, {}).get(metric, 0) for n in names])
    lines.append("")
    lines.append(
        "resent after a lost answer: the destination accepted the event but its answer never came back "
        "(timeout or dropped connection after processing), so the relay sent it again. GA4 and Meta "
        "de-duplicate these (transaction_id / event_id). AppsFlyer does not, so the relay does not resend "
        "them there: they are in its DLQ as 'uncertain' (metric AmbiguousDeadLettered)."
    )
    for name in names:
        if d[name]["dlq_by_reason"]:
            lines.append(f"DLQ {name} by failure {d[name]['dlq_by_failure']}:")
            lines.extend(f"  {count:>5}  {reason}" for reason, count in d[name]["dlq_by_reason"].items())
    lines.append("")
    for check in report["checks"]:
        lines.append(f"[{'ok' if check['ok'] else 'FAIL'}] {check['name']}: {check['detail']}")
    if not report["ok"] and report["error_lines"]:
        lines.append("error log lines (first ones):")
        lines.extend(f"  {line}" for line in report["error_lines"])
    lines.append("chaos: PASSED" if report["ok"] else "chaos: FAILED")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="chaos",
        description=(
            "Post thousands of signed Stripe webhooks (duplicates included) through the local relay while "
            "the fake GA4, Meta and AppsFlyer answer 5xx, 429, time out or drop connections at random; "
            "then check that nothing was lost and nothing was sent twice. Loopback only."
        ),
    )
    default = ChaosConfig()
    parser.add_argument(
        "--webhooks",
        type=int,
        default=int(os.environ.get("CHAOS_WEBHOOKS", default.webhooks)),
        help="POSTs to make, duplicate copies included (default: $CHAOS_WEBHOOKS or %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED", default.seed)))
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=float(os.environ.get("CHAOS_MAX_SECONDS", default.max_seconds)),
        help="give up (exit 2) when the run takes longer (default %(default)s)",
    )
    parser.add_argument("--fault-rate", type=float, default=default.fault_rate, help="default %(default)s")
    parser.add_argument(
        "--read-timeout", type=float, default=default.read_timeout_seconds, help="client read timeout, s"
    )
    parser.add_argument("--json", type=Path, help="also write the full report as JSON to this file")
    args = parser.parse_args(argv)
    if not 1 <= args.webhooks <= 100_000:
        parser.error("--webhooks must be between 1 and 100000")
    if not 0 <= args.fault_rate < 1:
        parser.error("--fault-rate must be in [0, 1)")
    if args.max_seconds <= 0 or args.read_timeout <= 0:
        parser.error("--max-seconds and --read-timeout must be positive")
    config = ChaosConfig(
        webhooks=args.webhooks,
        seed=args.seed,
        max_seconds=args.max_seconds,
        fault_rate=args.fault_rate,
        read_timeout_seconds=args.read_timeout,
    )
    report = run(config)
    print(render(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    if not report["settled"]:
        return 2
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
