"""What every destination module implements, and the outcome vocabulary the delivery routine speaks."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import requests

from conversion_relay.model import ConversionEvent


class Status(enum.Enum):
    DELIVERED = "delivered"  # the destination accepted it
    RETRY = "retry"  # transient: SQS redelivers it (429, 5xx, timeout, connection error)
    REJECT = "reject"  # permanent: retrying cannot fix it, goes to the DLQ with the reason
    SKIP = "skip"  # deliberately not sent (e.g. refunds to Meta when disabled); acknowledged


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Status
    # A reason a person can act on. Never contains PII, credentials or payload values:
    # name the field path and the rule instead.
    reason: str = ""
    http_status: int | None = None
    error_code: str | None = None
    retry_after_seconds: float | None = None

    @classmethod
    def delivered(cls, http_status: int | None = None) -> Outcome:
        return cls(Status.DELIVERED, http_status=http_status)

    @classmethod
    def retry(cls, reason: str, **details: Any) -> Outcome:
        return cls(Status.RETRY, reason, **details)

    @classmethod
    def reject(cls, reason: str, **details: Any) -> Outcome:
        return cls(Status.REJECT, reason, **details)

    @classmethod
    def skip(cls, reason: str) -> Outcome:
        return cls(Status.SKIP, reason)


@dataclass(frozen=True, slots=True)
class Prepared:
    """An event mapped and validated for one destination, ready to send."""

    event: ConversionEvent
    payload: dict[str, Any]
    # Events with the same group key may share one request (GA4: same user; Meta: same pixel).
    group_key: str = ""
    # Reason codes of identifiers left out as invalid (e.g. "invalid_email"): counted, never fatal.
    dropped_identifiers: tuple[str, ...] = ()


class Destination(Protocol):
    name: ClassVar[str]

    def prepare(self, event: ConversionEvent) -> Prepared | Outcome:
        """Map and validate one event. An Outcome (REJECT or SKIP) means: do not send it."""
        ...

    def send(self, batch: Sequence[Prepared]) -> list[Outcome]:
        """Send prepared events; one Outcome per input, in the same order. Never raises for I/O errors."""
        ...


def classify_transport_error(error: requests.RequestException) -> Outcome:
    """Timeouts and connection errors are retryable; anything else from requests is a bug in the request."""
    if isinstance(error, requests.Timeout | requests.ConnectionError):
        return Outcome.retry(f"network error: {error.__class__.__name__}")
    return Outcome.reject(f"request could not be built: {error.__class__.__name__}")
