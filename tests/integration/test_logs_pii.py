"""Nothing personal or secret reaches a log line: run the pipeline with distinctive raw values and scan
everything that was logged or printed (the Powertools logger's own stream, stdout/stderr at the file
descriptor level (sys.stdout included), and every record that reached the standard logging tree).

The values are canaries: unusual enough that any occurrence in the output is a leak, and each of a
kind the redaction layer must handle (email, phone, Latin and Hangul names, IPv4, IPv6, Meta token,
API secret, AppsFlyer dev key, Stripe webhook secret).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
import requests

from relay_local.stack import LocalRelay
from tests.integration.webhooks import checkout_completed, encode, stripe_signature

pytestmark = pytest.mark.integration

EMAIL = "pii.canary.7731@example.net"
PHONE = "+82 10-7731-2468"
FIRST, LAST = "Canaryfirst", "Canarylast"
HANGUL_NAME = "카나리아"
IPV4 = "198.51.100.77"
IPV6 = "2001:db8:7731::4"
STRIPE_SECRET = "whsec_canary7731webhooksecretvalue"
SECRETS = {
    "stripe": {"webhook_secrets": [STRIPE_SECRET]},
    "ga4": {"measurement_id": "G-CANARY7731", "api_secret": "canary-ga4-api-secret-7731"},
    "meta": {"pixel_id": "773177317731773", "access_token": "EAACanary7731AccessTokenValue0000"},
    "appsflyer": {"bundle_id": "com.example.canary", "web_dev_key": "canary-appsflyer-devkey-7731"},
}
RAW_VALUES = [
    EMAIL,
    PHONE,
    PHONE.replace(" ", "").replace("-", ""),
    FIRST,
    LAST,
    HANGUL_NAME,
    IPV4,
    IPV6,
    STRIPE_SECRET,
    SECRETS["ga4"]["api_secret"],
    SECRETS["meta"]["access_token"],
    SECRETS["appsflyer"]["web_dev_key"],
]


@pytest.fixture(scope="module")
def relay() -> Iterator[LocalRelay]:
    # DEBUG: the most the relay ever logs must still be clean.
    with LocalRelay(
        secrets=SECRETS,
        fast_retries=True,
        background_pollers=False,
        environment={"POWERTOOLS_LOG_LEVEL": "DEBUG"},
    ) as stack:
        yield stack


def _webhook(*, ip: str, name: str) -> bytes:
    event = checkout_completed()
    session = event["data"]["object"]
    session["customer_details"].update(email=EMAIL, phone=PHONE.replace(" ", "").replace("-", ""), name=name)
    session["metadata"]["client_ip"] = ip
    return encode(event)


def _post(relay: LocalRelay, body: bytes, signature: str | None = None) -> requests.Response:
    headers = {
        "Content-Type": "application/json",
        "Stripe-Signature": signature or stripe_signature(body, STRIPE_SECRET),
    }
    return requests.post(f"{relay.api_url}/webhooks/stripe", data=body, headers=headers, timeout=30)


def test_no_raw_personal_value_or_secret_reaches_any_log_output(relay: LocalRelay, capfd, caplog):
    from conversion_relay.observability import logger

    caplog.set_level(logging.DEBUG)
    stream = io.StringIO()
    handler = logger.registered_handler
    previous = handler.setStream(stream)
    try:
        # A delivered event, a retried one (Meta 500 then OK), a rejected one (AppsFlyer 400), a
        # replayed duplicate, a forged signature and a malformed body.
        relay.fakes["meta"].fail_next(1, 500, {"error": {"message": f"boom for {EMAIL}", "code": 1}})
        relay.fakes["appsflyer"].fail_next(1, 400, f"bad ip {IPV4} for {EMAIL}")
        first = _webhook(ip=IPV4, name=f"{FIRST} {LAST}")
        assert _post(relay, first).status_code == 200
        assert _post(relay, _webhook(ip=IPV6, name=HANGUL_NAME)).status_code == 200
        relay.drain()
        assert _post(relay, first).json()["status"] == "duplicate"
        assert _post(relay, first, signature=f"t=1,v1={'0' * 64}").status_code == 401
        assert _post(relay, f'{{"email": "{EMAIL}", "ip": "{IPV4}"'.encode()).status_code in (400, 401)
        relay.drain()
        logger.info("probe", extra={"value": EMAIL})  # proves this stream is the one being scanned
    finally:
        handler.setStream(previous)

    fd = capfd.readouterr()
    output = "\n".join(
        [stream.getvalue(), fd.out, fd.err, caplog.text] + [str(record.__dict__) for record in caplog.records]
    )
    logged = stream.getvalue()
    assert "event settled" in logged and "event not delivered" in logged, logged[-3000:]
    assert "[REDACTED:email]" in stream.getvalue()
    lowered = output.lower()
    leaks = {
        value: output[max(0, found - 150) : found + 80]
        for value in RAW_VALUES
        if (found := lowered.find(value.lower())) >= 0
    }
    assert leaks == {}
