"""Fixtures every unit test module shares."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from conversion_relay import config
from conversion_relay.http import new_session


@pytest.fixture(autouse=True)
def _shipped_mapping(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts from the shipped event-name mapping, whatever the environment says."""
    monkeypatch.delenv("MAPPING_OVERRIDES", raising=False)
    config.mapping.cache_clear()
    yield
    config.mapping.cache_clear()


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    """A pooled session like the handlers', reused across a module's tests."""
    with new_session() as pooled:
        yield pooled
