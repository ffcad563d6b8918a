"""Inputs for the benchmarks: signed Stripe webhooks, canonical events as SQS records, varied customers.

Every webhook is a paid Checkout Session for a different customer (a sale spike: each buyer is new),
carrying the browser identifiers all three destinations need. Nothing here is real personal data.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import time
import uuid
from typing import Any

from conversion_relay.model import ConversionEvent, Person
from conversion_relay.providers import stripe

STRIPE_SECRET = "whsec_bench_secret_do_not_use"
USER_AGENT = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"

_FIRST = ["Minsu", "Jiyoung", "Alex", "María", "Zoë", "Søren", "김민수", "O'Brien", "Anne-Marie", "Li"]
_LAST = ["Kim", "Lee", "García", "Müller", "Smith", "Nakamura", "Park", "Dubois", "Rossi", "Chen"]
_CITIES = ["Seoul", "San Francisco", "München", "São Paulo", "New York", "Tokyo", "Paris", "Busan"]
_STATES = ["CA", "NY", "Seoul", "BY", "SP", "Tokyo", "IDF", None]
_COUNTRIES = ["KR", "US", "DE", "BR", "JP", "FR", "GB", "ES"]
_PHONES = ["+82 10-1234-{n:04d}", "(415) 555-{n:04d}", "+49 (0)89 1234{n:04d}", "001 212 555 {n:04d}"]


def person(index: int, rng: random.Random) -> Person:
    """A customer with every field Meta hashes, in the messy shapes checkouts produce."""
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    return Person(
        email=f"  {first.lower()}.{last.lower()}+{index}@Example.COM ".replace("'", ""),
        phone=rng.choice(_PHONES).format(n=index % 10000),
        first_name=f" {first} ",
        last_name=last.upper(),
        date_of_birth=f"19{rng.randint(50, 99)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
        gender=rng.choice(["m", "f", "M", " F "]),
        city=rng.choice(_CITIES),
        state=rng.choice(_STATES),
        zip=f"{rng.randint(10000, 99999)}-{rng.randint(1000, 9999)}",
        country=rng.choice(_COUNTRIES),
    )


def people(count: int, seed: int = 8) -> list[Person]:
    rng = random.Random(seed)
    return [person(index, rng) for index in range(count)]


def checkout_payload(index: int, now: int | None = None) -> dict[str, Any]:
    now = int(time.time()) if now is None else now
    suffix = f"{index:06d}{uuid.uuid4().hex[:10]}"
    return {
        "id": f"evt_bench_{suffix}",
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": now,
        "livemode": False,
        "pending_webhooks": 1,
        "type": "checkout.session.completed",
        "data": {
            "object": {
                "id": f"cs_bench_{suffix}",
                "object": "checkout.session",
                "amount_subtotal": 59000,
                "amount_total": 59000,
                "created": now - 60,
                "currency": "krw",
                "customer": f"cus_{suffix}",
                "customer_details": {
                    "email": f"buyer{index}@example.com",
                    "name": "김민수",
                    "phone": "+821012345678",
                    "address": {"city": "Seoul", "country": "KR", "postal_code": "06236"},
                },
                "metadata": {
                    "ga_client_id": f"17865{index:05d}.1792626900",
                    "fbp": f"fb.1.1792626890123.{index:010d}",
                    "af_user_id": str(uuid.UUID(int=index + 1)),
                    "client_user_agent": USER_AGENT,
                    "client_ip": "203.0.113.10",
                    "event_source_url": "https://shop.example.com/checkout/complete",
                },
                "mode": "payment",
                "payment_intent": f"pi_{suffix}",
                "payment_status": "paid",
                "status": "complete",
                "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            }
        },
    }


def sign(body: bytes, secret: str = STRIPE_SECRET, timestamp: int | None = None) -> str:
    """A Stripe-Signature header value, computed as Stripe computes it."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), b"%d." % timestamp + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def signed_webhooks(count: int) -> list[tuple[dict[str, str], bytes]]:
    """(headers, raw body) pairs, each a distinct delivery so idempotency never short-circuits."""
    webhooks = []
    for index in range(count):
        body = json.dumps(checkout_payload(index), separators=(",", ":")).encode()
        webhooks.append(({"stripe-signature": sign(body), "content-type": "application/json"}, body))
    return webhooks


def canonical_events(count: int, offset: int = 0) -> list[ConversionEvent]:
    events: list[ConversionEvent] = []
    for index in range(offset, offset + count):
        events.extend(stripe.to_events(checkout_payload(index)))
    return events


def sqs_event(events: list[ConversionEvent]) -> dict[str, Any]:
    """The event Lambda's SQS event source mapping hands a consumer."""
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": "bench",
                "body": event.to_json(),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
            }
            for event in events
        ]
    }
