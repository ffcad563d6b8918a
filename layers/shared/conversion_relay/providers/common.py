"""Helpers the PortOne, Toss, Paddle and first-party modules share: identifiers, amounts, API reads.

Browser identifiers and consent come from a flat string map (PortOne `customData`, Toss `metadata`,
Paddle `custom_data`) under the same key names as Stripe metadata (config.metadata_key), so a merchant
configures one set of names for every provider.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import requests

from conversion_relay.config import ConfigError, metadata_key
from conversion_relay.cookies import fill_from_cookies
from conversion_relay.errors import ObjectNotFound, ProviderUnavailable
from conversion_relay.http import TIMEOUT
from conversion_relay.model import Consent, Context, ConversionEvent, Person
from conversion_relay.money import normalize_currency, to_major_units
from conversion_relay.signatures import PayloadError

_CONTEXT_FIELDS = tuple(f.name for f in fields(Context))
_CONSENT_VALUES = {"granted": True, "true": True, "denied": False, "false": False}


def text(value: Any) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def string_map(value: Any) -> dict[str, str]:
    """A flat map of non-blank string (or number) values; anything else is dropped."""
    return {str(k): v for k, raw in as_dict(value).items() if (v := text(raw)) is not None}


def json_string_map(value: Any) -> dict[str, str]:
    """PortOne's customData is a STRING holding JSON; unreadable or non-object content gives {}.

    A conversion without identifiers is still worth sending, so bad customData never fails a webhook.
    """
    if isinstance(value, dict):
        return string_map(value)
    if not isinstance(value, str) or not value.strip():
        return {}
    try:
        return string_map(json.loads(value))
    except (ValueError, RecursionError):
        return {}


def context(metadata: Mapping[str, str], *, stamp_ms: int | None = None) -> Context:
    """Identifiers under their configured metadata keys; a raw Cookie header under the "cookies" key
    fills what those left empty. `stamp_ms` dates an fbc built from an fbclid (default: now)."""
    explicit = Context(**{name: metadata.get(metadata_key(name)) for name in _CONTEXT_FIELDS})
    return fill_from_cookies(explicit, metadata.get(metadata_key("cookies")), now_ms=stamp_ms)


def consent(metadata: Mapping[str, str]) -> Consent:
    def flag(field_name: str) -> bool | None:
        return _CONSENT_VALUES.get(metadata.get(metadata_key(field_name), "").strip().casefold())

    return Consent(ad_user_data=flag("ad_user_data"), ad_personalization=flag("ad_personalization"))


def person_from_metadata(metadata: Mapping[str, str], **known: str | None) -> Person:
    """Person fields given explicitly win; the rest may come from metadata keys of the same name."""
    values = {f.name: known.get(f.name) or metadata.get(f.name) for f in fields(Person)}
    return Person(**{name: value for name, value in values.items() if value})


def currency(value: Any, path: str) -> str:
    try:
        return normalize_currency(value)
    except ValueError:
        raise PayloadError(f"{path} must be a 3-letter ISO 4217 code") from None


def money(amount: Any, code: str, path: str) -> Decimal:
    """Integer minor units (ISO 4217 exponents) to major units; PayloadError naming `path` otherwise."""
    if not is_int(amount):
        raise PayloadError(f"{path} must be an integer amount in minor units")
    return to_major_units(amount, code, "iso")


def rfc3339(value: Any, path: str) -> datetime:
    if isinstance(value, str) and value.strip():
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is not None:
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    raise PayloadError(f"{path} is required as an RFC 3339 timestamp")


def first_time(*candidates: tuple[Any, str]) -> datetime:
    """The first candidate that parses; PayloadError naming the last path when none does."""
    for value, path in candidates:
        if isinstance(value, str) and value.strip():
            return rfc3339(value, path)
    raise PayloadError(f"{candidates[-1][1]} is required as an RFC 3339 timestamp")


def base_url(variable: str, default: str) -> str:
    return (os.environ.get(variable) or default).rstrip("/")


def get_json(
    session: requests.Session,
    url: str,
    *,
    headers: Mapping[str, str],
    provider: str,
    what: str,
    params: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """GET a provider API object, classifying failures the way the ingest must answer them.

    - connection error, timeout, 408, 429, 5xx -> ProviderUnavailable (503: the provider retries the webhook);
    - 404 -> ObjectNotFound (nothing is enqueued);
    - 401/403 -> ConfigError (500: our API credential is wrong; the provider retries once it is fixed);
    - any other 4xx (except 408) -> PayloadError (400): the id from the webhook is not one the API takes;
    - any other answer that is not a JSON object -> ProviderUnavailable.
    `what` names the object ("payment") in reasons; ids, URLs with ids, and credentials are never included.
    """
    try:
        response = session.get(url, headers=dict(headers), params=params, timeout=TIMEOUT)
    except requests.RequestException as error:
        raise ProviderUnavailable(
            f"could not reach the {provider} API to read the {what} ({error.__class__.__name__});"
            f" {provider} will retry the webhook"
        ) from None
    status = response.status_code
    if status == 404:
        raise ObjectNotFound(
            f"the {provider} API does not know this {what}: check that the relay's {provider} API"
            " credential belongs to the same store and mode (test/live) as the webhook"
        )
    if status in (401, 403):
        raise ConfigError(
            f"the {provider} API refused our credential (HTTP {status}): fix the api secret in the"
            f" {provider} secret"
        )
    if 400 <= status < 500 and status not in (408, 429):
        raise PayloadError(
            f"the {provider} API refused to look up the {what} the webhook names (HTTP {status})"
        )
    if not 200 <= status < 300:
        raise ProviderUnavailable(
            f"the {provider} API answered HTTP {status} when reading the {what}; {provider} will retry"
        )
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ProviderUnavailable(f"the {provider} API answered with something that is not a JSON {what}")
    return body


class ModuleProvider:
    """The registry's Provider protocol over a provider module's own functions.

    `parse`, `delivery_id`, `event_type` and `to_events` call the module's functions of the same
    name; a provider's subclass adds what differs (`verify_request`, and `resolve` or
    `check_source` where it has them). Built with the module's `__name__`.
    """

    def __init__(self, module_name: str) -> None:
        self._module = sys.modules[module_name]

    def parse(self, body: bytes) -> dict[str, Any]:
        return self._module.parse(body)

    def delivery_id(self, payload: Mapping[str, Any]) -> str:
        return self._module.delivery_id(payload)

    def event_type(self, payload: Mapping[str, Any]) -> str:
        return self._module.event_type(payload)

    def to_events(self, payload: Mapping[str, Any]) -> list[ConversionEvent]:
        return self._module.to_events(payload)
