"""Starting and stopping LocalRelay: one at a time per process, nothing leaks from one stack to the next."""

from __future__ import annotations

import os
import time

import pytest
import requests

from relay_local.stack import LocalRelay
from tests.integration.webhooks import LOCAL_SECRETS, checkout_completed, encode, stripe_signature

pytestmark = pytest.mark.integration


def _with_stripe_secret(secret: str) -> dict:
    return {**LOCAL_SECRETS, "stripe": {"webhook_secrets": [secret]}}


def _post(relay: LocalRelay, body: bytes, secret: str) -> requests.Response:
    return requests.post(
        f"{relay.api_url}/webhooks/stripe",
        data=body,
        headers={
            "Stripe-Signature": stripe_signature(body, secret=secret),
            "Content-Type": "application/json",
        },
        timeout=30,
    )


def test_stop_restores_the_environment():
    before = dict(os.environ)
    relay = LocalRelay(secrets=LOCAL_SECRETS, background_pollers=False).start()
    try:
        assert os.environ["AWS_ENDPOINT_URL"] == relay.endpoint_url
    finally:
        relay.stop()

    assert dict(os.environ) == before


def test_a_second_stack_cannot_start_while_one_runs():
    second = LocalRelay(secrets=LOCAL_SECRETS, background_pollers=False)
    with (
        LocalRelay(secrets=LOCAL_SECRETS, background_pollers=False),
        pytest.raises(RuntimeError, match="another"),
    ):
        second.start()


def test_a_new_stack_sees_neither_the_old_queues_nor_its_cached_secrets():
    first_secret, second_secret = "whsec_first_stack", "whsec_second_stack"
    with LocalRelay(secrets=_with_stripe_secret(first_secret), background_pollers=False) as first:
        assert _post(first, encode(checkout_completed()), first_secret).status_code == 200
        assert first.queue_depths() == {"ga4": 1, "meta": 1, "appsflyer": 1}  # left undrained on purpose

    with LocalRelay(secrets=_with_stripe_secret(second_secret), background_pollers=False) as second:
        assert second.queue_depths() == {"ga4": 0, "meta": 0, "appsflyer": 0}
        body = encode(checkout_completed())
        # Powertools caches secrets for POWERTOOLS_PARAMETERS_MAX_AGE; the new stack must not use the old one.
        assert _post(second, body, first_secret).status_code == 401
        assert _post(second, body, second_secret).status_code == 200


def test_real_destination_urls_replace_the_fakes():
    # Port 9 (discard) on loopback: nothing is sent there by this test.
    with LocalRelay(
        secrets=LOCAL_SECRETS, destinations={"meta": "http://127.0.0.1:9"}, background_pollers=False
    ) as relay:
        assert "meta" not in relay.fakes
        assert os.environ["META_BASE_URL"] == "http://127.0.0.1:9"
        assert os.environ["GA4_BASE_URL"] == relay.fakes["ga4"].url


def test_enabled_destinations_limit_where_the_ingest_enqueues():
    with LocalRelay(secrets=LOCAL_SECRETS, enabled_destinations=("ga4",), background_pollers=False) as relay:
        response = _post(relay, encode(checkout_completed()), LOCAL_SECRETS["stripe"]["webhook_secrets"][0])

        assert response.status_code == 200, response.text
        assert response.json()["destinations"] == ["ga4"]
        assert relay.queue_depths() == {"ga4": 1, "meta": 0, "appsflyer": 0}


def test_background_pollers_deliver_without_drain():
    with LocalRelay(secrets=LOCAL_SECRETS, fast_retries=True) as relay:
        response = _post(relay, encode(checkout_completed()), LOCAL_SECRETS["stripe"]["webhook_secrets"][0])
        assert response.status_code == 200, response.text

        # Meta's batching window (template: 5 s) is the longest wait; give it room, then check.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(fake.accepted for fake in relay.fakes.values()):
            time.sleep(0.1)

        assert [len(relay.fakes[name].accepted) for name in ("ga4", "meta", "appsflyer")] == [1, 1, 1]
        relay.drain()  # pauses the pollers, then finds nothing left
        assert relay.queue_depths() == {"ga4": 0, "meta": 0, "appsflyer": 0}
