"""One pooled HTTP session per container, with explicit timeouts on every call."""

from __future__ import annotations

import os

import requests
from requests.adapters import HTTPAdapter

from conversion_relay import __version__

USER_AGENT = f"conversion-relay/{__version__}"


def _timeouts() -> tuple[float, float]:
    return (
        float(os.environ.get("HTTP_CONNECT_TIMEOUT_SECONDS", "3.05")),
        float(os.environ.get("HTTP_READ_TIMEOUT_SECONDS", "10")),
    )


TIMEOUT: tuple[float, float] = _timeouts()


def new_session(pool_size: int = 10) -> requests.Session:
    """A Session whose pool matches the concurrency we use; no automatic retries: we classify instead."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session
