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
replica. Shipped: gender words (`male` -> `m`) and ISO dates (`1997-02-16` -> `19970216`). Seams left for
later: US state names -> FIPS codes, country names -> ISO codes, phone numbers without a country code,
other date formats, Unicode normalization (NFC) of names.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

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
_GENDER_WORDS = {"male": "m", "man": "m", "female": "f", "woman": "f"}
_ISO_DATE = re.compile(r"\s*(\d{4})-(\d{2})-(\d{2})\s*")


def _gender_word(value: str) -> str:
    return _GENDER_WORDS.get(value.strip().lower(), value)


def _iso_date(value: str) -> str:
    match = _ISO_DATE.fullmatch(value)
    return "".join(match.groups()) if match else value


PRE_NORMALIZERS: dict[str, Callable[[str], str]] = {
    "ge": _gender_word,
    "db": _iso_date,
}


def hash_person(person: Person) -> HashedUserData:
    """The hashed user_data fields of a Person, plus the reason codes of identifiers that were dropped."""
    fields: dict[str, list[str]] = {}
    dropped: list[str] = []
    for attribute, meta_field in PERSON_FIELDS.items():
        raw: str | None = getattr(person, attribute)
        if raw and meta_field in PRE_NORMALIZERS:
            raw = PRE_NORMALIZERS[meta_field](raw)
        result = normalize(meta_field, raw)
        if result.value is not None:
            fields[meta_field] = [result.value]
        elif result.dropped is not None:
            dropped.append(result.dropped)
    return HashedUserData(fields, tuple(dropped))
