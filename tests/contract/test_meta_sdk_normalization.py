"""Our Meta user_data normalization against facebook-python-business-sdk as the oracle.

For every input: if the SDK raises, we drop the identifier (value None with a reason); if the SDK
would hash an empty string, we drop it too (documented choice, `empty_<field>`); otherwise our
output is byte-identical to the SDK's. The SDK and pycountry are test-only dependencies.
"""

from __future__ import annotations

import hashlib
import json
import string
from importlib import resources

import pycountry
import pytest
from facebook_business.adobjects.serverside.gender import Gender
from facebook_business.adobjects.serverside.normalize import Normalize
from facebook_business.adobjects.serverside.user_data import UserData
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conversion_relay.meta_normalize import FIELD_NAMES, Normalized, hash_person, lookup_key, normalize
from conversion_relay.model import Person

pytestmark = pytest.mark.contract

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# external_id is excluded: the SDK sends it raw (see test_sdk_sends_external_id_raw).
SDK_FIELDS = ("em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country")
REFUSED = object()


def sdk(field: str, value: str) -> object:
    """What the SDK sends for one value, or REFUSED when it raises / cannot represent it."""
    if field == "ge" and value:
        # UserData only takes the Gender enum, so the normalizer never sees anything but m/f
        # (or a digest a caller already computed); everything else cannot leave the SDK.
        text = value.lower().strip()
        if text not in {g.value for g in Gender} and not Normalize.is_already_hashed(text):
            return REFUSED
    try:
        return Normalize.normalize_field(field, value)
    except (TypeError, ValueError):
        return REFUSED


def check_against_sdk(field: str, value: str) -> None:
    expected = sdk(field, value)
    ours = normalize(field, value)
    if expected is None:  # the SDK's "not provided"
        assert ours == Normalized()
    elif expected is REFUSED:
        assert ours.value is None
        assert ours.dropped in {f"invalid_{FIELD_NAMES[field]}", f"empty_{FIELD_NAMES[field]}"}
    elif expected == EMPTY_SHA256:
        assert ours == Normalized(dropped=f"empty_{FIELD_NAMES[field]}")
    else:
        assert ours == Normalized(expected), (field, value)


# -- hand-written cases -----------------------------------------------------------------------------
HAND_WRITTEN = [
    ("em", "John_Smith@gmail.com"),
    ("em", "  Jane.Doe+tag@Example.COM "),
    ("em", "jane doe@example.com"),
    ("em", "jane@example"),
    ("em", "ÄNNE@Bücher.de"),
    ("em", "a\nb@c.de"),
    ("ph", "(650)555-1212"),
    ("ph", "+1 (650) 555-1212"),
    ("ph", "+0000000000"),
    ("ph", "0000 1 650 555 1212"),
    ("ph", "00000 650 555 1212"),
    ("ph", "650.555.1212"),
    ("ph", "+82 10-1234-5678"),
    ("ph", "1 (650) 555-12"),
    ("ph", "١٢٣٤٥٦٧٨٩٠"),  # Arabic-Indic digits: \d is Unicode in both
    ("fn", "Valéry"),
    ("fn", "  MARY  "),
    ("fn", "   "),
    ("ln", "O'Brien-Smith"),
    ("ln", "İnce"),  # lower() turns the dotted capital I into two code points
    ("db", "19970216"),
    ("db", "2/16/1997"),
    ("ge", "m"),
    ("ge", " F "),
    ("ge", "male"),
    ("ct", "New York"),
    ("ct", "St. Louis (MO)"),
    ("ct", "12345"),
    ("ct", "Köln"),
    ("st", "CA"),
    ("st", "New South Wales"),
    ("zp", "94035-1234"),
    ("zp", " 94035 - 1234 "),
    ("zp", "M1 1AE"),
    ("zp", "-1234"),
    ("country", "US"),
    ("country", "U.S."),
    ("country", "United States"),
    ("country", "usa"),
    ("country", "\u212a\u0280"),  # KELVIN SIGN lowers to ASCII k
    *[(field, value) for field in SDK_FIELDS for value in ("", "  ", "0123456789abcdef0123456789ABCDEF")],
    *[(field, hashlib.sha256(b"x").hexdigest().upper()) for field in SDK_FIELDS],
]


@pytest.mark.parametrize(("field", "value"), HAND_WRITTEN)
def test_hand_written_cases_match_the_sdk(field, value):
    check_against_sdk(field, value)


@pytest.mark.parametrize(
    ("field", "kwargs", "value"),
    [
        ("em", "emails", " Jane@Example.com"),
        ("ph", "phones", "+1 650 555 1212"),
        ("fn", "first_names", "Valéry"),
        ("ln", "last_names", "Doe"),
        ("db", "dates_of_birth", "19900102"),
        ("ct", "cities", "San Francisco"),
        ("st", "states", "CA"),
        ("zp", "zip_codes", "94105-1234"),
        ("country", "country_codes", "us"),
    ],
)
def test_the_wire_shape_is_the_sdks_one_element_list(field, kwargs, value):
    assert UserData(**{kwargs: [value]}).normalize()[field] == [normalize(field, value).value]


def test_sdk_gender_enum_matches_ours():
    for gender in Gender:
        assert UserData(genders=[gender]).normalize()["ge"] == [normalize("ge", gender.value).value]


def test_sdk_sends_external_id_raw():
    # Our documented extension hashes it; if the SDK starts hashing, revisit EXTERNAL_ID_POLICY.
    assert UserData(external_ids=["Cus_123"]).normalize()["external_id"] == ["Cus_123"]


def test_shipped_country_list_equals_pycountry():
    shipped = json.loads(
        resources.files("conversion_relay").joinpath("data/meta_country_codes.json").read_text("utf-8")
    )["alpha_2"]
    assert shipped == sorted(country.alpha_2 for country in pycountry.countries)


# -- generated cases --------------------------------------------------------------------------------
def _recase(text_strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Random upper/lower case per character and random surrounding whitespace."""

    @st.composite
    def build(draw: st.DrawFn) -> str:
        text = draw(text_strategy)
        flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
        text = "".join(c.upper() if flip else c for c, flip in zip(text, flips, strict=True))
        pad = st.sampled_from(["", " ", "  ", "\t", "\n", "\u00a0"])
        return draw(pad) + text + draw(pad)

    return build()


LETTERS = string.ascii_letters + "éèüöäñçøåßİıŁłŠšЖжΩω\u212a"
PUNCTUATION = " .-'(),/&_#"
digest = st.one_of(
    st.text("0123456789abcdef", min_size=32, max_size=32),
    st.text("0123456789abcdef", min_size=64, max_size=64),
)
noise = st.text(max_size=25)  # any Unicode, including control characters and odd whitespace


@st.composite
def phones(draw: st.DrawFn) -> str:
    prefix = draw(st.sampled_from(["", "+", "0", "00", "000", "0000", "00000", "+0", "+00", "+000"]))
    # Mostly separators the SDK cleans; "." and "/" (which it refuses) now and then.
    separators = st.sampled_from(["", " ", "-", "(", ")", " ", "-", "", "  ", ".", "/"])
    groups = draw(st.lists(st.text(string.digits, min_size=2, max_size=4), min_size=2, max_size=5))
    body = "".join(draw(separators) + group for group in groups)
    suffix = draw(st.sampled_from(["", "", "", "", "", "", " ext 12", "#3"]))
    return prefix + body + suffix


@st.composite
def zips(draw: st.DrawFn) -> str:
    us = draw(st.text(string.digits, min_size=5, max_size=5))
    plus4 = draw(st.sampled_from(["", "-", " - "])) + draw(st.text(string.digits, max_size=4))
    uk = (
        draw(st.text(string.ascii_letters + string.digits, min_size=2, max_size=4))
        + draw(st.sampled_from(["", " ", "  "]))
        + draw(st.text(string.ascii_letters + string.digits, min_size=3, max_size=3))
    )
    return draw(st.sampled_from([us + plus4, uk, us]))


COUNTRY_SHAPES = st.one_of(
    st.sampled_from([c.alpha_2 for c in pycountry.countries]),
    st.sampled_from([c.alpha_3 for c in pycountry.countries]),
    st.sampled_from([c.name for c in pycountry.countries]),
    st.sampled_from(["U.S.", "u-k", "K.R", "G B", "xx", "zz", "eu", "uk"]),
    st.text(string.ascii_letters + ".- ", min_size=1, max_size=4),
)
STRATEGIES: dict[str, st.SearchStrategy[str]] = {
    "em": st.one_of(
        _recase(st.emails()),
        _recase(st.text(LETTERS + "@.+_ -", max_size=20)),
        st.builds(
            lambda a, b: f"{a}@{b}", st.text(LETTERS + ". ", max_size=8), st.text(LETTERS + ".", max_size=8)
        ),
    ),
    "ph": st.one_of(_recase(phones()), st.text("0123456789+-() ./x", max_size=20)),
    "fn": st.one_of(_recase(st.text(LETTERS + PUNCTUATION, max_size=20)), noise),
    "ln": st.one_of(_recase(st.text(LETTERS + PUNCTUATION + string.digits, max_size=20)), noise),
    "ge": st.one_of(_recase(st.sampled_from(["m", "f", "male", "female", "x", "u", "mf", ""])), noise),
    "db": st.one_of(
        st.tuples(st.dates(), st.sampled_from(["%Y%m%d", "%Y-%m-%d", "%m/%d/%Y", "%d.%m.%Y"])).map(
            lambda date_and_format: date_and_format[0].strftime(date_and_format[1])
        ),
        noise,
    ),
    "ct": st.one_of(
        _recase(st.sampled_from(["New York", "St. Louis", "Winston-Salem", "Köln", "São Paulo", "L'Aquila"])),
        _recase(st.text(LETTERS + PUNCTUATION + string.digits, max_size=25)),
        noise,
    ),
    "st": st.one_of(
        _recase(st.sampled_from(["CA", "ny", "New South Wales", "Île-de-France", "Baden-Württemberg"])),
        _recase(st.text(LETTERS + PUNCTUATION + string.digits, max_size=20)),
    ),
    "zp": st.one_of(_recase(zips()), st.text(string.digits + string.ascii_letters + " -", max_size=12)),
    "country": st.one_of(_recase(COUNTRY_SHAPES), noise),
}


@pytest.mark.parametrize("field", SDK_FIELDS)
@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_inputs_match_the_sdk(field, data):
    check_against_sdk(field, data.draw(STRATEGIES[field], label=field))


@settings(max_examples=200, deadline=None, database=None)
@given(field=st.sampled_from(SDK_FIELDS), value=_recase(digest))
def test_generated_digests_pass_through_like_the_sdk(field, value):
    check_against_sdk(field, value)


# -- the extensions' data files, against pycountry ---------------------------------------------------
def _shipped(name: str) -> dict[str, object]:
    return json.loads(resources.files("conversion_relay").joinpath(f"data/{name}").read_text("utf-8"))


def test_shipped_country_names_equal_pycountry():
    expected: dict[str, str] = {}
    for country in pycountry.countries:
        for attribute in ("name", "official_name", "common_name", "alpha_3"):
            value = getattr(country, attribute, None)
            if value:
                expected.setdefault(lookup_key(value), country.alpha_2)
    assert _shipped("meta_country_names.json")["pycountry"] == expected


def test_shipped_us_states_equal_pycountry():
    expected = {
        lookup_key(s.name): s.code.split("-")[1] for s in pycountry.subdivisions.get(country_code="US")
    }
    assert _shipped("meta_us_states.json")["pycountry"] == expected


def test_country_aliases_name_real_codes_and_never_contradict_pycountry():
    shipped = _shipped("meta_country_names.json")
    codes = {country.alpha_2 for country in pycountry.countries}
    for code, names in shipped["aliases"].items():  # type: ignore[union-attr]
        assert code in codes
        for name in names:
            assert shipped["pycountry"].get(lookup_key(name), code) == code, name  # type: ignore[union-attr]


@given(st.sampled_from(list(pycountry.countries)))
def test_every_country_name_resolves_to_the_code_the_sdk_accepts(country):
    for attribute in ("name", "official_name", "common_name", "alpha_3", "alpha_2"):
        value = getattr(country, attribute, None)
        if value:
            hashed = hash_person(Person(country=value)).fields["country"]
            assert hashed == [Normalize.normalize_field("country", country.alpha_2)], (attribute, value)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=string.ascii_letters + string.digits + " .-()+@", max_size=30))
def test_extensions_only_touch_values_the_sdk_would_not_match(value):
    """For inputs no extension recognizes, hash_person sends exactly what the SDK sends."""
    person = Person(first_name=value, last_name=value, email=value, zip=value, external_id=None)
    fields = hash_person(person).fields
    for meta_field in ("fn", "ln", "em", "zp"):
        expected = sdk(meta_field, value)
        if expected not in (None, REFUSED, EMPTY_SHA256):
            assert fields[meta_field] == [expected]
