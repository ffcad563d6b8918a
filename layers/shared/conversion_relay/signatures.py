"""Errors every payment provider raises, and the small HMAC helpers they share.

The ingest catches `SignatureError` (answer 401: the sender or the configured secret is wrong) and
`PayloadError` (answer 400: the body is not an event we can read). Both carry a `reason` a person can
act on; reasons never contain header values, secrets or any part of the body.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from conversion_relay.errors import PayloadInvalid, SignatureInvalid


class SignatureError(SignatureInvalid, ValueError):
    """The webhook is not authentic (or cannot be checked); `reason` says what to fix."""


class PayloadError(PayloadInvalid, ValueError):
    """The webhook body is not an event this provider module can read; `reason` names the field."""


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header value by case-insensitive name (API Gateway v2 lower-cases them; other callers may not)."""
    value = headers.get(name.lower())
    if value is not None:
        return value
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


def hmac_sha256_hex(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def constant_time_equal(expected: str, candidate: str) -> bool:
    """Constant-time comparison; also takes non-ASCII input, on which compare_digest(str, str) raises."""
    return hmac.compare_digest(expected.encode("utf-8"), candidate.encode("utf-8"))
