from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from conversion_relay.model import (
    Consent,
    Context,
    ConversionEvent,
    InvalidEvent,
    Item,
    Person,
    Source,
)


def full_event() -> ConversionEvent:
    return ConversionEvent(
        event_id="stripe:purchase:cs_1",
        name="purchase",
        occurred_at=datetime(2026, 11, 27, 12, 30, tzinfo=UTC),
        source=Source("stripe", "evt_1", "checkout.session.completed", "cs_1", livemode=False),
        value=Decimal("12.345"),
        currency="KWD",
        transaction_id="pi_1",
        items=(Item(id="sku-1", name="Mug", price=Decimal("6.1725"), quantity=2),),
        tax=Decimal("0.5"),
        person=Person(email="Jane@Example.com", first_name="Jane"),
        context=Context(ga_client_id="123.456", fbp="fb.1.1.2"),
        consent=Consent(
            ad_user_data=True, data_processing_options=("LDU",), data_processing_options_country=1
        ),
        properties={"plan": "gold"},
    )


def test_round_trip_keeps_every_field_and_exact_decimals():
    event = full_event()
    assert ConversionEvent.from_json(event.to_json()) == event


def test_serialised_form_is_plain_json_with_decimal_strings_and_utc_z():
    data = json.loads(full_event().to_json())
    assert data["value"] == "12.345"
    assert data["occurred_at"] == "2026-11-27T12:30:00Z"
    assert data["schema_version"] == 1
    assert "phone" not in data["person"]  # None fields are omitted


def test_currency_is_upper_cased_on_read():
    data = full_event().to_dict() | {"currency": "krw"}
    assert ConversionEvent.from_dict(data).currency == "KRW"


def test_livemode_comes_from_the_source():
    assert full_event().livemode is False


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"event_id": None}, "event_id"),
        ({"name": 5}, "name"),
        ({"occurred_at": "yesterday"}, "occurred_at"),
        ({"occurred_at": "2026-11-27T12:30:00"}, "occurred_at"),
        ({"value": "12,5"}, "value"),
        ({"value": True}, "value"),
        ({"value": "NaN"}, "value"),
        ({"currency": "WON!"}, "currency"),
        ({"items": {"id": "x"}}, "items"),
        ({"items": [{"id": "x", "quantity": "2"}]}, "items[0].quantity"),
        ({"person": {"email": 5}}, "person.email"),
        ({"person": {"mail": "a@b.c"}}, "person.mail"),
        ({"consent": {"ad_user_data": "yes"}}, "consent.ad_user_data"),
        ({"source": None}, "source"),
        ({"source": {"provider": "stripe"}}, "source.event_id"),
        ({"schema_version": 2}, "schema_version"),
        ({"properties": {"a": {"b": 1}}}, "properties"),
    ],
)
def test_invalid_bodies_name_the_field(change, path):
    data = full_event().to_dict() | change
    with pytest.raises(InvalidEvent) as raised:
        ConversionEvent.from_dict(data)
    assert raised.value.path == path


def test_non_json_body_is_an_invalid_event():
    with pytest.raises(InvalidEvent) as raised:
        ConversionEvent.from_json("{not json")
    assert raised.value.path == "$"
