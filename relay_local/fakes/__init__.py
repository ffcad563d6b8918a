"""Fake destinations for the local stack, built from the same secrets the consumers read.

`build_fake(destination, secret)` returns an unstarted fake that accepts exactly those credentials.
Every fake answers `GET /_received` with a PII-free summary of what it accepted (FakeServer.summary).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from relay_local.fakes.base import FakeServer


def build_fake(destination: str, secret: Mapping[str, Any]) -> FakeServer:
    """A fake that knows the credentials in `secret` (the destination's Secrets Manager JSON)."""
    if destination == "ga4":
        from relay_local.fakes.ga4 import FakeGa4

        return FakeGa4.from_secret(secret)
    if destination == "meta":
        from relay_local.fakes.meta import FakeMeta

        return FakeMeta(access_token=str(secret["access_token"]), pixel_id=str(secret["pixel_id"]))
    if destination == "appsflyer":
        from relay_local.fakes.appsflyer import FakeAppsflyer

        return FakeAppsflyer(bundle_id=str(secret["bundle_id"]), web_dev_key=str(secret["web_dev_key"]))
    raise ValueError(f"no fake for destination {destination!r}; known: ga4, meta, appsflyer")
