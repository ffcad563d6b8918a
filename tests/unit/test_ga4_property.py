"""Property: ANY canonical event either becomes a body FakeGa4's independent validator accepts, or a
reject/skip with a reason. Never an exception. And any batch is split into requests Google accepts.

No network: the validator is called directly, and sending goes through a session stub that judges
each request body with it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conversion_relay import config
from conversion_relay.destinations.base import Outcome, Prepared, Status
from conversion_relay.destinations.ga4 import Ga4Destination, Ga4Options, encode_body
from conversion_relay.model import (
    PURCHASE,
    REFUND,
    SUBSCRIPTION_RENEWAL,
    SUBSCRIPTION_START,
    Consent,
    Context,
    ConversionEvent,
    Item,
    Person,
    Source,
)
from relay_local.fakes import ga4 as fake_ga4

NOW = datetime(2026, 3, 2, 13, 0, 0, tzinfo=UTC)
SECRET = {
    "streams": [
        {"name": "a", "measurement_id": "G-A0000001", "api_secret": "secret-a"},
        {"name": "b", "measurement_id": "G-B0000001", "api_secret": "secret-b"},
    ],
    "default_stream": "a",
    "routing": [{"field": "properties.site", "equals": "b", "stream": "b"}],
}
# Sized to run in a few seconds; GA4_PROPERTY_EXAMPLES=2000 for a deeper local run.
EXAMPLES = int(os.environ.get("GA4_PROPERTY_EXAMPLES", "120"))
PROPERTY_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
BATCH_SETTINGS = settings(PROPERTY_SETTINGS, max_examples=max(EXAMPLES // 4, 10))


@pytest.fixture(autouse=True, scope="module")
def _shipped_mapping() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MAPPING_OVERRIDES", raising=False)
        config.mapping.cache_clear()
        yield
    config.mapping.cache_clear()


# -- strategies ----------------------------------------------------------------------------------------
def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


# Built from plain alphabets rather than regexes or st.emails(): generation dominates the run time.
LETTERS = "abcxyzABZ"
short_text = st.text(max_size=12)  # any Unicode, lone surrogates included
long_text = st.integers(min_value=90, max_value=520).map(lambda n: "v" * n)
any_text = st.one_of(short_text, long_text, st.text(alphabet="a_1", max_size=50))
identifier = st.tuples(st.sampled_from(LETTERS), st.text(alphabet=LETTERS + "019_", max_size=45)).map("".join)
names = st.one_of(
    st.sampled_from(
        [PURCHASE, REFUND, SUBSCRIPTION_START, SUBSCRIPTION_RENEWAL, "session_start", "lead_won"]
    ),
    identifier,
    short_text,
)
amounts = st.one_of(
    st.decimals(min_value=-(10**9), max_value=10**9, places=2),
    st.sampled_from([Decimal("1E+400"), Decimal("-0"), Decimal("0.000000001")]),
)
digits = st.integers(min_value=0, max_value=10**12).map(str)
client_ids = st.one_of(
    st.tuples(digits, digits).map(".".join), st.text(alphabet="0123456789.٣ ", max_size=12)
)
param_names = st.one_of(identifier, st.sampled_from(["value", "ga_x", "firebase_conversion"]), short_text)
emails = st.tuples(
    st.text(alphabet="aB.+ 1", min_size=1, max_size=8), st.sampled_from(["gmail.com", "x.org", ""])
).map("@".join)
times = st.one_of(
    st.integers(min_value=-80 * 3600, max_value=120).map(lambda seconds: NOW + timedelta(seconds=seconds)),
    st.datetimes(timezones=st.just(UTC)),
)
items = st.builds(
    Item,
    id=optional(any_text),
    name=optional(any_text),
    price=optional(amounts),
    quantity=st.integers(min_value=-(10**6), max_value=10**20),
    category=optional(short_text),
    brand=optional(short_text),
    variant=optional(short_text),
)
people = st.builds(
    Person,
    email=optional(st.one_of(emails, short_text)),
    phone=optional(st.one_of(st.text(alphabet="+0123456789 ()-", max_size=18), short_text)),
    first_name=optional(short_text),
    last_name=optional(short_text),
    city=optional(short_text),
    state=optional(st.one_of(st.sampled_from(["CA", "11", "Seoul"]), short_text)),
    zip=optional(short_text),
    country=optional(st.one_of(st.sampled_from(["US", "kr", "IT", "JP"]), short_text)),
    external_id=optional(short_text),
    street=optional(short_text),
)
contexts = st.builds(
    Context,
    ga_client_id=optional(client_ids),
    ga_session_id=optional(st.one_of(st.integers(min_value=0, max_value=10**25).map(str), short_text)),
    user_id=optional(st.one_of(short_text, st.sampled_from(["u" * 256, "u" * 257, "a@b"]))),
    customer_user_id=optional(short_text),
    client_ip=optional(
        st.one_of(st.sampled_from(["203.0.113.9", "2001:db8::1", "::ffff:1.2.3.4"]), short_text)
    ),
    client_user_agent=optional(short_text),
    event_source_url=optional(st.one_of(st.sampled_from(["https://b.example/x", "http://[::1"]), short_text)),
    device_category=optional(st.one_of(st.sampled_from(["mobile", "Smart TV", "phone"]), short_text)),
    device_language=optional(short_text),
    screen_resolution=optional(st.one_of(st.just("1920x1080"), short_text)),
)
ascii_text = st.text(alphabet="abc XYZ-019.", max_size=20)
ascii_names = st.tuples(st.sampled_from(LETTERS), st.text(alphabet=LETTERS + "_", max_size=8)).map("".join)


money = st.decimals(min_value=-(10**9), max_value=10**9, places=2)
plausible_items = st.builds(
    Item,
    id=optional(ascii_text),
    name=optional(ascii_text),
    price=optional(money),
    quantity=st.integers(min_value=0, max_value=1000),
    category=optional(ascii_text),
)


def canonical_events(*, wild: bool) -> st.SearchStrategy[ConversionEvent]:
    """wild: anything the types allow. Otherwise: what providers plausibly send, with rough edges,
    so that most examples get as far as a payload the validator must accept."""

    def pick(
        wild_strategy: st.SearchStrategy[Any], plausible: st.SearchStrategy[Any]
    ) -> st.SearchStrategy[Any]:
        return wild_strategy if wild else plausible

    return st.builds(
        ConversionEvent,
        event_id=st.just("stripe:purchase:cs_1"),
        name=pick(
            names, st.sampled_from([PURCHASE, REFUND, SUBSCRIPTION_START, SUBSCRIPTION_RENEWAL, "lead_won"])
        ),
        occurred_at=pick(
            times, st.integers(-71 * 3600, 59).map(lambda seconds: NOW + timedelta(seconds=seconds))
        ),
        source=st.builds(
            Source,
            provider=st.sampled_from(["stripe", "portone"]),
            event_id=st.just("evt"),
            event_type=st.just("type"),
            object_id=st.just("obj"),
            livemode=st.booleans(),
        ),
        value=optional(pick(amounts, money)),
        currency=pick(optional(st.text(max_size=4)), st.sampled_from(["USD", "KRW", "EUR"])),
        transaction_id=pick(optional(any_text), ascii_text.map(lambda text: "pi_" + text)),
        items=pick(st.lists(items, max_size=6), st.lists(plausible_items, max_size=4)).map(tuple),
        tax=optional(pick(amounts, money)),
        shipping=optional(pick(amounts, money)),
        coupon=optional(pick(any_text, ascii_text)),
        subscription_id=optional(short_text),
        person=people,
        context=pick(
            contexts,
            st.builds(
                Context,
                ga_client_id=pick(optional(client_ids), st.tuples(digits, digits).map(".".join)),
                ga_session_id=optional(st.one_of(digits, short_text)),
                user_id=optional(ascii_text.map(lambda text: "u" + text)),
                client_ip=optional(st.sampled_from(["203.0.113.9", "2001:db8::1", "bad"])),
                client_user_agent=optional(ascii_text),
                event_source_url=optional(st.sampled_from(["https://b.example/x", "https://a.example"])),
                device_category=optional(st.sampled_from(["mobile", "Smart TV", "phone"])),
                device_language=optional(st.sampled_from(["ko", "en-US", "x"])),
                screen_resolution=optional(st.sampled_from(["1920x1080", "0x0"])),
            ),
        ),
        consent=st.builds(
            Consent, ad_user_data=optional(st.booleans()), ad_personalization=optional(st.booleans())
        ),
        properties=pick(
            st.dictionaries(param_names, st.one_of(short_text, st.just("b"), long_text), max_size=28),
            st.dictionaries(
                st.one_of(ascii_names.map(lambda name: "p_" + name), st.just("site")),
                st.one_of(ascii_text, st.just("b")),
                max_size=8,
            ),
        ),
        user_properties=pick(
            st.dictionaries(
                param_names, st.one_of(short_text, st.integers(30, 40).map(lambda n: "p" * n)), max_size=27
            ),
            st.dictionaries(ascii_names, ascii_text, max_size=5),
        ),
    )


events = st.one_of(canonical_events(wild=False), canonical_events(wild=True))
options = st.builds(
    Ga4Options,
    client_id_policy=st.sampled_from(["reject", "derive"]),
    debug_mode=st.sampled_from(["none", "test_events"]),
    max_param_value_length=st.sampled_from([100, 500]),
    user_data=st.booleans(),
)


class _JudgingSession(requests.Session):
    """Answers like GA4 and records each request's body plus what the validation server would say."""

    def __init__(self, max_value_length: int) -> None:
        super().__init__()
        self.max_value_length = max_value_length
        self.bodies: list[dict[str, Any]] = []
        self.messages: list[dict[str, str]] = []

    def post(self, url: str, *args: Any, data: bytes = b"", **kwargs: Any) -> requests.Response:  # type: ignore[override]
        judged = fake_ga4._Messages()
        fake_ga4.validate(data, NOW, judged, max_value_length=self.max_value_length)
        self.bodies.append(json.loads(data))
        self.messages.extend(judged.items)
        response = requests.Response()
        if url.endswith("/debug/mp/collect"):
            response.status_code = 200
            response._content = json.dumps({"validationMessages": judged.items}).encode()
        else:
            response.status_code = 204
        return response


def _destination(chosen: Ga4Options, session: requests.Session) -> Ga4Destination:
    return Ga4Destination(SECRET, session, "https://ga4.invalid", options=chosen, clock=lambda: NOW)


# -- properties ------------------------------------------------------------------------------------------
@PROPERTY_SETTINGS
@given(event=events, chosen=options)
def test_any_event_is_either_accepted_by_the_validator_or_rejected_with_a_reason(
    event: ConversionEvent, chosen: Ga4Options
):
    result = _destination(chosen, requests.Session()).prepare(event)
    if isinstance(result, Outcome):
        assert result.status in (Status.REJECT, Status.SKIP)
        assert isinstance(result.reason, str) and result.reason
        return
    body = encode_body(result.payload)  # must encode: no NaN, no lone surrogate
    judged = fake_ga4._Messages()
    fake_ga4.validate(body, NOW, judged, max_value_length=chosen.max_param_value_length)
    assert judged.items == [], judged.items


@BATCH_SETTINGS
@given(batch=st.lists(events, min_size=1, max_size=30), chosen=options)
def test_any_batch_goes_out_in_requests_google_accepts(batch: list[ConversionEvent], chosen: Ga4Options):
    session = _JudgingSession(chosen.max_param_value_length)
    ga4 = _destination(chosen, session)
    prepared = [p for p in map(ga4.prepare, batch) if isinstance(p, Prepared)]
    outcomes = ga4.send(prepared)
    assert len(outcomes) == len(prepared)
    assert all(o.status in (Status.DELIVERED, Status.SKIP) for o in outcomes), outcomes
    assert session.messages == []
    assert sum(len(body["events"]) for body in session.bodies) == len(prepared)
    for body in session.bodies:
        assert len(body["events"]) <= 25
        assert len(encode_body(body)) < 130_000
