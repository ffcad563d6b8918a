"""Redaction of personal data and credentials in log output: the last line of defence.

The code never means to log an email, a phone number, a name, an IP address, a token or a secret
(reasons name field paths, not values). This layer catches what slips through anyway: an exception
message quoting a payload, a library logging a URL with `api_secret=` in it, a new log line written
in a hurry. It runs on every record the Powertools logger serializes (RedactingFormatter) and, through
RedactingFilter, on records that reach the root logger's handlers from other libraries.

Two kinds of rule:
- shapes: emails, phone numbers in international or dashed form, IPv4/IPv6 addresses, bearer tokens,
  Meta access tokens (EAA...), Stripe webhook secrets (whsec_...), Stripe keys, and the values of
  credential query parameters (api_secret=, access_token=, ...);
- known values: the names, emails, phones, IPs ... of the events being processed right now
  (`known_values(...)`), and the credentials the process has loaded (`register_secret_values(...)`).
  Shapes cannot recognise "김민수" as a name; the event that carries it can.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

_MIN_KNOWN_LENGTH = 3  # shorter values ("KR", "m") would blank out unrelated text
_MIN_SECRET_LENGTH = 6

_CREDENTIAL_PARAMETERS = (
    "api_secret",
    "access_token",
    "appsecret_proof",
    "devkey",
    "dev_key",
    "web_dev_key",
    "authentication",
    "authorization",
    "client_secret",
    "password",
    "token",
    "web_dev_key",
    "webhook_secrets",
    "secret",
)

# Order matters: credentials first (a token may contain an @ or digits), then addresses, then phones.
_CREDENTIAL_SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("token", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}")),
    ("token", re.compile(r"\bEAA[A-Za-z0-9]{8,}")),
    ("secret", re.compile(r"\bwhsec_[A-Za-z0-9_]{4,}")),
    ("secret", re.compile(r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{4,}")),
)
_PERSONAL_SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("email", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")),
    (
        "ip",
        re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\d.])"),
    ),
    # International form: +82 10 1234 5678, +82-10-1234-5678, +821012345678.
    ("phone", re.compile(r"(?<![\w+])\+\d{1,3}(?:[\s.-]?\(?\d{1,4}\)?){2,5}(?![\w])")),
    # National form with separators: 010-1234-5678, (555) 123-4567, 555.123.4567.
    ("phone", re.compile(r"(?<![\w.-])(?:\(\d{2,4}\)\s?|\d{2,4}[-.\s])\d{3,4}[-.\s]\d{4}(?![\w.-])")),
)
_CREDENTIAL_QUERY = re.compile(
    r"(?i)(?P<name>\b(?:"
    + "|".join(_CREDENTIAL_PARAMETERS)
    + r"))(?P<sep>=|(?:\\)*[\"']?\s*:\s*\[?\s*(?:\\)*[\"']?)(?P<value>[^&\s\"',}\]\\]+)"
)
# Values of personal fields inside serialized JSON, however deeply escaped (a message body logged by
# botocore at DEBUG is JSON inside a JSON string): "first_name":"X", \"first_name\":\"X\".
_PERSONAL_KEYS = (
    "first_name",
    "last_name",
    "full_name",
    "customer_name",
    "email",
    "phone",
    "date_of_birth",
    "client_ip",
    "client_ip_address",
    "ip",
    "zip",
    "postal_code",
    "line1",
    "line2",
)
_PERSONAL_FIELD = re.compile(
    r"(?P<key>(?:\\)*[\"'](?:"
    + "|".join(_PERSONAL_KEYS)
    + r")(?:\\)*[\"']\s*:\s*(?:\\)*[\"'])(?P<value>[^\"'\\]+)"
)
# A Secrets Manager response (botocore logs bodies at DEBUG): the whole SecretString, escapes included.
_SECRET_STRING = re.compile(
    r'(?P<key>"?Secret(?:String|Binary)"?\s*[:=]\s*)(?P<value>"(?:\\.|[^"\\])*"|\'[^\']*\')'
)
_IPV6_CANDIDATE = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")

_lock = threading.Lock()
_known: Counter[str] = Counter()  # value -> how many active scopes know it (threads share the process)
_secrets: set[str] = set()
_known_pattern: re.Pattern[str] | None = None


def mask(kind: str) -> str:
    return f"[REDACTED:{kind}]"


def redact(text: str) -> str:
    """The text with every known value and every recognised shape replaced by [REDACTED:<kind>]."""
    if not text:
        return text
    pattern = _known_pattern
    if pattern is not None:
        text = pattern.sub(lambda found: mask(_kind_of(found.group(0))), text)
    text = _SECRET_STRING.sub(lambda found: f'{found.group("key")}"{mask("secret")}"', text)
    for kind, shape in _CREDENTIAL_SHAPES:
        text = shape.sub(mask(kind), text)
    text = _CREDENTIAL_QUERY.sub(_mask_parameter, text)
    text = _PERSONAL_FIELD.sub(lambda found: f"{found.group('key')}{mask('personal')}", text)
    for kind, shape in _PERSONAL_SHAPES:
        text = shape.sub(mask(kind), text)
    return _IPV6_CANDIDATE.sub(_ipv6_or_same, text)


def redact_value(value: Any) -> Any:
    """Redact every string inside dicts, lists and tuples (keys too: an email can be a key)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {redact(str(key)): redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(item) for item in value]
    return value


@contextmanager
def known_values(values: Iterable[str | None]) -> Iterator[None]:
    """Redact these exact values (case-insensitive) in every log line while the block runs."""
    wanted = {value.strip() for value in values if value and len(value.strip()) >= _MIN_KNOWN_LENGTH}
    with _lock:
        _known.update(wanted)
        _rebuild()
    try:
        yield
    finally:
        with _lock:
            _known.subtract(wanted)
            for value in wanted:
                if _known[value] <= 0:
                    del _known[value]
            _rebuild()


def register_secret_values(values: Iterable[Any]) -> None:
    """Credentials this process has loaded (from a secret's JSON): redacted for the process's life."""
    found = {str(value) for value in _flatten(values) if len(str(value)) >= _MIN_SECRET_LENGTH}
    if not found - _secrets:
        return
    with _lock:
        _secrets.update(found)
        _rebuild()


def event_values(event: Any) -> list[str]:
    """The personal values of a canonical event (model.ConversionEvent) worth redacting by value."""
    person = getattr(event, "person", None)
    context = getattr(event, "context", None)
    values: list[str | None] = []
    if person is not None:
        first, last = person.first_name, person.last_name
        values += [person.email, person.phone, first, last, person.date_of_birth, person.zip]
        if first and last:
            values += [f"{first} {last}", f"{last} {first}", f"{last}{first}"]
    if context is not None:
        values += [context.client_ip]
    return [value for value in values if value]


def clear() -> None:
    """Forget every known value and secret (tests, and the local stack between runs)."""
    with _lock:
        _known.clear()
        _secrets.clear()
        _rebuild()


def _kind_of(value: str) -> str:
    return "secret" if value in _secrets or value.lower() in {s.lower() for s in _secrets} else "personal"


def _rebuild() -> None:
    global _known_pattern
    values = sorted({*_known, *_secrets}, key=len, reverse=True)  # longest first: "Kim Minsu" before "Kim"
    _known_pattern = re.compile("|".join(re.escape(v) for v in values), re.IGNORECASE) if values else None


def _flatten(values: Iterable[Any]) -> Iterator[Any]:
    for value in values:
        if isinstance(value, Mapping):
            yield from _flatten(value.values())
        elif isinstance(value, list | tuple | set):
            yield from _flatten(value)
        elif isinstance(value, str | int) and not isinstance(value, bool):
            yield value


def _mask_parameter(found: re.Match[str]) -> str:
    if found.group("value").startswith("[REDACTED:"):
        return found.group(0)
    return f"{found.group('name')}{found.group('sep')}{mask('secret')}"


def _ipv6_or_same(found: re.Match[str]) -> str:
    candidate = found.group(0)
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return candidate
    return mask("ip")


class RedactingFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON formatter, redacting every string of the structured record before it is written."""

    def serialize(self, log: dict[str, Any]) -> str:  # type: ignore[override]
        return super().serialize(log=redact_value(log))


_STANDARD_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


class RedactingFilter(logging.Filter):
    """Redacts a record at the source: message, args, extra fields and exception text.

    On the Powertools logger (so every handler sees redacted records) and on the root logger's
    handlers (records from other libraries).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep what there is, redacted
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        for name, value in list(vars(record).items()):
            if name not in _STANDARD_RECORD_FIELDS and isinstance(value, str | Mapping | list | tuple):
                setattr(record, name, redact_value(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
            record.exc_info = None  # the redacted text is used instead of re-formatting the traceback
        return True


def install_on_root_handlers() -> None:
    """Add a RedactingFilter to every handler of the root logger (Lambda's own handler included)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(existing, RedactingFilter) for existing in handler.filters):
            handler.addFilter(RedactingFilter())
