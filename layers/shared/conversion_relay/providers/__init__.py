"""One module per payment provider (verify, fetch if needed, map to canonical events), and their registry.

A provider is looked up by the `{provider}` path segment of `POST /webhooks/{provider}`. Modules
are imported on first use so a cold start pays only for the providers it serves.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Protocol

import requests

from conversion_relay.errors import UnknownProvider
from conversion_relay.model import ConversionEvent

# path segment -> module under conversion_relay.providers; each module exposes PROVIDER
REGISTRY: dict[str, str] = {
    "stripe": "stripe",
    "portone": "portone",
    "toss": "toss",
    "paddle": "paddle",
}
# POST /events (the merchant's own backend) is not a webhook provider: it has its own route and is
# not reachable as /webhooks/events. Its secret component is "events" (EVENTS_SECRET_NAME).
FIRST_PARTY = "events"
_FIRST_PARTY_MODULE = "first_party"


class Provider(Protocol):
    def verify_request(
        self, headers: Mapping[str, str], body: bytes, secret: Mapping[str, Any], tolerance_seconds: int
    ) -> None:
        """Raise errors.SignatureInvalid unless the request provably comes from the provider."""
        ...

    def parse(self, body: bytes) -> dict[str, Any]:
        """Raise errors.PayloadInvalid when the body is not one of the provider's events."""
        ...

    def delivery_id(self, payload: Mapping[str, Any]) -> str:
        """The provider's id for this delivery: the same on every retry of it."""
        ...

    def event_type(self, payload: Mapping[str, Any]) -> str: ...

    def to_events(self, payload: Mapping[str, Any]) -> list[ConversionEvent]:
        """Canonical events for this delivery; empty when the event type is not a conversion."""
        ...


class ResolvingProvider(Provider, Protocol):
    """Optional: a provider whose body alone is not enough (thin payloads, ids in headers).

    The ingest calls `resolve` after `parse` and passes its result, not the body, to delivery_id,
    event_type and to_events. It may read the provider's API with `session` and the credentials in
    `secret`, raising errors.ProviderUnavailable (503: the provider retries), errors.ObjectNotFound
    (404: nothing enqueued) or config.ConfigError (500: our credential is wrong).
    """

    def resolve(
        self,
        payload: Mapping[str, Any],
        headers: Mapping[str, str],
        secret: Mapping[str, Any],
        session: requests.Session,
    ) -> dict[str, Any]: ...


class SourceCheckingProvider(Provider, Protocol):
    """Optional: refuse callers outside an allow-list (errors.SourceNotAllowed, 403) before anything else."""

    def check_source(self, source_ip: str | None) -> None: ...


def get_provider(name: str) -> Provider:
    module_name = REGISTRY.get(name)
    if module_name is None:
        known = ", ".join(sorted(REGISTRY))
        raise UnknownProvider(f"no provider named {name!r}; this relay serves: {known}")
    return importlib.import_module(f"conversion_relay.providers.{module_name}").PROVIDER


def first_party_provider() -> Provider:
    """The POST /events handler, under the name FIRST_PARTY."""
    return importlib.import_module(f"conversion_relay.providers.{_FIRST_PARTY_MODULE}").PROVIDER
