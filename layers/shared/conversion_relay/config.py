"""Non-secret settings (environment variables set by template.yaml) and the event-name/metadata mapping."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

DESTINATIONS = ("ga4", "meta", "appsflyer")


class ConfigError(RuntimeError):
    """The deployment is misconfigured; the message says which setting to fix."""


@dataclass(frozen=True, slots=True)
class Settings:
    enabled_destinations: tuple[str, ...]
    queue_urls: dict[str, str]
    idempotency_table: str
    webhook_tolerance_seconds: int
    max_body_bytes: int

    @classmethod
    def from_env(cls) -> Settings:
        enabled = tuple(
            name.strip()
            for name in os.environ.get("ENABLED_DESTINATIONS", ",".join(DESTINATIONS)).split(",")
            if name.strip()
        )
        unknown = sorted(set(enabled) - set(DESTINATIONS))
        if unknown:
            raise ConfigError(
                f"ENABLED_DESTINATIONS names unknown destinations {unknown}; known: {DESTINATIONS}"
            )
        queue_urls = {name: os.environ.get(f"{name.upper()}_QUEUE_URL", "") for name in enabled}
        missing = [f"{name.upper()}_QUEUE_URL" for name, url in queue_urls.items() if not url]
        if missing:
            raise ConfigError(f"missing environment variables {missing} for enabled destinations")
        return cls(
            enabled_destinations=enabled,
            queue_urls=queue_urls,
            idempotency_table=os.environ.get("IDEMPOTENCY_TABLE", ""),
            webhook_tolerance_seconds=int(os.environ.get("WEBHOOK_TOLERANCE_SECONDS", "300")),
            max_body_bytes=int(os.environ.get("MAX_BODY_BYTES", "262144")),
        )


def secret_name(component: str) -> str:
    """Secrets Manager name or ARN for a provider or destination, e.g. STRIPE_SECRET_NAME."""
    variable = f"{component.upper()}_SECRET_NAME"
    value = os.environ.get(variable, "")
    if not value:
        raise ConfigError(f"{variable} is not set")
    return value


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@cache
def mapping() -> dict[str, Any]:
    """The shipped mapping, with MAPPING_OVERRIDES (JSON) merged over it."""
    shipped = json.loads(resources.files("conversion_relay").joinpath("data/mapping.json").read_text("utf-8"))
    raw_override = os.environ.get("MAPPING_OVERRIDES", "").strip()
    if not raw_override:
        return shipped
    try:
        override = json.loads(raw_override)
    except ValueError as error:
        raise ConfigError(f"MAPPING_OVERRIDES is not valid JSON: {error}") from None
    if not isinstance(override, dict):
        raise ConfigError("MAPPING_OVERRIDES must be a JSON object")
    return _merge(shipped, override)


def destination_event_name(destination: str, canonical_name: str) -> str | None:
    """The destination's event name; a custom canonical name passes through; None means do not send."""
    names: dict[str, str | None] = mapping()["event_names"].get(destination, {})
    if canonical_name in names:
        return names[canonical_name]
    return canonical_name


def metadata_key(field_name: str) -> str:
    return mapping()["metadata_keys"][field_name]
