"""The local stack (moto + real handlers + fake destinations) for integration tests.

One LocalRelay per test module (module scope): each module also proves that a fresh stack starts
cleanly after the previous one stopped. Retries are fast (failed messages are visible again at once)
and pollers are off: tests call `relay.drain()` to run the consumers synchronously.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from relay_local.stack import LocalRelay
from tests.integration.webhooks import LOCAL_SECRETS, PostWebhook, stripe_signature


@pytest.fixture(scope="module")
def relay() -> Iterator[LocalRelay]:
    with LocalRelay(secrets=LOCAL_SECRETS, fast_retries=True, background_pollers=False) as stack:
        yield stack


@pytest.fixture(autouse=True)
def _clean_relay(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts with fakes that received nothing, have no faults queued, and empty queues."""
    if "relay" not in request.fixturenames:
        yield
        return
    stack: LocalRelay = request.getfixturevalue("relay")
    stack.reset()
    yield
    stack.reset()


@pytest.fixture
def post_webhook(relay: LocalRelay) -> PostWebhook:
    def post(
        body: bytes, *, provider: str = "stripe", signature: str | None = None, sign: bool = True
    ) -> requests.Response:
        headers = {"Content-Type": "application/json"}
        if sign:
            headers["Stripe-Signature"] = signature if signature is not None else stripe_signature(body)
        return requests.post(f"{relay.api_url}/webhooks/{provider}", data=body, headers=headers, timeout=30)

    return post
