"""One module per payment provider (verify, fetch if needed, map to canonical events), and their registry.

A provider is looked up by the `{provider}` path segment of `POST /webhooks/{provider}`. Modules
are imported on first use so a cold start pays only for the providers it serves.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Protocol

from conversion_relay.errors import UnknownProvider
from conversion_relay.model import ConversionEvent

# path segment -> module under conversion_relay.providers; each module exposes PROVIDER
REGISTRY: dict[str, str] = {
    "stripe": "stripe",
}


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


def get_provider(name: str) -> Provider:
    module_name = REGISTRY.get(name)
    if module_name is None:
        known = ", ".join(sorted(REGISTRY))
        raise UnknownProvider(f"no provider named {name!r}; this relay serves: {known}")
    return importlib.import_module(f"conversion_relay.providers.{module_name}").PROVIDER
