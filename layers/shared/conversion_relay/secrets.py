"""Credentials from Secrets Manager through Powertools Parameters: cached per container, never logged."""

from __future__ import annotations

import os
import re
from typing import Any

from aws_lambda_powertools.utilities import parameters

from conversion_relay.config import ConfigError, secret_name
from conversion_relay.redaction import register_secret_values

# Powertools' default is 300 s in v3; POWERTOOLS_PARAMETERS_MAX_AGE overrides it.
MAX_AGE_SECONDS = int(os.environ.get("POWERTOOLS_PARAMETERS_MAX_AGE", "300"))


def get_secret(component: str, *, force_fetch: bool = False) -> dict[str, Any]:
    """The JSON secret of a provider or destination ("stripe", "ga4", ...), as a dict.

    `force_fetch` bypasses the cache, e.g. after a destination answered 401 because the
    credential was rotated.
    """
    name = secret_name(component)
    try:
        value = parameters.get_secret(
            name, transform="json", max_age=MAX_AGE_SECONDS, force_fetch=force_fetch
        )
    except parameters.exceptions.TransformParameterError:
        raise ConfigError(f"secret for {component} is not a JSON object") from None
    if not isinstance(value, dict):
        raise ConfigError(f"secret for {component} is not a JSON object")
    # Whatever a log line might echo later (an error message, a URL), credentials are masked.
    # Only credential fields: ids and routing rules stay readable in logs.
    register_secret_values(_credentials(value))
    return value


_CREDENTIAL_KEY = re.compile(r"secret|token|key|salt|password", re.IGNORECASE)


def _credentials(value: Any, *, inside_credential: bool = False) -> list[Any]:
    if isinstance(value, dict):
        found: list[Any] = []
        for key, item in value.items():
            is_credential = inside_credential or bool(_CREDENTIAL_KEY.search(key))
            found += _credentials(item, inside_credential=is_credential)
        return found
    if isinstance(value, list | tuple):
        return [found for item in value for found in _credentials(item, inside_credential=inside_credential)]
    return [value] if inside_credential else []


def require(secret: dict[str, Any], component: str, *keys: str) -> None:
    """Fail with the missing key's name (never its value) when a secret lacks a field."""
    missing = [key for key in keys if not secret.get(key)]
    if missing:
        raise ConfigError(f"secret for {component} lacks {missing}")
