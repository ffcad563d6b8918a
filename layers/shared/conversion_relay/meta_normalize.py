"""Normalize and SHA-256 hash Meta Conversions API `user_data` fields, byte-identical to Meta's SDK.

The reference is facebook-python-business-sdk, `facebook_business/adobjects/serverside/normalize.py`
(`Normalize.normalize(field, data, hash_field=True)`), which Meta's own tooling and most integrations
follow; tests/contract/test_meta_sdk_normalization.py runs the SDK as an oracle against this module.
The SDK is a test-only dependency: its country check needs pycountry, so the ISO 3166-1 alpha-2 list it
uses ships here as data/meta_country_codes.json.

For every field in `HASHED_FIELDS` the pipeline is the SDK's:
  1. None or "" -> not provided.
  2. `lower()` then `strip()` (Python's Unicode-aware versions, as the SDK).
  3. A value that already looks like an MD5 (32 hex) or SHA-256 (64 hex) digest passes through unhashed.
  4. The field rule: em must match `.+@.+\\..+`; ph drops whitespace, `-`, `(`, `)`, a leading `+` and up
     to two leading zeros (twice, as the SDK does), then must match `^\\d{1,4}\\(?\\d{2,3}\\)?\\d{4,}$`;
     ct/st drop digits, whitespace, `.`, `-`, `(`, `)`; zp drops whitespace and keeps what precedes the
     first `-`; country keeps only a-z and must be an ISO 3166-1 alpha-2 code.
  5. SHA-256 of the UTF-8 bytes, lowercase hex.

Deliberate differences from the SDK, each one a named choice:
  - Where the SDK raises (invalid email, phone, country) we DROP that one identifier and return a reason
    code (`invalid_email`, ...) for a metric; the event itself is still sent.
  - A value that is empty after normalization (e.g. "  ", a city made only of digits) is dropped with
    `empty_<field>`: the SDK would send sha256(""), which matches nobody and only costs match quality.
  - `ge`: the SDK only ever feeds its `Gender` enum (`m`/`f`) into the normalizer, so any other value is
    dropped as `invalid_gender` instead of hashing a word Meta cannot match.
  - `external_id`: the SDK sends it raw; Meta recommends hashing it. `EXTERNAL_ID_POLICY` = lower + strip +
    SHA-256, with a value that is already a SHA-256 digest passed through. Unlike the other fields a
    32-hex value IS hashed: merchant customer ids are often `uuid4().hex`, which is not a digest.
    Whatever the merchant's pixel sends as external_id must use the same policy for the two to match.

Extensions beyond the SDK (Meta's docs ask for more than the SDK does) live in `PRE_NORMALIZERS`: they
rewrite a raw value BEFORE the SDK pipeline and only in `hash_person`, so `normalize()` stays a pure SDK
replica. A value that already looks like a digest skips them. Each is tested on its own
(tests/unit/test_meta_normalize.py):
  - ge: gender words in several languages -> m / f (data/meta_gender_words.json).
  - db: YYYY-MM-DD, YYYY/MM/DD, YYYY.MM.DD, YYYYMMDD, an ISO timestamp, 1997년 2월 16일, M/D/YYYY (US order,
    Meta's own example; day first when the first number is above 12) and D.M.YYYY / D-M-YYYY (European
    order) -> YYYYMMDD. A value none of them parses, or an impossible date (Feb 30, year before 1900 or
    in the future) is dropped as `invalid_date_of_birth` instead of hashing text Meta cannot match.
  - st: US state names -> the 2-letter code (data/meta_us_states.json) when the person's country is the
    US or unknown; other countries keep the name, as Meta asks.
  - country: country names, alpha-3 codes and common local names -> alpha-2 (data/meta_country_names.json)
    when the SDK would refuse the value.
  - ph: with `Extensions.default_phone_country_code` (e.g. "82"), a number written with the national
    trunk prefix 0 ("010-1234-5678") becomes "821012345678"; with "1", a 10-digit number gets "1". Numbers
    with "+" or "00" are international already and untouched. Without a default: the SDK rule alone.
  - fn, ln, ct, st: Unicode NFC, so a composed and a decomposed "é" hash the same.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from importlib import resources
from typing import Any

from conversion_relay.model import Person

# Meta user_data key -> the name used in reason codes and docs (never the value itself).
FIELD_NAMES: dict[str, str] = {
    "em": "email",
    "ph": "phone",
    "fn": "first_name",
    "ln": "last_name",
    "ge": "gender",
    "db": "date_of_birth",
    "ct": "city",
    "st": "state",
    "zp": "zip",
    "country": "country",
    "external_id": "external_id",
}
HASHED_FIELDS: tuple[str, ...] = tuple(FIELD_NAMES)

# Person attribute -> Meta user_data key.
PERSON_FIELDS: dict[str, str] = {
    "email": "em",
    "phone": "ph",
    "first_name": "fn",
    "last_name": "ln",
    "gender": "ge",
    "date_of_birth": "db",
    "city": "ct",
    "state": "st",
    "zip": "zp",
    "country": "country",
    "external_id": "external_id",
}

EXTERNAL_ID_POLICY = "sha256_lower_strip"

# The SDK's regular expressions, verbatim: byte-identical output depends on their exact Unicode semantics
# (`\s`, `\d` and `lower()` all follow Unicode in Python 3).
_LOCATION_EXCLUDED = re.compile(r"[0-9.\s\-()]")
_NOT_ISO_LETTER = re.compile(r"[^a-z]")
_EMAIL = re.compile(r".+@.+\..+")
_MD5 = re.compile(r"^[a-f0-9]{32}$")
_SHA256 = re.compile(r"^[a-f0-9]{64}$")
_PHONE_PUNCTUATION = re.compile(r"[\s\-()]")
_PHONE_PREFIX = re.compile(r"^\+?0{0,2}")
_PHONE_INTERNATIONAL = re.compile(r"^\d{1,4}\(?\d{2,3}\)?\d{4,}$")
_WHITESPACE = re.compile(r"\s")


@dataclass(frozen=True, slots=True)
class Normalized:
    """One field's result: the value to send (hashed or passthrough digest), or why it was dropped."""

    value: str | None = None
    dropped: str | None = None  # reason code such as "invalid_email"; None when sent or not provided


@dataclass(frozen=True, slots=True)
class HashedUserData:
    """Meta user_data keys -> one-element lists (the SDK's wire shape), and the reason codes of drops."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    dropped: tuple[str, ...] = ()


@cache
def country_codes() -> frozenset[str]:
    """ISO 3166-1 alpha-2 codes, lower case (the SDK checks pycountry's list, case-insensitively)."""
    raw = resources.files("conversion_relay").joinpath("data/meta_country_codes.json").read_text("utf-8")
    return frozenset(code.lower() for code in json.loads(raw)["alpha_2"])


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_already_hashed(text: str) -> bool:
    return _MD5.match(text) is not None or _SHA256.match(text) is not None


# Field rules: normalized text in, normalized text out, or None when the SDK would raise.
def _email(text: str) -> str | None:
    return text if _EMAIL.match(text) else None


def _phone(text: str) -> str | None:
    text = _PHONE_PUNCTUATION.sub("", text)
    text = _PHONE_PREFIX.sub("", text)
    # The SDK strips the prefix a second time inside get_international_number; "+0000..." depends on it.
    text = _PHONE_PREFIX.sub("", text)
    if text.startswith("0"):
        return None
    match = _PHONE_INTERNATIONAL.match(text)
    return match.group() if match else None


def _location(text: str) -> str:
    return _LOCATION_EXCLUDED.sub("", text)


def _zip(text: str) -> str:
    return _WHITESPACE.sub("", text).split("-")[0]


def _country(text: str) -> str | None:
    text = _NOT_ISO_LETTER.sub("", text)
    return text if text in country_codes() else None


def _gender(text: str) -> str | None:
    return text if text in ("m", "f") else None


_RULES: dict[str, Callable[[str], str | None]] = {
    "em": _email,
    "ph": _phone,
    "ct": _location,
    "st": _location,
    "zp": _zip,
    "country": _country,
    "ge": _gender,
}


def normalize(meta_field: str, value: str | None) -> Normalized:
    """Normalize and hash one user_data value the way the SDK does; drop instead of raising."""
    if meta_field not in FIELD_NAMES:
        raise ValueError(f"{meta_field!r} is not a hashed Meta user_data field; known: {HASHED_FIELDS}")
    if value is None or value == "":
        return Normalized()
    name = FIELD_NAMES[meta_field]
    text = value.lower().strip()
    if not text:
        return Normalized(dropped=f"empty_{name}")
    if meta_field == "external_id":
        return Normalized(text if _SHA256.match(text) else sha256_hex(text))
    if is_already_hashed(text):
        return Normalized(text)
    rule = _RULES.get(meta_field)
    if rule is not None:
        ruled = rule(text)
        if ruled is None:
            return Normalized(dropped=f"invalid_{name}")
        text = ruled
    if not text:
        return Normalized(dropped=f"empty_{name}")
    return Normalized(sha256_hex(text))


# -- extensions beyond the SDK (Meta docs), applied to raw values before `normalize` ------------------
@dataclass(frozen=True, slots=True)
class Extensions:
    """Settings of the extensions; the defaults change nothing a merchant did not ask for."""

    # Country calling code (digits, e.g. "82") for phone numbers written the national way
    # ("010-1234-5678"); None leaves phone numbers to the SDK rule alone.
    default_phone_country_code: str | None = None


def lookup_key(text: str) -> str:
    """The key the name tables use: NFKC, casefold, letters only ("Côte d'Ivoire" -> "côtedivoire")."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", text).casefold() if ch.isalpha())


def _load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        resources.files("conversion_relay").joinpath(f"data/{name}").read_text("utf-8")
    )
    return loaded


@cache
def _name_table(file_name: str) -> dict[str, str]:
    """pycountry-derived keys plus aliases -> two-letter code, lower case."""
    raw = _load(file_name)
    table = {key: str(code).lower() for key, code in raw["pycountry"].items()}
    for code, names in raw["aliases"].items():
        for name in names:
            table[lookup_key(name)] = str(code).lower()
    return table


@cache
def _gender_words() -> dict[str, str]:
    raw = _load("meta_gender_words.json")
    return {
        unicodedata.normalize("NFKC", word).casefold().strip(): letter
        for letter in ("m", "f")
        for word in raw[letter]
    }


def country_code(value: str) -> str | None:
    """ISO alpha-2 (lower case) for a code the SDK accepts or a known country name, else None."""
    sdk_shaped = _NOT_ISO_LETTER.sub("", value.lower().strip())
    if sdk_shaped in country_codes():
        return sdk_shaped
    return _name_table("meta_country_names.json").get(lookup_key(value))


def _gender_word(value: str, person: Person, extensions: Extensions) -> str | None:
    # An unknown word is left for the SDK rule, which drops it as invalid_gender.
    return _gender_words().get(unicodedata.normalize("NFKC", value).casefold().strip(), value)


_DATE_YMD = re.compile(r"(\d{4})([-/.]?)(\d{1,2})\2(\d{1,2})(?:[T ].*)?")
_DATE_CJK = re.compile(r"(\d{4})\s*[년年]\s*(\d{1,2})\s*[월月]\s*(\d{1,2})\s*[일日]?")
_DATE_MDY = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")  # US order, as Meta's own example 2/16/1997
_DATE_DMY = re.compile(r"(\d{1,2})([.-])(\d{1,2})\2(\d{4})")  # European order: 16.02.1997


def _date_parts(text: str) -> tuple[int, int, int] | None:
    if match := _DATE_YMD.fullmatch(text):
        if not match.group(2) and (len(match.group(3)) != 2 or len(match.group(4)) != 2):
            return None  # "1997216" is ambiguous without separators
        return int(match.group(1)), int(match.group(3)), int(match.group(4))
    if match := _DATE_CJK.fullmatch(text):
        return int(match.group(1)), int(match.group(2)), int(match.group(3))
    if match := _DATE_MDY.fullmatch(text):
        month, day = int(match.group(1)), int(match.group(2))
        if month > 12 >= day:  # unambiguously day-first
            month, day = day, month
        return int(match.group(3)), month, day
    if match := _DATE_DMY.fullmatch(text):
        day, month = int(match.group(1)), int(match.group(3))
        if month > 12 >= day:
            month, day = day, month
        return int(match.group(4)), month, day
    return None


def _date_of_birth(value: str, person: Person, extensions: Extensions) -> str | None:
    """YYYYMMDD from common date formats; None (invalid_date_of_birth) for anything Meta could not match."""
    parts = _date_parts(value.strip())
    if parts is None:
        return None
    year, month, day = parts
    try:
        born = date(year, month, day)
    except ValueError:
        return None
    if not 1900 <= year <= date.today().year:
        return None
    return born.strftime("%Y%m%d")


def _state(value: str, person: Person, extensions: Extensions) -> str | None:
    # Meta wants the 2-letter code for US states only; other countries keep the name (SDK rule).
    country = country_code(person.country) if person.country else None
    if country not in (None, "us"):
        return unicodedata.normalize("NFC", value)
    code = _name_table("meta_us_states.json").get(lookup_key(value))
    return code or unicodedata.normalize("NFC", value)


def _country(value: str, person: Person, extensions: Extensions) -> str | None:
    return country_code(value) or value  # unknown: the SDK rule drops it as invalid_country


_PHONE_CLEAN = re.compile(r"[\s\-().]")


def _national_phone(value: str, person: Person, extensions: Extensions) -> str | None:
    """Prefix the configured country code to a number written with its national trunk prefix."""
    code = extensions.default_phone_country_code
    if not code:
        return value
    digits = _PHONE_CLEAN.sub("", value)
    if not digits.isdigit() or not digits.isascii():
        return value  # "+82...", extensions, letters: the SDK rule decides
    if digits.startswith("00"):
        return value  # international call prefix: the SDK strips it
    if digits.startswith("0"):
        return code + digits[1:]  # Korea, Japan, UK, Germany, France, Australia...: trunk prefix 0
    if code == "1" and len(digits) == 10:
        return "1" + digits  # North America has no trunk prefix: 10 digits are a national number
    return value


def _nfc(value: str, person: Person, extensions: Extensions) -> str | None:
    # "é" may arrive composed or decomposed; Meta hashes what it receives, so pick one form (NFC).
    return unicodedata.normalize("NFC", value)


PreNormalizer = Callable[[str, Person, Extensions], str | None]
# Meta field -> rewrite of the raw value (None: invalid, dropped as invalid_<field>). Pre-hashed values
# never reach these.
PRE_NORMALIZERS: dict[str, PreNormalizer] = {
    "ge": _gender_word,
    "db": _date_of_birth,
    "st": _state,
    "country": _country,
    "ph": _national_phone,
    "fn": _nfc,
    "ln": _nfc,
    "ct": _nfc,
}


def hash_person(person: Person, extensions: Extensions | None = None) -> HashedUserData:
    """The hashed user_data fields of a Person, plus the reason codes of identifiers that were dropped."""
    extensions = extensions or Extensions()
    fields: dict[str, list[str]] = {}
    dropped: list[str] = []
    for attribute, meta_field in PERSON_FIELDS.items():
        raw: str | None = getattr(person, attribute)
        if raw and meta_field in PRE_NORMALIZERS and not is_already_hashed(raw.lower().strip()):
            rewritten = PRE_NORMALIZERS[meta_field](raw, person, extensions)
            if rewritten is None:
                dropped.append(f"invalid_{FIELD_NAMES[meta_field]}")
                continue
            raw = rewritten
        result = normalize(meta_field, raw)
        if result.value is not None:
            fields[meta_field] = [result.value]
        elif result.dropped is not None:
            dropped.append(result.dropped)
    return HashedUserData(fields, tuple(dropped))
