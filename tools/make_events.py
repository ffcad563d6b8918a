"""Write the sample events in events/: raw Stripe webhooks, signed API Gateway requests and SQS batches.

Run it with `make events` (or `.venv/bin/python tools/make_events.py`). It writes:

- events/stripe/<name>.json   the raw Stripe event (API version 2025-03-31.basil shapes): the exact
                              request body that is signed, plus a final newline.
- events/apigw/stripe-<name>.json
                              an API Gateway HTTP API (payload format 2.0) request for POST
                              /webhooks/stripe whose `stripe-signature` header is signed with the first
                              secret in events/local-secrets.json, plus stripe-bad-signature.json
                              signed with a wrong secret (the ingest must answer 400).
- events/sqs/<destination>-batch.json
                              an SQS event for each destination consumer; each record body is the
                              canonical ConversionEvent JSON that conversion_relay.providers.stripe
                              produces from the fixtures above, for the kinds the destination sends
                              (config.destination_event_name is not None).

Everything is dated relative to the CURRENT time, so re-running rewrites every file:
- signatures go stale: Stripe's tolerance (and WEBHOOK_TOLERANCE_SECONDS) is 300 s, so the apigw events
  are signed with the time of the run; re-run `make events` just before replaying them;
- the Stripe objects are dated within the three hours before the run, because destinations refuse old
  events (GA4 Measurement Protocol: 72 h, Meta: 7 days), so the SQS batches stay sendable for a while.
`--at UNIX_SECONDS` pins "now" for reproducible output. Ids are fixed, so the relay's dedupe (by Stripe
event id and canonical event_id) treats a replay of the same file as a duplicate.

events/local-secrets.json holds example credentials for the local stack only; it is created with
placeholder values when missing and never overwritten.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "layers" / "shared"))

from conversion_relay.config import DESTINATIONS, destination_event_name  # noqa: E402
from conversion_relay.providers import paddle, standard_webhooks, stripe  # noqa: E402

EVENTS = ROOT / "events"
LOCAL_SECRETS = EVENTS / "local-secrets.json"
DEFAULT_LOCAL_SECRETS: dict[str, Any] = {
    "stripe": {"webhook_secrets": ["whsec_local_example_secret_do_not_use_in_prod"]},
    "ga4": {"measurement_id": "G-LOCAL12345", "api_secret": "local-ga4-api-secret"},
    "meta": {"pixel_id": "123456789012345", "access_token": "local-meta-access-token"},
    "appsflyer": {"bundle_id": "com.example.shop", "web_dev_key": "local-appsflyer-web-dev-key"},
}
API_VERSION = "2025-03-31.basil"
ACCOUNT = "123456789012"
REGION = "us-east-1"
API_ID = "a1b2c3d4e5"
STRIPE_SOURCE_IP = "3.18.12.63"  # one of Stripe's published webhook IPs
STRIPE_USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"
# Every object time lies within the last three hours, inside every destination's accepted window
# (GA4 Measurement Protocol takes events up to 72 h old, Meta up to 7 days).
HOUR = 3600

BROWSER_METADATA = {
    "ga_client_id": "1786543210.1792626900",
    "ga_session_id": "1792626900",
    "user_id": "u_1001",
    "fbp": "fb.1.1792626890123.1098765432",
    "fbc": "fb.1.1792626880000.IwAR2xExampleClickId",
    "af_user_id": "0d7f3c2e-5b7a-4c1e-9a51-3f0b2d6e8c41",
    "customer_user_id": "u_1001",
    "client_ip": "203.0.113.10",
    "client_user_agent": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
    ),
    "event_source_url": "https://shop.example.com/checkout/complete",
    "referrer_url": "https://shop.example.com/cart",
    "action_source": "website",
    "consent_ad_user_data": "granted",
    "consent_ad_personalization": "denied",
}


def _event(event_id: str, event_type: str, created: int, obj: dict[str, Any], **data: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "object": "event",
        "api_version": API_VERSION,
        "created": created,
        "data": {"object": obj, **data},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def _checkout_session(
    session_id: str,
    *,
    amount: int,
    currency: str,
    customer: str | None,
    details: dict[str, Any],
    metadata: dict[str, str],
    created: int,
    payment_intent: str,
    client_reference_id: str | None = None,
) -> dict[str, Any]:
    return {
        "id": session_id,
        "object": "checkout.session",
        "adaptive_pricing": {"enabled": False},
        "allow_promotion_codes": None,
        "amount_subtotal": amount,
        "amount_total": amount,
        "automatic_tax": {"enabled": False, "liability": None, "status": None},
        "billing_address_collection": "auto",
        "cancel_url": "https://shop.example.com/cart",
        "client_reference_id": client_reference_id,
        "created": created,
        "currency": currency,
        "customer": customer,
        "customer_creation": "if_required",
        "customer_details": details,
        "customer_email": None,
        "expires_at": created + 86400,
        "invoice": None,
        "livemode": False,
        "locale": None,
        "metadata": metadata,
        "mode": "payment",
        "payment_intent": payment_intent,
        "payment_method_types": ["card"],
        "payment_status": "paid",
        "status": "complete",
        "submit_type": None,
        "subscription": None,
        "success_url": "https://shop.example.com/checkout/complete?session_id={CHECKOUT_SESSION_ID}",
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": "hosted",
        "url": None,
    }


def stripe_events(t0: int) -> dict[str, dict[str, Any]]:
    """The raw Stripe events, by fixture name; object times are offsets from `t0` (unix seconds)."""
    krw_session = _checkout_session(
        "cs_test_a1KrwCheckoutSession0001",
        amount=59000,
        currency="krw",
        customer="cus_QkrwExample0001",
        details={
            "address": {
                "city": "Seoul",
                "country": "KR",
                "line1": "테헤란로 123",
                "line2": "5층",
                "postal_code": "06236",
                "state": "Seoul",
            },
            "email": "minsu.kim@example.com",
            "name": "김민수",
            "phone": "+821012345678",
            "tax_exempt": "none",
            "tax_ids": [],
        },
        metadata=BROWSER_METADATA,
        created=t0,
        payment_intent="pi_3QkrwExample0001",
        client_reference_id="u_1001",
    )
    usd_session = _checkout_session(
        "cs_test_b2UsdCheckoutSession0002",
        amount=4999,
        currency="usd",
        customer=None,
        details={
            "address": {
                "city": "Brooklyn",
                "country": "US",
                "line1": "350 Fifth Avenue",
                "line2": None,
                "postal_code": "11201",
                "state": "NY",
            },
            "email": "jane.doe@example.com",
            "name": "Jane Doe",
            "phone": None,
            "tax_exempt": "none",
            "tax_ids": [],
        },
        metadata={"ga_client_id": "555123456.1792713000", "fbp": "fb.1.1792713000456.2233445566"},
        created=t0 + 600,
        payment_intent="pi_3QusdExample0002",
    )
    subscription_metadata = {key: BROWSER_METADATA[key] for key in ("ga_client_id", "user_id", "af_user_id")}
    invoice = {
        "id": "in_1QcycleExample0003",
        "object": "invoice",
        "account_country": "KR",
        "amount_due": 9900,
        "amount_paid": 9900,
        "amount_remaining": 0,
        "attempt_count": 1,
        "attempted": True,
        "billing_reason": "subscription_cycle",
        "collection_method": "charge_automatically",
        "created": t0 + HOUR,
        "currency": "krw",
        "customer": "cus_QkrwExample0001",
        "customer_address": {
            "city": "Seoul",
            "country": "KR",
            "line1": "테헤란로 123",
            "line2": "5층",
            "postal_code": "06236",
            "state": "Seoul",
        },
        "customer_email": "minsu.kim@example.com",
        "customer_name": "김민수",
        "customer_phone": "+821012345678",
        "lines": {
            "object": "list",
            "data": [
                {
                    "id": "il_1QcycleLine0001",
                    "object": "line_item",
                    "amount": 9900,
                    "currency": "krw",
                    "description": "1 \u00d7 Premium plan (at ₩9,900 / month)",
                    "parent": {
                        "type": "subscription_item_details",
                        "subscription_item_details": {
                            "subscription": "sub_1QkrwExample0001",
                            "subscription_item": "si_QkrwExample0001",
                        },
                    },
                    "period": {"start": t0 + HOUR, "end": t0 + HOUR + 30 * 24 * HOUR},
                    "pricing": {
                        "type": "price_details",
                        "price_details": {"price": "price_1QpremiumMonthly", "product": "prod_Qpremium"},
                        "unit_amount_decimal": "9900",
                    },
                    "quantity": 1,
                }
            ],
            "has_more": False,
            "url": "/v1/invoices/in_1QcycleExample0003/lines",
        },
        "livemode": False,
        "metadata": {},
        "number": "EXAMPLE-0003",
        "parent": {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {
                "metadata": subscription_metadata,
                "subscription": "sub_1QkrwExample0001",
            },
        },
        "status": "paid",
        "status_transitions": {
            "finalized_at": t0 + 2 * HOUR,
            "marked_uncollectible_at": None,
            "paid_at": t0 + 2 * HOUR + 5,
            "voided_at": None,
        },
        "subtotal": 9900,
        "total": 9900,
        "total_taxes": [],
    }
    charge = {
        "id": "ch_3QusdExample0002",
        "object": "charge",
        "amount": 4999,
        "amount_captured": 4999,
        "amount_refunded": 2500,
        "billing_details": {
            "address": {
                "city": "Brooklyn",
                "country": "US",
                "line1": "350 Fifth Avenue",
                "line2": None,
                "postal_code": "11201",
                "state": "NY",
            },
            "email": "jane.doe@example.com",
            "name": "Jane Doe",
            "phone": None,
        },
        "captured": True,
        "created": t0 + 660,
        "currency": "usd",
        "customer": None,
        "livemode": False,
        "metadata": {},
        "paid": True,
        "payment_intent": "pi_3QusdExample0002",
        "receipt_email": "jane.doe@example.com",
        "refunded": False,
        "status": "succeeded",
    }
    customer = {
        "id": "cus_QnewExample0005",
        "object": "customer",
        "created": t0 + 2 * HOUR + 600,
        "email": "new.customer@example.com",
        "livemode": False,
        "metadata": {},
        "name": "New Customer",
    }
    return {
        "checkout_session_completed_krw": _event(
            "evt_1QkrwCheckoutCompleted01", "checkout.session.completed", t0 + 95, krw_session
        ),
        "checkout_session_completed_usd": _event(
            "evt_1QusdCheckoutCompleted02", "checkout.session.completed", t0 + 660, usd_session
        ),
        "invoice_paid_subscription_cycle": _event(
            "evt_1QinvoicePaidCycle0003", "invoice.paid", t0 + 2 * HOUR + 6, invoice
        ),
        "charge_refunded_partial": _event(
            "evt_3QchargeRefunded00004",
            "charge.refunded",
            t0 + HOUR + 1800,
            charge,
            # The second partial refund on this charge: 10.00 earlier, 15.00 now.
            previous_attributes={"amount_refunded": 1000},
        ),
        "customer_created_ignored": _event(
            "evt_1QcustomerCreated005", "customer.created", t0 + 2 * HOUR + 600, customer
        ),
    }


def body_text(event: dict[str, Any]) -> str:
    # Stripe sends pretty-printed UTF-8 JSON; keeping non-ASCII raw makes the HMAC cover multi-byte text.
    return json.dumps(event, indent=2, ensure_ascii=False)


def signature_header(body: str, secret: str, timestamp: int) -> str:
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def apigw_request(body: str, signature: str, now: float) -> dict[str, Any]:
    request_id = str(uuid.uuid5(uuid.NAMESPACE_URL, signature))
    epoch_ms = int(now * 1000)
    return {
        "version": "2.0",
        "routeKey": "POST /webhooks/{provider}",
        "rawPath": "/webhooks/stripe",
        "rawQueryString": "",
        "headers": {
            "accept": "*/*; q=0.5, application/xml",
            "cache-control": "no-cache",
            "content-length": str(len(body.encode("utf-8"))),
            "content-type": "application/json; charset=utf-8",
            "host": f"{API_ID}.execute-api.{REGION}.amazonaws.com",
            "stripe-signature": signature,
            "user-agent": STRIPE_USER_AGENT,
            "x-amzn-trace-id": f"Root=1-{int(now):08x}-{request_id.replace('-', '')[:24]}",
            "x-forwarded-for": STRIPE_SOURCE_IP,
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
        },
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": API_ID,
            "domainName": f"{API_ID}.execute-api.{REGION}.amazonaws.com",
            "domainPrefix": API_ID,
            "http": {
                "method": "POST",
                "path": "/webhooks/stripe",
                "protocol": "HTTP/1.1",
                "sourceIp": STRIPE_SOURCE_IP,
                "userAgent": STRIPE_USER_AGENT,
            },
            "requestId": request_id,
            "routeKey": "POST /webhooks/{provider}",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": epoch_ms,
        },
        "pathParameters": {"provider": "stripe"},
        "body": body,
        "isBase64Encoded": False,
    }


# --- PortOne, Toss, Paddle and POST /events samples --------------------------------------------------
# Raw bodies in events/<provider>/ and signed API Gateway requests in events/apigw/<provider>-<name>.json.
# PortOne and Toss webhooks are thin or untrusted: replaying them needs the payment in the provider's API
# (the local stack's fakes: relay.provider_apis["portone"].put_payment(...)); events/<provider>/
# payment-*.json hold the payments to register.
PORTONE_SOURCE_IP = "52.78.5.241"  # PortOne's published webhook address
TOSS_SOURCE_IP = "13.124.18.147"  # one of Toss's published webhook addresses
PADDLE_SOURCE_IP = "34.232.58.13"  # one of Paddle's live webhook addresses


def _iso(unix: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix))


def provider_samples(t0: int) -> dict[str, dict[str, Any]]:
    """provider -> sample name -> raw webhook body (dict); object times are offsets from `t0`."""
    custom = {
        k: BROWSER_METADATA[k] for k in ("ga_client_id", "fbp", "fbc", "af_user_id", "client_user_agent")
    }
    portone_payment = {
        "status": "PARTIAL_CANCELLED",
        "id": "order-20260102-0001",
        "transactionId": "01941a2b-0000-7000-8000-000000000001",
        "storeId": "store-00000000-0000-0000-0000-000000000000",
        "channel": {"type": "TEST", "pgProvider": "TOSSPAYMENTS"},
        "orderName": "Premium plan",
        "amount": {"total": 59000, "paid": 59000, "cancelled": 10000, "vat": 5364, "discount": 0},
        "currency": "KRW",
        "customer": {
            "id": "u_1001",
            "name": "김민수",
            "email": "minsu.kim@example.com",
            "phoneNumber": "01012345678",
        },
        "customData": json.dumps(custom, ensure_ascii=False),
        "products": [{"id": "premium", "name": "Premium plan", "amount": 59000, "quantity": 1}],
        "requestedAt": _iso(t0),
        "statusChangedAt": _iso(t0 + HOUR),
        "paidAt": _iso(t0 + 60),
        "cancellations": [
            {
                "status": "SUCCEEDED",
                "id": "cancel-0001",
                "totalAmount": 10000,
                "taxFreeAmount": 0,
                "vatAmount": 909,
                "reason": "부분 환불",
                "requestedAt": _iso(t0 + HOUR),
                "cancelledAt": _iso(t0 + HOUR + 5),
            },
        ],
    }
    toss_payment = {
        "mId": "tvivarepublica",
        "paymentKey": "tgen_20260102000000ABCD1",
        "orderId": "order-20260102-0002",
        "orderName": "Premium plan",
        "lastTransactionKey": "txrd_a01jexample0002",
        "status": "DONE",
        "type": "NORMAL",
        "method": "카드",
        "currency": "KRW",
        "totalAmount": 59000,
        "balanceAmount": 59000,
        "vat": 5364,
        "requestedAt": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(t0)),
        "approvedAt": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(t0 + 60)),
        "metadata": {k: custom[k] for k in ("ga_client_id", "fbp", "af_user_id")},
        "cancels": None,
    }
    paddle_transaction = {
        "id": "txn_01jexample0000000000000001",
        "status": "completed",
        "origin": "subscription_recurring",
        "customer_id": "ctm_01jexample000000000000001",
        "subscription_id": "sub_01jexample000000000000001",
        "currency_code": "USD",
        "custom_data": custom,
        "billed_at": _iso(t0 + 2 * HOUR),
        "details": {
            "totals": {
                "subtotal": "2900",
                "tax": "290",
                "total": "3190",
                "grand_total": "3190",
                "currency_code": "USD",
            },
            "line_items": [
                {
                    "price_id": "pri_01jexamplemonthly",
                    "quantity": 1,
                    "unit_totals": {"subtotal": "2900"},
                    "product": {"id": "pro_01jexample", "name": "Pro (monthly)"},
                }
            ],
        },
    }
    first_party_events = {
        "events": [
            {
                "event_id": "offline-20260102-0001",
                "name": "purchase",
                "occurred_at": _iso(t0 + HOUR),
                "value": "120000",
                "currency": "KRW",
                "transaction_id": "pos-0001",
                "person": {
                    "email": "minsu.kim@example.com",
                    "phone": "+821012345678",
                    "external_id": "u_1001",
                },
                "context": {"ga_client_id": BROWSER_METADATA["ga_client_id"]},
                "properties": {"store": "gangnam"},
            },
            {
                "event_id": "renewal-20260102-0002",
                "name": "subscription_renewal",
                "occurred_at": _iso(t0 + 2 * HOUR),
                "value": "9.99",
                "currency": "USD",
                "transaction_id": "inv-0002",
                "subscription_id": "plan-basic-u_1002",
            },
        ]
    }
    return {
        "portone": {
            "payment-order-20260102-0001": portone_payment,
            "transaction_paid": {
                "type": "Transaction.Paid",
                "timestamp": _iso(t0 + 60),
                "data": {
                    "paymentId": portone_payment["id"],
                    "storeId": portone_payment["storeId"],
                    "transactionId": portone_payment["transactionId"],
                },
            },
            "transaction_partial_cancelled": {
                "type": "Transaction.PartialCancelled",
                "timestamp": _iso(t0 + HOUR + 5),
                "data": {
                    "paymentId": portone_payment["id"],
                    "storeId": portone_payment["storeId"],
                    "transactionId": portone_payment["transactionId"],
                    "cancellationId": "cancel-0001",
                },
            },
        },
        "toss": {
            "payment-tgen_20260102000000ABCD1": toss_payment,
            "payment_status_changed_done": {
                "eventType": "PAYMENT_STATUS_CHANGED",
                "createdAt": time.strftime("%Y-%m-%dT%H:%M:%S.000000", time.gmtime(t0 + 60)),
                "data": toss_payment,
            },
        },
        "paddle": {
            "transaction_completed_recurring_usd": {
                "event_id": "evt_01jexample0000000000000001",
                "event_type": "transaction.completed",
                "occurred_at": _iso(t0 + 2 * HOUR + 5),
                "notification_id": "ntf_01jexample0000000000000001",
                "data": paddle_transaction,
            },
            "adjustment_refund_approved": {
                "event_id": "evt_01jexample0000000000000002",
                "event_type": "adjustment.updated",
                "occurred_at": _iso(t0 + 2 * HOUR + 600),
                "notification_id": "ntf_01jexample0000000000000002",
                "data": {
                    "id": "adj_01jexample000000000000001",
                    "action": "refund",
                    "status": "approved",
                    "transaction_id": paddle_transaction["id"],
                    "subscription_id": paddle_transaction["subscription_id"],
                    "customer_id": paddle_transaction["customer_id"],
                    "currency_code": "USD",
                    "totals": {
                        "subtotal": "1000",
                        "tax": "0",
                        "total": "1000",
                        "fee": "0",
                        "earnings": "0",
                        "currency_code": "USD",
                    },
                    "created_at": _iso(t0 + 2 * HOUR + 500),
                    "updated_at": _iso(t0 + 2 * HOUR + 600),
                },
            },
        },
        "first_party": {"offline_and_renewal": first_party_events},
    }


def provider_request(
    path: str, provider: str | None, body: str, headers: dict[str, str], now: float, source_ip: str
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) POST to `path` with the given provider headers."""
    event = apigw_request(body, "", now)
    event["headers"] = {k: v for k, v in event["headers"].items() if k != "stripe-signature"} | headers
    event["headers"]["x-forwarded-for"] = source_ip
    event["headers"]["user-agent"] = f"{provider or 'merchant-backend'}-webhook"
    event["requestContext"]["http"].update(
        path=path, sourceIp=source_ip, userAgent=event["headers"]["user-agent"]
    )
    event["requestContext"]["requestId"] = str(uuid.uuid5(uuid.NAMESPACE_URL, path + body))
    event["rawPath"] = path
    if provider is None:
        event["routeKey"] = event["requestContext"]["routeKey"] = "POST /events"
        event.pop("pathParameters", None)
    else:
        event["pathParameters"] = {"provider": provider}
    return event


def write_provider_samples(secrets: dict[str, Any], now: float) -> None:
    t0 = int(now) - 3 * HOUR
    for provider, samples in provider_samples(t0).items():
        for name, sample in samples.items():
            body = json.dumps(sample, indent=2, ensure_ascii=False)
            _write(EVENTS / provider / f"{name}.json", body)
            if name.startswith("payment-"):
                continue  # what the fake provider API should hold, not a webhook
            raw = body.encode("utf-8")
            msg_id = f"msg_{hashlib.sha256(raw).hexdigest()[:24]}"
            if provider == "portone":
                headers = standard_webhooks.sign_headers(
                    secrets["portone"]["webhook_secrets"], msg_id, int(now), raw
                )
                request = provider_request(
                    "/webhooks/portone", "portone", body, headers, now, PORTONE_SOURCE_IP
                )
            elif provider == "toss":
                headers = {
                    "tosspayments-webhook-transmission-id": f"wh_{msg_id[4:]}",
                    "tosspayments-webhook-transmission-time": time.strftime(
                        "%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now)
                    ),
                    "tosspayments-webhook-transmission-retried-count": "0",
                }
                request = provider_request("/webhooks/toss", "toss", body, headers, now, TOSS_SOURCE_IP)
            elif provider == "paddle":
                header = paddle.signature_header(raw, secrets["paddle"]["webhook_secrets"][0], int(now))
                request = provider_request(
                    "/webhooks/paddle", "paddle", body, {"paddle-signature": header}, now, PADDLE_SOURCE_IP
                )
            else:
                headers = standard_webhooks.sign_headers(
                    secrets["events"]["signing_secrets"], msg_id, int(now), raw
                )
                request = provider_request("/events", None, body, headers, now, "203.0.113.50")
            _write(EVENTS / "apigw" / f"{provider}-{name}.json", request)


def sqs_batch(destination: str, bodies: list[tuple[str, str, int]]) -> dict[str, Any]:
    queue = f"conversion-relay-{destination.capitalize()}Queue"
    records = []
    for event_id, body, sent_at in bodies:
        message_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{destination}#{event_id}"))
        sent_ms = str(sent_at * 1000)
        records.append(
            {
                "messageId": message_id,
                "receiptHandle": f"AQEB{hashlib.sha256(message_id.encode()).hexdigest()}",
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": sent_ms,
                    "SenderId": "AROAEXAMPLEINGEST:conversion-relay-IngestFunction",
                    "ApproximateFirstReceiveTimestamp": sent_ms,
                },
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(body.encode("utf-8")).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}",
                "awsRegion": REGION,
            }
        )
    return {"Records": records}


def local_secrets() -> dict[str, Any]:
    if not LOCAL_SECRETS.exists():
        _write(LOCAL_SECRETS, DEFAULT_LOCAL_SECRETS)
    return json.loads(LOCAL_SECRETS.read_text("utf-8"))


def _write(path: Path, content: dict[str, Any] | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = content if isinstance(content, str) else json.dumps(content, indent=2, ensure_ascii=False)
    path.write_text(text + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--at", type=int, help="unix seconds to treat as now (reproducible output); default: the clock"
    )
    args = parser.parse_args(argv)
    secret = stripe.webhook_secrets(local_secrets()["stripe"])[0]
    now = float(args.at) if args.at is not None else time.time()
    events = stripe_events(int(now) - 3 * HOUR)
    per_destination: dict[str, list[tuple[str, str, int]]] = {name: [] for name in DESTINATIONS}
    for name, event in events.items():
        body = body_text(event)
        _write(EVENTS / "stripe" / f"{name}.json", body)
        _write(
            EVENTS / "apigw" / f"stripe-{name}.json",
            apigw_request(body, signature_header(body, secret, int(now)), now),
        )
        for canonical in stripe.to_events(stripe.parse(body.encode("utf-8"))):
            for destination in DESTINATIONS:
                if destination_event_name(destination, canonical.name) is not None:
                    per_destination[destination].append(
                        (canonical.event_id, canonical.to_json(), event["created"])
                    )
    first = body_text(events["checkout_session_completed_krw"])
    wrong = signature_header(first, "whsec_not_the_configured_secret", int(now))
    _write(EVENTS / "apigw" / "stripe-bad-signature.json", apigw_request(first, wrong, now))
    for destination, bodies in per_destination.items():
        _write(EVENTS / "sqs" / f"{destination}-batch.json", sqs_batch(destination, bodies))
    secrets = local_secrets()
    if all(name in secrets for name in ("portone", "paddle", "events")):
        write_provider_samples(secrets, now)
    print(f"wrote events/stripe, events/apigw (signed at t={int(now)}, valid for 300 s), events/sqs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
