"""Stripe webhooks for the integration tests: a paid Checkout Session, unique ids, signed as Stripe signs."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import requests

LOCAL_SECRETS: dict[str, dict[str, Any]] = {
    "stripe": {"webhook_secrets": ["whsec_local_example_secret_do_not_use_in_prod"]},
    "ga4": {"measurement_id": "G-LOCAL12345", "api_secret": "local-ga4-api-secret"},
    "meta": {"pixel_id": "123456789012345", "access_token": "local-meta-access-token"},
    "appsflyer": {"bundle_id": "com.example.shop", "web_dev_key": "local-appsflyer-web-dev-key"},
}
STRIPE_SECRET = LOCAL_SECRETS["stripe"]["webhook_secrets"][0]
GA_CLIENT_ID = "1786543210.1792626900"
FBP = "fb.1.1792626890123.1098765432"
AF_USER_ID = "0d7f3c2e-5b7a-4c1e-9a51-3f0b2d6e8c41"
EMAIL = "minsu.kim@example.com"
USER_AGENT = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def checkout_completed(
    *,
    amount_total: int = 59000,
    currency: str = "krw",
    event_type: str = "checkout.session.completed",
) -> dict[str, Any]:
    """A paid Checkout Session (payment mode) carrying the browser identifiers in its metadata."""
    now = int(time.time())
    return {
        "id": unique("evt_test"),
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": now,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
        "data": {
            "object": {
                "id": unique("cs_test"),
                "object": "checkout.session",
                "amount_subtotal": amount_total,
                "amount_total": amount_total,
                "created": now - 60,
                "currency": currency,
                "customer": unique("cus"),
                "customer_details": {
                    "email": EMAIL,
                    "name": "김민수",
                    "phone": "+821012345678",
                    "address": {"city": "Seoul", "country": "KR", "postal_code": "06236"},
                },
                "livemode": False,
                "metadata": {
                    "ga_client_id": GA_CLIENT_ID,
                    "fbp": FBP,
                    "af_user_id": AF_USER_ID,
                    "client_user_agent": USER_AGENT,
                    "client_ip": "203.0.113.10",
                    "event_source_url": "https://shop.example.com/checkout/complete",
                },
                "mode": "payment",
                "payment_intent": unique("pi"),
                "payment_status": "paid",
                "status": "complete",
                "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            }
        },
    }


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def stripe_signature(body: bytes, secret: str = STRIPE_SECRET, timestamp: int | None = None) -> str:
    """The Stripe-Signature header Stripe would send: t=<unix>,v1=hex(HMAC-SHA256(secret, "<t>.<body>"))."""
    signed_at = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode("utf-8"), f"{signed_at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={signed_at},v1={digest}"


PostWebhook = Callable[..., requests.Response]
