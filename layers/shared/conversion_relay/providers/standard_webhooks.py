"""Standard Webhooks (standardwebhooks.com) symmetric signatures: PortOne V2 and the first-party events API.

Scheme, as the spec and its reference libraries (Python `standardwebhooks`, JS `webhook.ts`, PortOne's
`server-sdk` `webhook.ts`) implement it:

- headers `webhook-id`, `webhook-timestamp` (unix seconds), `webhook-signature` (case-insensitive);
- signed content `"{webhook-id}.{timestamp}.{raw body}"`, HMAC-SHA256, base64 of the digest;
- key: the secret minus its `whsec_` prefix, base64-DECODED (unlike Stripe, where the string is the key);
- the signature header is a space-separated list of `<version>,<base64>` entries; only `v1` entries are
  checked (`v1a` is the asymmetric variant), and any one matching entry passes, so a sender can sign
  with an old and a new secret during a rotation; digests are compared as bytes in constant time;
- the timestamp must be within the tolerance on BOTH sides of now (too old and too new are refused).

The timestamp is checked before the signature, as in the libraries; the id is returned on success so
callers can dedupe on it (the spec makes `webhook-id` the idempotency key).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence

from conversion_relay.config import ConfigError
from conversion_relay.signatures import SignatureError, header

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_SECONDS = 300  # the spec's and PortOne's SDK WEBHOOK_TOLERANCE_IN_SECONDS
_VERSION = "v1"


def signing_key(secret: str) -> bytes:
    """The HMAC key for a `whsec_<base64>` secret; ConfigError (never naming the value) when unusable."""
    if not isinstance(secret, str) or not secret.strip():
        raise ConfigError("a Standard Webhooks secret is empty")
    encoded = secret.strip().removeprefix(SECRET_PREFIX)
    try:
        # Pad as the reference library does: some issuers drop the trailing "=".
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(
            "a Standard Webhooks secret is not base64 after its whsec_ prefix: copy it exactly as issued"
        ) from None
    if not key:
        raise ConfigError("a Standard Webhooks secret decodes to no bytes")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` entry a sender would produce: "v1,<base64>"."""
    return f"{_VERSION}," + base64.b64encode(_digest(signing_key(secret), msg_id, timestamp, body)).decode()


def sign_headers(secrets: str | Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """All three headers for `body`, signed with every given secret (space-separated, as in a rotation)."""
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: " ".join(sign(secret, msg_id, timestamp, body) for secret in keys),
    }


def verify(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
    *,
    sender: str = "the sender",
) -> str:
    """Return the `webhook-id` when some v1 entry matches some secret; SignatureError otherwise.

    `sender` names who signs (e.g. "PortOne") in the reasons, so a person knows where to look.
    """
    msg_id = header(headers, ID_HEADER)
    raw_timestamp = header(headers, TIMESTAMP_HEADER)
    signature = header(headers, SIGNATURE_HEADER)
    missing = [
        name
        for name, value in (
            (ID_HEADER, msg_id),
            (TIMESTAMP_HEADER, raw_timestamp),
            (SIGNATURE_HEADER, signature),
        )
        if not value
    ]
    if missing or msg_id is None or raw_timestamp is None or signature is None:
        raise SignatureError(f"missing Standard Webhooks header(s) {', '.join(missing)}")
    keys = [signing_key(secret) for secret in secrets]
    if not keys:
        raise ConfigError("no Standard Webhooks secret configured")
    try:
        timestamp = int(raw_timestamp.strip())
    except ValueError:
        raise SignatureError(f"{TIMESTAMP_HEADER} is not an integer (unix seconds)") from None
    current = time.time() if now is None else now
    if timestamp < current - tolerance_seconds:
        raise SignatureError(
            f"{TIMESTAMP_HEADER} is {int(current - timestamp)} s old (limit {tolerance_seconds} s):"
            f" check this host's clock, or have {sender} resend the message"
        )
    if timestamp > current + tolerance_seconds:
        raise SignatureError(
            f"{TIMESTAMP_HEADER} is {int(timestamp - current)} s in the future (limit {tolerance_seconds} s):"
            f" check the clock of {sender} and of this host"
        )
    candidates = _v1_signatures(signature)
    if not candidates:
        raise SignatureError(f"{SIGNATURE_HEADER} has no readable v1 entry")
    expected = [_digest(key, msg_id, timestamp, body) for key in keys]
    if not any(hmac.compare_digest(digest, candidate) for digest in expected for candidate in candidates):
        raise SignatureError(
            f"signature does not match any configured secret: compare the secret {sender} shows with ours"
        )
    return msg_id


def _digest(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    # The libraries sign the normalised integer, not the header's spelling of it.
    content = f"{msg_id}.{timestamp}.".encode() + (
        body.encode("utf-8") if isinstance(body, str) else bytes(body)
    )
    return hmac.new(key, content, hashlib.sha256).digest()


def _v1_signatures(value: str) -> list[bytes]:
    """Decoded v1 signatures; entries of other versions and unreadable entries are skipped."""
    found: list[bytes] = []
    for entry in value.split(" "):
        version, separator, encoded = entry.partition(",")
        if version != _VERSION or not separator:
            continue
        try:
            found.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    return found
