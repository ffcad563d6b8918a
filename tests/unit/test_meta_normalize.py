"""Meta user_data normalization: hand-written edge cases (the SDK oracle lives in tests/contract)."""

from __future__ import annotations

import hashlib

import pytest

from conversion_relay import meta_normalize
from conversion_relay.meta_normalize import (
    HASHED_FIELDS,
    Extensions,
    HashedUserData,
    Normalized,
    hash_person,
    normalize,
)
from conversion_relay.model import Person


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


MD5_SHAPED = "0123456789abcdef0123456789abcdef"
SHA_SHAPED = sha("already")


@pytest.mark.parametrize(
    ("field", "raw", "normalized"),
    [
        # Meta's documented examples
        ("em", "John_Smith@gmail.com", "john_smith@gmail.com"),
        ("ph", "(650)555-1212", "6505551212"),
        ("ph", "16505551212", "16505551212"),
        ("fn", "Valéry", "valéry"),
        # case and surrounding whitespace, for every field that keeps its text
        ("em", "  Jane.Doe+tag@Example.COM \n", "jane.doe+tag@example.com"),
        ("fn", "  MARY ", "mary"),
        ("ln", " O'Brien-Smith ", "o'brien-smith"),  # the SDK keeps punctuation in names
        ("db", " 19970216 ", "19970216"),
        ("ge", " F ", "f"),
        ("external_id", " Cus_ABC123 ", "cus_abc123"),
        # phones: +, leading zeros, punctuation
        ("ph", "+1 (650) 555-1212", "16505551212"),
        ("ph", "+44 20 7946 0958", "442079460958"),
        ("ph", "0044 20 7946 0958", "442079460958"),
        ("ph", "+0044 20 7946 0958", "442079460958"),
        ("ph", "001-650-555-1212", "16505551212"),
        ("ph", "0000 1 650 555 1212", "16505551212"),  # the SDK strips "+00" twice
        ("ph", "82 (10) 1234 5678", "821012345678"),
        # zips: whitespace removed, part before the first '-'
        ("zp", "94035-1234", "94035"),
        ("zp", " 94035 - 1234 ", "94035"),
        ("zp", "M1 1AE", "m11ae"),
        ("zp", "06236", "06236"),
        # city / state: digits, spaces, '.', '-', '(', ')' removed; other punctuation and accents kept
        ("ct", "New York", "newyork"),
        ("ct", "St. Louis (MO)", "stlouismo"),
        ("ct", "Winston-Salem 27101", "winstonsalem"),
        ("ct", "Köln", "köln"),
        ("ct", "L'Aquila", "l'aquila"),
        ("st", "CA", "ca"),
        ("st", "New South Wales", "newsouthwales"),
        # country: letters only, ISO 3166-1 alpha-2
        ("country", "US", "us"),
        ("country", " gb ", "gb"),
        ("country", "U.S.", "us"),
        ("country", "k-r", "kr"),
    ],
)
def test_normalizes_and_hashes_like_the_sdk(field, raw, normalized):
    assert normalize(field, raw) == Normalized(sha(normalized))


@pytest.mark.parametrize("field", [f for f in HASHED_FIELDS if f != "external_id"])
@pytest.mark.parametrize("digest", [MD5_SHAPED, SHA_SHAPED])
def test_pre_hashed_values_pass_through_lowercased(field, digest):
    assert normalize(field, f"  {digest.upper()} ") == Normalized(digest)


def test_external_id_passes_through_only_a_sha256_digest():
    assert normalize("external_id", SHA_SHAPED) == Normalized(SHA_SHAPED)
    # a uuid4().hex customer id is 32 hex characters but not a digest: it is hashed
    assert normalize("external_id", MD5_SHAPED.upper()) == Normalized(sha(MD5_SHAPED))


@pytest.mark.parametrize("field", HASHED_FIELDS)
@pytest.mark.parametrize("raw", [None, ""])
def test_absent_values_are_not_sent_and_not_counted(field, raw):
    assert normalize(field, raw) == Normalized()


@pytest.mark.parametrize(
    ("field", "raw", "reason"),
    [
        ("fn", "   ", "empty_first_name"),
        ("external_id", " \t", "empty_external_id"),
        ("ct", "12345", "empty_city"),  # only digits: the SDK would send sha256("")
        ("st", " - . ", "empty_state"),
        ("zp", "-1234", "empty_zip"),
        ("em", "  ", "empty_email"),
    ],
)
def test_values_empty_after_normalization_are_never_hashed(field, raw, reason):
    assert normalize(field, raw) == Normalized(dropped=reason)


@pytest.mark.parametrize(
    ("field", "raw", "reason"),
    [
        ("em", "jane.doe", "invalid_email"),
        ("em", "jane@example", "invalid_email"),
        ("em", "@example.com", "invalid_email"),
        ("ph", "+0000000000", "invalid_phone"),  # all zeros: one bad phone must not fail a batch
        ("ph", "00000 650 555 1212", "invalid_phone"),  # the two prefix strips remove 4 zeros, not 5
        ("ph", "555-12", "invalid_phone"),  # too short
        ("ph", "650.555.1212", "invalid_phone"),  # dots are not cleaned by the SDK
        ("ph", "6505551212 ext 3", "invalid_phone"),
        ("country", "United States", "invalid_country"),
        ("country", "USA", "invalid_country"),
        ("country", "XX", "invalid_country"),
        ("country", "12", "invalid_country"),
        ("ge", "x", "invalid_gender"),
        ("ge", "male", "invalid_gender"),  # words are an extension of hash_person, not of normalize
    ],
)
def test_values_the_sdk_refuses_are_dropped_with_a_reason(field, raw, reason):
    assert normalize(field, raw) == Normalized(dropped=reason)


def test_unknown_field_is_a_programming_error():
    with pytest.raises(ValueError, match="client_ip_address"):
        normalize("client_ip_address", "203.0.113.9")


def test_country_list_is_iso_alpha2():
    codes = meta_normalize.country_codes()
    assert len(codes) == 249
    assert {"us", "gb", "kr", "de"} <= codes
    assert all(len(code) == 2 and code.isascii() and code.islower() for code in codes)


def test_hash_person_maps_fields_to_meta_keys_as_one_element_lists():
    person = Person(
        email="Jane@Example.com",
        phone="+1 650 555 1212",
        first_name="Jane",
        last_name="Doe",
        date_of_birth="19900102",
        gender="f",
        city="San Francisco",
        state="CA",
        zip="94105-1234",
        country="US",
        external_id="cus_123",
    )
    assert hash_person(person) == HashedUserData(
        {
            "em": [sha("jane@example.com")],
            "ph": [sha("16505551212")],
            "fn": [sha("jane")],
            "ln": [sha("doe")],
            "ge": [sha("f")],
            "db": [sha("19900102")],
            "ct": [sha("sanfrancisco")],
            "st": [sha("ca")],
            "zp": [sha("94105")],
            "country": [sha("us")],
            "external_id": [sha("cus_123")],
        },
        (),
    )


def test_hash_person_drops_invalid_identifiers_and_keeps_the_rest():
    result = hash_person(Person(email="not-an-email", phone="12", country="Neverland", last_name="Doe"))
    assert result.fields == {"ln": [sha("doe")]}
    assert result.dropped == ("invalid_email", "invalid_phone", "invalid_country")


def test_hash_person_of_an_empty_person_is_empty():
    assert hash_person(Person()) == HashedUserData()


# -- documented extensions beyond the SDK (hash_person only; normalize() stays the SDK's) -------------
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Male", "m"),
        (" FEMALE ", "f"),
        ("woman", "f"),
        ("M", "m"),
        ("여성", "f"),
        ("남자", "m"),
        ("男性", "m"),
        ("Weiblich", "f"),
        ("other", None),
        ("x", None),
    ],
)
def test_gender_words_extension(raw, expected):
    result = hash_person(Person(gender=raw))
    assert result.fields.get("ge") == ([sha(expected)] if expected else None)
    assert result.dropped == (() if expected else ("invalid_gender",))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1997-02-16", "19970216"),
        (" 1997-02-16 ", "19970216"),
        ("1997/2/16", "19970216"),
        ("1997.02.16", "19970216"),
        ("19970216", "19970216"),
        ("1997-02-16T00:00:00Z", "19970216"),
        ("1997년 2월 16일", "19970216"),
        ("1997年2月16日", "19970216"),
        ("2/16/1997", "19970216"),  # Meta's own example: US month-first
        ("02/03/1997", "19970203"),  # ambiguous slash dates are month-first
        ("16/02/1997", "19970216"),  # unambiguously day-first
        ("16.02.1997", "19970216"),  # European dots: day-first
        ("03-02-1997", "19970203"),
        ("2000-02-29", "20000229"),
    ],
)
def test_date_of_birth_formats_extension(raw, expected):
    assert hash_person(Person(date_of_birth=raw)) == HashedUserData({"db": [sha(expected)]})


@pytest.mark.parametrize(
    "raw",
    [
        "1997-02-30",
        "1999-02-29",
        "1997-13-01",
        "13/13/1997",
        "1899-12-31",
        "2999-01-01",
        "Feb 16 1997",
        "1997216",
        "16",
    ],
)
def test_dates_meta_could_not_match_are_dropped_not_hashed(raw):
    assert hash_person(Person(date_of_birth=raw)) == HashedUserData({}, ("invalid_date_of_birth",))


def test_a_pre_hashed_date_of_birth_passes_through():
    assert hash_person(Person(date_of_birth=SHA_SHAPED.upper())).fields == {"db": [SHA_SHAPED]}


@pytest.mark.parametrize(
    ("state", "country", "expected"),
    [
        ("California", None, "ca"),
        ("california", "US", "ca"),
        ("New York", "United States", "ny"),
        ("  new   york ", "usa", "ny"),
        ("District of Columbia", "US", "dc"),
        ("Washington D.C.", "US", "dc"),
        ("Puerto Rico", "US", "pr"),
        ("CA", "US", "ca"),
        ("Georgia", "US", "ga"),
        ("Bavaria", "DE", "bavaria"),  # other countries keep the name, as Meta asks
        ("New South Wales", "AU", "newsouthwales"),
        ("California", "CA", "california"),  # Canada: no US mapping
        ("서울특별시", "KR", "서울특별시"),
    ],
)
def test_us_state_names_extension(state, country, expected):
    assert hash_person(Person(state=state, country=country)).fields["st"] == [sha(expected)]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("United States", "us"),
        ("United States of America", "us"),
        ("USA", "us"),
        ("U.S.A.", "us"),
        ("united kingdom", "gb"),
        ("UK", "gb"),
        ("South Korea", "kr"),
        ("Korea, Republic of", "kr"),
        ("대한민국", "kr"),
        ("한국", "kr"),
        ("日本", "jp"),
        ("Germany", "de"),
        ("DEU", "de"),
        ("Côte d'Ivoire", "ci"),
        ("Cote d'Ivoire", "ci"),
        ("US", "us"),  # the SDK's own path
    ],
)
def test_country_names_extension(raw, expected):
    assert hash_person(Person(country=raw)).fields["country"] == [sha(expected)]


@pytest.mark.parametrize("raw", ["Neverland", "XX", "Atlantis"])
def test_unknown_country_names_are_still_dropped(raw):
    assert hash_person(Person(country=raw)).dropped == ("invalid_country",)


@pytest.mark.parametrize(
    ("raw", "code", "expected"),
    [
        ("010-1234-5678", "82", "821012345678"),
        ("010 1234 5678", "82", "821012345678"),
        ("(02) 312-3456", "82", "8223123456"),
        ("+82 10-1234-5678", "82", "821012345678"),  # international already
        ("0082 10 1234 5678", "82", "821012345678"),
        ("821012345678", "82", "821012345678"),
        ("090-1234-5678", "81", "819012345678"),
        ("020 7946 0958", "44", "442079460958"),
        ("(650) 555-1212", "1", "16505551212"),
        ("650.555.1212", "1", "16505551212"),
        ("1 650 555 1212", "1", "16505551212"),
        ("010-1234-5678", None, "1012345678"),  # no default: the SDK's result (a wrong number)
    ],
)
def test_default_phone_country_code_extension(raw, code, expected):
    result = hash_person(Person(phone=raw), Extensions(default_phone_country_code=code))
    assert result.fields["ph"] == [sha(expected)]


def test_phone_extension_leaves_what_it_cannot_read_to_the_sdk():
    result = hash_person(Person(phone="010-1234-5678 ext 9"), Extensions(default_phone_country_code="82"))
    assert result.dropped == ("invalid_phone",)


def test_names_are_nfc_normalized():
    decomposed = "Vale\u0301ry"
    assert hash_person(Person(first_name=decomposed, last_name=decomposed, city=decomposed)).fields == {
        "fn": [sha("valéry")],
        "ln": [sha("valéry")],
        "ct": [sha("valéry")],
    }
    # normalize() itself stays byte-identical to the SDK, which does not NFC
    assert normalize("fn", decomposed) == Normalized(sha(decomposed.lower()))


@pytest.mark.parametrize("field", ["email", "phone", "first_name", "city", "zip", "external_id"])
@pytest.mark.parametrize("raw", ["", "   "])
def test_empty_values_are_never_hashed(field, raw):
    result = hash_person(Person(**{field: raw}))
    assert result.fields == {}
