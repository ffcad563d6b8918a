"""Browser identifiers from a forwarded Cookie header (conversion_relay.cookies), and the Stripe path."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conversion_relay import config
from conversion_relay.cookies import (
    CookieIdentifiers,
    apply_cookies,
    identifiers_from_cookies,
    parse_cookie_header,
    unparseable_metric,
)
from conversion_relay.model import Context
from conversion_relay.providers.stripe import to_events

GA = "GA1.1.1863538960.1718975654"
GS1 = "GS1.1.1744094510.1.1.1744094538.32.0.0"
GS2 = "GS2.1.s1746825440$o3$g1$t1746825478$j22$l0$h0"
FBP = "fb.1.1718975655048.519782181988016639"
FBC = "fb.1.1718975600000.IwAR2i2gk7IDUbQ3vjz_1M-5MYhQPWPP7a-o-6JlXGGDQ-4M6fFjKjGkD8MaY"
AF = "ce18733b-0c78-451f-9579-c6300baa97db-p"  # as the AppsFlyer Web SDK writes it
# Copied in shape from a real browser: consent-manager and session cookies around ours.
REAL = (
    f"perf_dv6Tr4n=1; _gcl_au=1.1.453795563.1718975654; _ga={GA}; _fbp={FBP}; afUserId={AF}; "
    f"AF_SYNC=1718975655764; _gid=GA1.2.1052767571.1710974219; _ga_3369S417EL={GS1}; "
    "sopr_utm=%7B%22utm_source%22%3A+%22direct%22%7D; cookie_agreement_accepted=1"
)


def fullwidth(text: str) -> str:
    """The same text with fullwidth digits: digits to Python's \\d, not to any destination."""
    return "".join(chr(0xFF10 + int(c)) if c.isascii() and c.isdigit() else c for c in text)


# --- parse_cookie_header -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("", {}),
        ("a=1", {"a": "1"}),
        ("a=1; b=2", {"a": "1", "b": "2"}),
        ("a=1;b=2;;  ;c=3", {"a": "1", "b": "2", "c": "3"}),  # no space, empty pieces
        ("  a  =  1  ", {"a": "1"}),
        ('a="quoted value"', {"a": "quoted value"}),
        ('a=""', {"a": ""}),
        ('a="', {"a": '"'}),  # a lone quote is not a quoted value
        ('a="x', {"a": '"x'}),
        ("a=1; a=2", {"a": "1"}),  # browsers send the most specific cookie first
        ("a=b=c", {"a": "b=c"}),  # base64 padding and the like stay in the value
        ("justavalue; a=1", {"a": "1"}),  # Chrome's nameless cookie
        ("=orphan; a=1", {"a": "1"}),
        ("a=; b=2", {"a": "", "b": "2"}),
        ("한글=값; _ga=GA1.1.1.2", {"한글": "값", "_ga": "GA1.1.1.2"}),
        ("a=1, b=2", {"a": "1, b=2"}),  # a comma is not a separator in a Cookie header
        ("A=1; a=2", {"A": "1", "a": "2"}),  # names are case-sensitive
    ],
)
def test_parse_cookie_header(header, expected):
    assert parse_cookie_header(header) == expected


def test_parse_real_header_keeps_every_cookie():
    cookies = parse_cookie_header(REAL)
    assert len(cookies) == 10
    assert cookies["_ga_3369S417EL"] == GS1
    assert cookies["sopr_utm"] == "%7B%22utm_source%22%3A+%22direct%22%7D"  # not decoded


@pytest.mark.parametrize("header", [None, 42, b"_ga=GA1.1.1.2", ["_ga=GA1.1.1.2"]])
def test_parse_non_text_is_empty(header):
    assert parse_cookie_header(header) == {}  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_parse_never_raises_and_returns_strings(header):
    cookies = parse_cookie_header(header)
    assert all(isinstance(k, str) and k and isinstance(v, str) for k, v in cookies.items())


@settings(max_examples=300, deadline=None)
@given(
    st.text(),
    st.one_of(st.none(), st.text()),
    st.one_of(st.none(), st.text(max_size=12)),
    st.one_of(st.none(), st.integers()),
)
def test_identifiers_never_raise(header, landing_url, stream, now_ms):
    ids = identifiers_from_cookies(header, landing_url=landing_url, ga_stream_id=stream, now_ms=now_ms)
    assert isinstance(ids, CookieIdentifiers)


# --- GA4 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "client_id"),
    [
        (GA, "1863538960.1718975654"),
        ("GA1.2.508329863.1661903409", "508329863.1661903409"),
        ("GA1.3.1.2", "1.2"),
        ("GA1.2-2.508329863.1661903409", "508329863.1661903409"),  # cookie with a path
        ('"GA1.1.1234567890.1700000000"', "1234567890.1700000000"),
        ("GA1%2E1%2E1234567890%2E1700000000", "1234567890.1700000000"),  # percent-encoded on write
        ("GA1.1.1234567890", None),  # missing the timestamp
        ("GA1.1.1234567890.", None),
        ("GA1.1..1700000000", None),
        ("1234567890.1700000000", None),  # already a client id: not what the cookie holds
        ("GA2.1.1234567890.1700000000", None),
        ("GA1.1.12a4567890.1700000000", None),
        ("GA1.1." + fullwidth("123.456"), None),
        ("GA1.1.1234567890.1700000000.5", None),
        ("GA1.1." + "9" * 5000 + ".1", None),  # absurdly long
        ("undefined", None),
        ("%E0%A4%A", None),  # broken percent-encoding
    ],
)
def test_ga_client_id(value, client_id):
    ids = identifiers_from_cookies(f"x=1; _ga={value}")
    assert ids.ga_client_id == client_id
    assert ids.unparseable == (() if client_id else ("_ga",))


@pytest.mark.parametrize(
    ("value", "session_id"),
    [
        (GS1, "1744094510"),
        ("GS1.1.1700000000.5.1.1700000100.0.0.0", "1700000000"),
        ("GS1.1.1700000000.5", "1700000000"),
        ("GS1.2.1700000000.12.0.1700000000.60.0.0", "1700000000"),
        (GS2, "1746825440"),
        ("GS2.1.s1746825440", "1746825440"),
        ("GS2.1.s1746825440$o1$g0$t1746825440$j60$l0$h0$dAbC-x_y", "1746825440"),
        ("GS2.1.s1746825440%24o1%24g0%24t1746825440", "1746825440"),  # "$" percent-encoded
        ("GS1.1.1700000000", None),  # missing the session number
        ("GS1.1.s1700000000.5", None),  # GS2 spelling in a GS1 cookie
        ("GS2.1.1746825440$o1", None),  # GS1 spelling in a GS2 cookie
        ("GS2.1.s$o1$g0", None),
        ("GS2.1.s0$o1", None),  # 0 can never join a session
        ("GS3.1.s1746825440$o1", None),
        ("GS2.1.s" + fullwidth("1746825440") + "$o1", None),
        ("GS2.1.s1746825440$" + "x" * 2000, None),  # far longer than any real session cookie
        ("garbage", None),
    ],
)
def test_ga_session_id_both_formats(value, session_id):
    ids = identifiers_from_cookies(f"_ga={GA}; _ga_ABC123XYZ={value}")
    assert ids.ga_session_id == session_id
    assert ids.unparseable == (() if session_id else ("_ga_*",))


STREAMS = f"_ga={GA}; _ga_OTHER1={GS2}; _ga_3369S417EL={GS1}"


@pytest.mark.parametrize(
    ("header", "stream", "session_id", "unparseable"),
    [
        (STREAMS, None, "1746825440", ()),  # first valid wins
        (STREAMS, "3369S417EL", "1744094510", ()),
        (STREAMS, "G-3369S417EL", "1744094510", ()),  # the measurement id as configured
        (STREAMS, "g-3369s417el", "1744094510", ()),
        (STREAMS, "G-NOTHERE", None, ()),  # another property's session would not join ours
        (f"_ga_BAD=junk; _ga_GOOD={GS1}", None, "1744094510", ()),  # first VALID, garbage skipped
        ("_ga_A=junk; _ga_B=GS2.1.s$", None, None, ("_ga_*",)),  # one metric, not one per cookie
        (f"_ga_=GS1.1.1.1; _ga_X={GS1}", None, "1744094510", ()),  # "_ga_" alone is no stream
        (f"_gac_UA1={GS1}; _gat_X={GS1}", None, None, ()),  # other Google cookies are not sessions
        ("_ga_X=", None, None, ()),  # empty is absent, not malformed
    ],
)
def test_ga_session_stream_choice(header, stream, session_id, unparseable):
    ids = identifiers_from_cookies(header, ga_stream_id=stream)
    assert ids.ga_session_id == session_id
    assert ids.unparseable == unparseable


# --- Meta ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "valid"),
    [
        ("_fbp", FBP, True),
        ("_fbp", "fb.1.1558571054389.1098115397", True),
        ("_fbp", "fb.2.1558571054389.1098115397", True),
        ("_fbp", "fb.1.1558571054389.1098115397.Bg", True),  # parameter builder language token
        ("_fbp", "fb.1.1558571054389.1098115397.AQIBAQAB", True),  # parameter builder v2 appendix
        ("_fbp", "fb.1.1558571054389.1098115397.ZZ", False),
        ("_fbp", "fb.1.1558571054389.1098115397.Bg.extra", False),
        ("_fbp", "fb.1.1558571054389", False),
        ("_fbp", "fb.1..1098115397", False),
        ("_fbp", "fb.x.1558571054389.1098115397", False),
        ("_fbp", "FB.1.1558571054389.1098115397", False),
        ("_fbp", "1098115397", False),
        ("_fbc", FBC, True),
        ("_fbc", "fb.1.1554763741205.IwZXh0bgNhZW0BMABhZGlkAasBYbb_aem_Xy-Zw", True),
        ("_fbc", "fb.1.1554763741205.", False),
        ("_fbc", "fb.1.1554763741205.Iw AR", False),
        ("_fbc", "fb.1.1554763741205.IwAR😀", False),
        ("_fbc", "fb.1.1554763741205." + "A" * 2000, False),
        ("_fbc", "fb.1.1554763741205.IwAR%2Dx", True),  # decoded to "IwAR-x"
    ],
)
def test_meta_cookies(name, value, valid):
    ids = identifiers_from_cookies(f"{name}={value}")
    found = ids.fbp if name == "_fbp" else ids.fbc
    expected = value.replace("%2D", "-") if valid else None
    assert found == expected
    assert ids.unparseable == (() if valid else (name,))


NOW = 1792627295123


@pytest.mark.parametrize(
    ("header", "landing_url", "fbc", "unparseable"),
    [
        # No cookie: Meta's documented fbc from the click id, stamped with now_ms.
        ("", "https://shop.example.com/?fbclid=IwAR2x_y-z", f"fb.1.{NOW}.IwAR2x_y-z", ()),
        ("", "https://shop.example.com/p?utm_source=fb&fbclid=IwAR2x&x=1#top", f"fb.1.{NOW}.IwAR2x", ()),
        ("", "https://shop.example.com/?fbclid=IwAR2x&fbclid=second", f"fb.1.{NOW}.IwAR2x", ()),
        ("", "https://shop.example.com/?fbclid=", None, ()),
        ("", "https://shop.example.com/?nofbclid", None, ()),
        ("", "https://shop.example.com/?fbclid=a.b", None, ("fbclid",)),  # a dot breaks Meta's split
        ("", "https://shop.example.com/?fbclid=%ED%95%9C", None, ("fbclid",)),
        ("", "http://[::1/?fbclid=IwAR", None, ()),  # an unreadable URL is no URL
        ("", None, None, ()),
        # The cookie's own click: the cookie stays, with its original creation time.
        (f"_fbc={FBC}", f"https://s.example/?fbclid={FBC.split('.')[3]}", FBC, ()),
        # A different click in the URL is newer than the cookie (Meta's parameter builder does the same).
        (f"_fbc={FBC}", "https://s.example/?fbclid=NEWCLICK", f"fb.1.{NOW}.NEWCLICK", ()),
        ("_fbc=broken", "https://s.example/?fbclid=NEWCLICK", f"fb.1.{NOW}.NEWCLICK", ("_fbc",)),
        (f"_fbc={FBC}", "https://s.example/landing", FBC, ()),
    ],
)
def test_fbc_from_landing_url(header, landing_url, fbc, unparseable):
    ids = identifiers_from_cookies(header, landing_url=landing_url, now_ms=NOW)
    assert ids.fbc == fbc
    assert ids.unparseable == unparseable


def test_fbc_from_landing_url_defaults_to_the_current_time():
    ids = identifiers_from_cookies(None, landing_url="https://s.example/?fbclid=IwAR")
    assert ids.fbc is not None
    _, index, stamp, click = ids.fbc.split(".")
    assert (index, click) == ("1", "IwAR")
    assert len(stamp) == 13 and stamp.isdigit()


# --- AppsFlyer -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (AF, True),
        ("52293775-f4c9-4ce2-9002-5137c5a1ed24", True),
        ("9999999-f848-4963-a091-568f0bf9a361", True),  # AppsFlyer's own documentation example
        ("52293775-F4C9-4CE2-9002-5137C5A1ED24-p", True),
        ("52293775-f4c9-4ce2-9002", False),
        ("52293775f4c94ce290025137c5a1ed24", False),
        ("unique_cookie_uuid", False),
        ("undefined", False),
        ("null", False),
        ("52293775-f4c9-4ce2-9002-5137c5a1ed24-toolongsuffix", False),
        ("52293775-f4c9-4ce2-9002-5137c5a1ed24 p", False),
        (fullwidth("52293775") + "-f4c9-4ce2-9002-5137c5a1ed24", False),
    ],
)
def test_af_user_id(value, valid):
    ids = identifiers_from_cookies(f"AF_SYNC=1718975655764; afUserId={value}")
    assert ids.af_user_id == (value if valid else None)
    assert ids.unparseable == (() if valid else ("afUserId",))


def test_af_cookie_name_is_case_sensitive():
    assert identifiers_from_cookies(f"afuserid={AF}").af_user_id is None


# --- whole headers -------------------------------------------------------------------------------


def test_real_header_yields_every_identifier():
    ids = identifiers_from_cookies(REAL)
    assert ids == CookieIdentifiers(
        ga_client_id="1863538960.1718975654",
        ga_session_id="1744094510",
        fbp=FBP,
        fbc=None,
        af_user_id=AF,
    )


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        ";;;",
        "\x00\x01\x02",
        "SID=31d4d96e407aad42; lang=en-US",
        "=" * 10_000,
        "a=" + "x" * 100_000,
        "_ga=; _fbp=; _fbc=; afUserId=; _ga_X=",  # present but empty: nothing to count
    ],
)
def test_headers_without_identifiers(header):
    assert identifiers_from_cookies(header) == CookieIdentifiers()


def test_garbage_everywhere_names_each_cookie_once():
    ids = identifiers_from_cookies("_ga=x; _ga_A=x; _ga_B=y; _fbp=x; _fbc=x; afUserId=x; _ga=GA1.1.1.2")
    assert ids == CookieIdentifiers(unparseable=("_ga", "_ga_*", "_fbp", "_fbc", "afUserId"))


def test_duplicate_cookie_first_wins_even_when_the_second_is_valid():
    # The browser's first cookie is the one for this path/domain; the later one belongs elsewhere.
    ids = identifiers_from_cookies(f"_fbp=broken; _fbp={FBP}")
    assert ids.fbp is None
    assert ids.unparseable == ("_fbp",)


@pytest.mark.parametrize(
    ("label", "metric"),
    [
        ("_ga", "CookieUnparseable_ga"),
        ("_ga_*", "CookieUnparseable_ga_session"),
        ("_fbp", "CookieUnparseable_fbp"),
        ("_fbc", "CookieUnparseable_fbc"),
        ("afUserId", "CookieUnparseable_afUserId"),
        ("fbclid", "CookieUnparseable_fbclid"),
        ("_ga_EVIL NAME", "CookieUnparseable_other"),
    ],
)
def test_unparseable_metric_names_are_a_closed_set(label, metric):
    assert unparseable_metric(label) == metric


# --- apply_cookies -------------------------------------------------------------------------------

FOUND = CookieIdentifiers(
    ga_client_id="1.2", ga_session_id="3", fbp="fb.1.4.5", fbc="fb.1.6.x", af_user_id="a-b-c-d-e"
)


def test_apply_fills_an_empty_context():
    context = apply_cookies(Context(client_ip="203.0.113.9"), FOUND)
    assert (context.ga_client_id, context.ga_session_id, context.fbp, context.fbc, context.af_user_id) == (
        "1.2",
        "3",
        "fb.1.4.5",
        "fb.1.6.x",
        "a-b-c-d-e",
    )
    assert context.client_ip == "203.0.113.9"


def test_apply_keeps_explicit_fields():
    explicit = Context(ga_client_id="9.9", fbc="fb.1.1.explicit", af_user_id="explicit")
    context = apply_cookies(explicit, FOUND)
    assert (context.ga_client_id, context.fbc, context.af_user_id) == ("9.9", "fb.1.1.explicit", "explicit")
    assert (context.ga_session_id, context.fbp) == ("3", "fb.1.4.5")


def test_apply_nothing_found_returns_the_same_context():
    context = Context(user_id="u1")
    assert apply_cookies(context, CookieIdentifiers(unparseable=("_ga",))) is context


# --- Stripe: cookie string in metadata -----------------------------------------------------------

CREATED = 1792627295


@pytest.fixture
def fresh_mapping(monkeypatch):
    monkeypatch.delenv("MAPPING_OVERRIDES", raising=False)
    config.mapping.cache_clear()
    yield monkeypatch
    config.mapping.cache_clear()


def checkout(metadata: dict[str, str]) -> dict[str, Any]:
    return {
        "id": "evt_1",
        "object": "event",
        "created": CREATED,
        "livemode": False,
        "type": "checkout.session.completed",
        "data": {
            "object": {
                "id": "cs_test_1",
                "object": "checkout.session",
                "amount_total": 1999,
                "currency": "usd",
                "mode": "payment",
                "payment_status": "paid",
                "created": CREATED - 60,
                "metadata": metadata,
            }
        },
    }


def test_stripe_cookie_metadata_fills_context(fresh_mapping):
    (event,) = to_events(checkout({"cookies": f"{REAL}; _fbc={FBC}"}))
    assert event.context.ga_client_id == "1863538960.1718975654"
    assert event.context.ga_session_id == "1744094510"
    assert (event.context.fbp, event.context.fbc, event.context.af_user_id) == (FBP, FBC, AF)


def test_stripe_explicit_metadata_wins_over_cookies(fresh_mapping):
    metadata = {"cookies": REAL, "ga_client_id": "111.222", "af_user_id": "explicit-af"}
    (event,) = to_events(checkout(metadata))
    assert (event.context.ga_client_id, event.context.af_user_id) == ("111.222", "explicit-af")
    assert (event.context.ga_session_id, event.context.fbp) == ("1744094510", FBP)  # filled from cookies


def test_stripe_fbclid_in_event_source_url_uses_the_event_time(fresh_mapping):
    metadata = {"event_source_url": "https://shop.example.com/checkout?fbclid=IwAR2x"}
    (first,) = to_events(checkout(metadata))
    (again,) = to_events(checkout(metadata))  # a provider retry maps to the same value
    assert first.context.fbc == again.context.fbc == f"fb.1.{CREATED * 1000}.IwAR2x"


def test_stripe_garbage_cookies_are_counted_not_raised(fresh_mapping, monkeypatch):
    counted: list[str] = []
    monkeypatch.setattr(
        "conversion_relay.cookies.metrics.add_metric", lambda name, unit, value: counted.append(name)
    )
    (event,) = to_events(checkout({"cookies": "_ga=nonsense; _fbp=fb.x; \x00=\x01"}))
    assert event.context.ga_client_id is None and event.context.fbp is None
    assert counted == ["CookieUnparseable_ga", "CookieUnparseable_fbp"]


def test_stripe_cookie_metadata_key_is_configurable(fresh_mapping):
    fresh_mapping.setenv("MAPPING_OVERRIDES", json.dumps({"metadata_keys": {"cookies": "browser_cookies"}}))
    config.mapping.cache_clear()
    (event,) = to_events(checkout({"browser_cookies": REAL, "cookies": "_ga=GA1.1.9.9"}))
    assert event.context.ga_client_id == "1863538960.1718975654"
