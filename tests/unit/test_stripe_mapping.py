import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from conversion_relay import config
from conversion_relay.model import ConversionEvent, Item
from conversion_relay.providers.stripe import PROVIDER, PayloadError, delivery_id, parse, to_events

CREATED = 1792627295
SESSION_CREATED = 1792627200

FULL_METADATA = {
    "ga_client_id": "1786543210.1792626900",
    "ga_session_id": "1792626900",
    "user_id": "u_1001",
    "fbp": "fb.1.1792626890123.1098765432",
    "fbc": "fb.1.1792626880000.IwAR2x",
    "af_user_id": "af-user-1",
    "customer_user_id": "cu-1",
    "client_ip": "203.0.113.10",
    "client_user_agent": "Mozilla/5.0",
    "event_source_url": "https://shop.example.com/done",
    "referrer_url": "https://shop.example.com/cart",
    "action_source": "website",
    "consent_ad_user_data": "granted",
    "consent_ad_personalization": "denied",
}


@pytest.fixture(autouse=True)
def fresh_mapping(monkeypatch):
    monkeypatch.delenv("MAPPING_OVERRIDES", raising=False)
    config.mapping.cache_clear()
    yield
    config.mapping.cache_clear()


def event(event_type: str, obj: dict[str, Any], **data: Any) -> dict[str, Any]:
    return {
        "id": "evt_1",
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": CREATED,
        "livemode": False,
        "type": event_type,
        "data": {"object": obj, **data},
    }


def session(**overrides: Any) -> dict[str, Any]:
    base = {
        "id": "cs_test_1",
        "object": "checkout.session",
        "amount_total": 1999,
        "amount_subtotal": 1999,
        "currency": "usd",
        "created": SESSION_CREATED,
        "customer": "cus_1",
        "client_reference_id": "merchant-user-1",
        "customer_details": {
            "email": "jane@example.com",
            "phone": "+15555550100",
            "name": "Jane Q Doe",
            "address": {"city": "Brooklyn", "state": "NY", "postal_code": "11201", "country": "US"},
        },
        "metadata": dict(FULL_METADATA),
        "mode": "payment",
        "payment_intent": "pi_1",
        "payment_status": "paid",
        "total_details": {"amount_discount": 0, "amount_shipping": 500, "amount_tax": 150},
    }
    base.update(overrides)
    return base


def invoice(**overrides: Any) -> dict[str, Any]:
    base = {
        "id": "in_1",
        "object": "invoice",
        "amount_paid": 9900,
        "billing_reason": "subscription_cycle",
        "currency": "krw",
        "customer": "cus_1",
        "customer_email": "minsu@example.com",
        "customer_name": "김민수",
        "customer_phone": "+821012345678",
        "customer_address": {"city": "Seoul", "state": None, "postal_code": "06236", "country": "KR"},
        "metadata": {"fbp": "fb.invoice", "user_id": "invoice-user"},
        "parent": {
            "type": "subscription_details",
            "subscription_details": {"subscription": "sub_1", "metadata": {"user_id": "sub-user"}},
        },
        "status_transitions": {"paid_at": 1792630000},
        "lines": {
            "data": [
                {
                    "id": "il_1",
                    "amount": 9900,
                    "description": "1 x Premium",
                    "quantity": 1,
                    "pricing": {"price_details": {"price": "price_new", "product": "prod_1"}},
                },
                {
                    "id": "il_2",
                    "amount": 3000,
                    "description": "Seats",
                    "quantity": 3,
                    "price": {"id": "price_old"},
                },
            ]
        },
    }
    base.update(overrides)
    return base


def charge(**overrides: Any) -> dict[str, Any]:
    base = {
        "id": "ch_1",
        "object": "charge",
        "amount": 5000,
        "amount_refunded": 1000,
        "currency": "usd",
        "customer": "cus_1",
        "payment_intent": "pi_1",
        "billing_details": {"email": "jane@example.com", "name": "Jane Doe", "phone": None, "address": None},
        "metadata": {"ga_client_id": "charge-client"},
    }
    base.update(overrides)
    return base


def only(events: list[ConversionEvent]) -> ConversionEvent:
    assert len(events) == 1
    return events[0]


# --- parse / delivery_id --------------------------------------------------------------------------------


def test_parse_and_delivery_id():
    payload = parse(json.dumps(event("checkout.session.completed", session())).encode())
    assert delivery_id(payload) == "evt_1"
    assert PROVIDER.delivery_id(PROVIDER.parse(json.dumps(payload).encode())) == "evt_1"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "body is not JSON"),
        (b"\xff\xfe", "body is not JSON"),
        (b"[1, 2]", "body is not a JSON object"),
        (b'{"id": "evt_1", "object": "v2.core.event", "type": "x"}', "thin event notification"),
        (b'{"id": "ch_1", "object": "charge", "type": "x", "data": {"object": {}}}', "object is not 'event'"),
        (b'{"type": "x", "data": {"object": {}}}', "id is required"),
        (b'{"id": "evt_1", "data": {"object": {}}}', "type is required"),
        (b'{"id": "evt_1", "type": "x"}', "data.object is required"),
        (b'{"id": "evt_1", "type": "x", "data": {"object": []}}', "data.object is required"),
    ],
)
def test_parse_rejects(body, reason):
    with pytest.raises(PayloadError) as caught:
        parse(body)
    assert caught.value.reason.startswith(reason)


# --- checkout -------------------------------------------------------------------------------------------


def test_checkout_completed_paid_is_a_purchase():
    result = only(to_events(event("checkout.session.completed", session())))
    assert result.name == "purchase"
    assert result.event_id == "stripe:purchase:cs_test_1"
    assert result.value == Decimal("19.99")
    assert result.currency == "USD"
    assert result.transaction_id == "pi_1"
    assert result.tax == Decimal("1.50")
    assert result.shipping == Decimal("5.00")
    assert result.occurred_at == datetime.fromtimestamp(CREATED, UTC)  # the event, not the session's creation
    assert result.source.provider == "stripe"
    assert result.source.event_id == "evt_1"
    assert result.source.event_type == "checkout.session.completed"
    assert result.source.object_id == "cs_test_1"
    assert result.source.livemode is False
    person = result.person
    assert (person.email, person.phone, person.first_name, person.last_name) == (
        "jane@example.com",
        "+15555550100",
        "Jane",
        "Q Doe",
    )
    assert (person.city, person.state, person.zip, person.country) == ("Brooklyn", "NY", "11201", "US")
    assert person.external_id == "cus_1"
    assert result.items == ()  # line_items only arrive when expanded


def test_checkout_context_and_consent_from_metadata():
    result = only(to_events(event("checkout.session.completed", session())))
    expected = {key: value for key, value in FULL_METADATA.items() if not key.startswith("consent_")}
    assert {name: getattr(result.context, name) for name in expected} == expected
    assert result.consent.ad_user_data is True
    assert result.consent.ad_personalization is False


def test_async_payment_succeeded_has_the_same_event_id_as_completed():
    completed = only(to_events(event("checkout.session.completed", session())))
    later = only(to_events(event("checkout.session.async_payment_succeeded", session())))
    assert later.name == "purchase"
    assert later.event_id == completed.event_id == "stripe:purchase:cs_test_1"
    assert later.source.event_type == "checkout.session.async_payment_succeeded"


@pytest.mark.parametrize("status", ["unpaid", "no_payment_required", None])
def test_checkout_completed_not_paid_is_ignored(status):
    assert to_events(event("checkout.session.completed", session(payment_status=status))) == []


def test_subscription_mode_checkout_is_left_to_invoice_paid():
    obj = session(mode="subscription", subscription="sub_1", payment_intent=None)
    assert to_events(event("checkout.session.completed", obj)) == []


@pytest.mark.parametrize(
    ("amount", "currency", "expected_value", "expected_currency"),
    [
        (59000, "krw", "59000", "KRW"),
        (1200, "jpy", "1200", "JPY"),
        (1999, "usd", "19.99", "USD"),
        (5120, "kwd", "5.120", "KWD"),
        (50000, "isk", "500.00", "ISK"),  # Stripe: ISK is two-decimal
    ],
)
def test_checkout_currencies(amount, currency, expected_value, expected_currency):
    result = only(
        to_events(event("checkout.session.completed", session(amount_total=amount, currency=currency)))
    )
    assert result.value == Decimal(expected_value)
    assert str(result.value) == expected_value
    assert result.currency == expected_currency


def test_checkout_without_payment_intent_uses_the_session_id():
    result = only(to_events(event("checkout.session.completed", session(payment_intent=None))))
    assert result.transaction_id == "cs_test_1"


def test_expanded_payment_intent_and_customer():
    obj = session(payment_intent={"id": "pi_x", "object": "payment_intent"}, customer={"id": "cus_x"})
    result = only(to_events(event("checkout.session.completed", obj)))
    assert result.transaction_id == "pi_x"
    assert result.person.external_id == "cus_x"


def test_guest_checkout_falls_back_to_client_reference_id_and_customer_email():
    obj = session(customer=None, customer_details={"email": None}, customer_email="guest@example.com")
    result = only(to_events(event("checkout.session.completed", obj)))
    assert result.person.external_id == "merchant-user-1"
    assert result.person.email == "guest@example.com"
    assert result.person.first_name is None


def test_single_word_name_goes_to_first_name():
    obj = session(customer_details={"name": "김민수"})
    person = only(to_events(event("checkout.session.completed", obj))).person
    assert (person.first_name, person.last_name) == ("김민수", None)


def test_expanded_line_items():
    line_items = {
        "data": [
            {
                "id": "li_1",
                "description": "T-shirt",
                "quantity": 2,
                "amount_subtotal": 4000,
                "amount_total": 4000,
                "price": {"id": "price_shirt", "unit_amount": 2000},
            },
            {
                "id": "li_2",
                "description": "Sticker",
                "quantity": 3,
                "amount_subtotal": 1000,
                "price": {"id": "p"},
            },
        ]
    }
    result = only(to_events(event("checkout.session.completed", session(line_items=line_items))))
    assert result.items == (
        Item(id="price_shirt", name="T-shirt", price=Decimal("20.00"), quantity=2),
        Item(id="p", name="Sticker", price=None, quantity=3),  # 10.00 / 3 has no exact unit price
    )


def test_missing_metadata_leaves_context_and_consent_empty():
    result = only(to_events(event("checkout.session.completed", session(metadata={}))))
    assert all(value is None for value in vars_of(result.context).values())
    assert result.consent.ad_user_data is None
    assert result.consent.ad_personalization is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("granted", True),
        ("GRANTED", True),
        ("true", True),
        (" True ", True),
        ("denied", False),
        ("False", False),
        ("yes", None),
        ("1", None),
        ("", None),
    ],
)
def test_consent_values(raw, expected):
    obj = session(metadata={"consent_ad_user_data": raw, "consent_ad_personalization": raw})
    consent = only(to_events(event("checkout.session.completed", obj))).consent
    assert consent.ad_user_data is expected
    assert consent.ad_personalization is expected


def test_custom_metadata_key_names(monkeypatch):
    overrides = {"metadata_keys": {"ga_client_id": "gacid", "fbp": "_fbp", "ad_user_data": "ads_ok"}}
    monkeypatch.setenv("MAPPING_OVERRIDES", json.dumps(overrides))
    config.mapping.cache_clear()
    obj = session(
        metadata={"gacid": "111.222", "_fbp": "fb.1.2.3", "ga_client_id": "ignored", "ads_ok": "denied"}
    )
    result = only(to_events(event("checkout.session.completed", obj)))
    assert result.context.ga_client_id == "111.222"
    assert result.context.fbp == "fb.1.2.3"
    assert result.consent.ad_user_data is False
    assert result.context.user_id is None


def test_invalid_currency_is_a_payload_error():
    with pytest.raises(PayloadError, match="currency"):
        to_events(event("checkout.session.completed", session(currency="dollars")))


def test_non_integer_amount_is_a_payload_error():
    with pytest.raises(PayloadError, match="amount_total"):
        to_events(event("checkout.session.completed", session(amount_total="19.99")))


def test_missing_object_id_is_a_payload_error():
    obj = session()
    del obj["id"]
    with pytest.raises(PayloadError, match=r"data\.object\.id"):
        to_events(event("checkout.session.completed", obj))


# --- invoice --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "name"),
    [("subscription_create", "subscription_start"), ("subscription_cycle", "subscription_renewal")],
)
def test_invoice_paid(reason, name):
    result = only(to_events(event("invoice.paid", invoice(billing_reason=reason))))
    assert result.name == name
    assert result.event_id == f"stripe:{name}:in_1"
    assert result.value == Decimal("9900")
    assert result.currency == "KRW"
    assert result.subscription_id == "sub_1"
    assert result.transaction_id == "in_1"
    assert result.occurred_at == datetime.fromtimestamp(1792630000, UTC)
    assert result.source.object_id == "in_1"
    assert result.person.email == "minsu@example.com"
    assert result.person.first_name == "김민수"
    assert result.person.zip == "06236"
    assert result.person.state is None
    assert result.person.external_id == "cus_1"
    assert result.items == (
        Item(id="price_new", name="1 x Premium", price=Decimal("9900"), quantity=1),
        Item(id="price_old", name="Seats", price=Decimal("1000"), quantity=3),
    )


@pytest.mark.parametrize("reason", ["subscription_update", "manual", "subscription_threshold", None])
def test_other_billing_reasons_are_ignored(reason):
    assert to_events(event("invoice.paid", invoice(billing_reason=reason))) == []


def test_invoice_subscription_metadata_wins_over_invoice_metadata():
    result = only(to_events(event("invoice.paid", invoice())))
    assert result.context.user_id == "sub-user"  # subscription metadata first
    assert result.context.fbp == "fb.invoice"  # invoice metadata fills the gaps


def test_invoice_before_basil_layout():
    obj = invoice(
        parent=None,
        subscription="sub_old",
        subscription_details={"metadata": {"ga_client_id": "old.layout"}},
        tax=900,
    )
    result = only(to_events(event("invoice.paid", obj)))
    assert result.subscription_id == "sub_old"
    assert result.context.ga_client_id == "old.layout"
    assert result.tax == Decimal("900")


def test_invoice_total_taxes_are_summed():
    obj = invoice(currency="usd", total_taxes=[{"amount": 120}, {"amount": 30}])
    assert only(to_events(event("invoice.paid", obj))).tax == Decimal("1.50")


def test_invoice_without_paid_at_uses_the_event_time():
    result = only(to_events(event("invoice.paid", invoice(status_transitions={}))))
    assert result.occurred_at == datetime.fromtimestamp(CREATED, UTC)


def test_invoice_payment_succeeded_is_not_mapped():
    # Stripe sends it alongside invoice.paid for the same invoice; mapping both would be redundant.
    assert to_events(event("invoice.payment_succeeded", invoice())) == []


# --- refunds --------------------------------------------------------------------------------------------


def refund(refund_id: str, amount: int, created: int) -> dict[str, Any]:
    return {"id": refund_id, "object": "refund", "amount": amount, "created": created, "status": "succeeded"}


def test_refund_with_refunds_list_uses_the_newest_refund():
    # Second partial refund: 10.00 earlier, 15.00 now; cumulative 25.00. Only 15.00 is this refund.
    refunds = {"data": [refund("re_1", 1000, 1792700000), refund("re_2", 1500, 1792800000)]}
    result = only(to_events(event("charge.refunded", charge(amount_refunded=2500, refunds=refunds))))
    assert result.name == "refund"
    assert result.value == Decimal("15.00")
    assert result.event_id == "stripe:refund:re_2"
    assert result.source.object_id == "re_2"
    assert result.occurred_at == datetime.fromtimestamp(1792800000, UTC)
    assert result.transaction_id == "pi_1"  # matches the purchase's transaction_id
    assert result.currency == "USD"
    assert (result.person.first_name, result.person.last_name) == ("Jane", "Doe")
    assert result.context.ga_client_id == "charge-client"


def test_refund_list_order_does_not_matter():
    refunds = {"data": [refund("re_2", 1500, 1792800000), refund("re_1", 1000, 1792700000)]}
    result = only(to_events(event("charge.refunded", charge(amount_refunded=2500, refunds=refunds))))
    assert result.event_id == "stripe:refund:re_2"
    assert result.value == Decimal("15.00")


def test_refund_metadata_comes_before_charge_metadata():
    newest = refund("re_1", 1000, 1792700000) | {"metadata": {"ga_client_id": "refund-client"}}
    result = only(to_events(event("charge.refunded", charge(refunds={"data": [newest]}))))
    assert result.context.ga_client_id == "refund-client"


def test_refund_from_previous_attributes():
    payload = event(
        "charge.refunded", charge(amount_refunded=2500), previous_attributes={"amount_refunded": 1000}
    )
    result = only(to_events(payload))
    assert result.value == Decimal("15.00")
    assert result.event_id == "stripe:refund:ch_1:2500"
    assert result.source.object_id == "ch_1"
    assert result.occurred_at == datetime.fromtimestamp(CREATED, UTC)


def test_refund_fallback_is_the_cumulative_amount():
    result = only(to_events(event("charge.refunded", charge(amount_refunded=1000))))
    assert result.value == Decimal("10.00")
    assert result.event_id == "stripe:refund:ch_1:1000"


def test_refund_of_a_zero_decimal_currency():
    result = only(to_events(event("charge.refunded", charge(currency="krw", amount_refunded=15000))))
    assert result.value == Decimal("15000")


def test_refund_without_payment_intent_uses_the_charge_id():
    result = only(to_events(event("charge.refunded", charge(payment_intent=None))))
    assert result.transaction_id == "ch_1"


def test_refund_with_nothing_new_is_ignored():
    payload = event(
        "charge.refunded", charge(amount_refunded=1000), previous_attributes={"amount_refunded": 1000}
    )
    assert to_events(payload) == []


def test_refund_without_amount_refunded_is_a_payload_error():
    obj = charge()
    del obj["amount_refunded"]
    with pytest.raises(PayloadError, match="amount_refunded"):
        to_events(event("charge.refunded", obj))


# --- everything else ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event_type",
    [
        "customer.created",
        "payment_intent.succeeded",
        "refund.created",
        "checkout.session.async_payment_failed",
    ],
)
def test_other_types_are_ignored(event_type):
    assert to_events(event(event_type, {"id": "x_1"})) == []


def test_events_survive_the_queue_round_trip():
    payloads = [
        event("checkout.session.completed", session()),
        event("invoice.paid", invoice()),
        event("charge.refunded", charge(refunds={"data": [refund("re_1", 1000, 1792700000)]})),
    ]
    for payload in payloads:
        result = only(to_events(copy.deepcopy(payload)))
        assert ConversionEvent.from_json(result.to_json()) == result


def test_livemode_defaults():
    payload = event("checkout.session.completed", session(livemode=True))
    del payload["livemode"]
    assert only(to_events(payload)).source.livemode is True


def vars_of(section: Any) -> dict[str, Any]:
    return {name: getattr(section, name) for name in section.__slots__}
