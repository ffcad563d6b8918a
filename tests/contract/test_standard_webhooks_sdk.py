"""Standard Webhooks verification (PortOne V2, POST /events) against the official `standardwebhooks`."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from conversion_relay.config import ConfigError
from conversion_relay.providers import standard_webhooks
from conversion_relay.signatures import SignatureError

pytestmark = pytest.mark.contract

# The reference vector: standard-webhooks libraries/javascript/src/webhook.test.ts "sign function works".
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
OTHER_SECRET = "whsec_" + base64.b64encode(b"another-secret-of-24-bytes!!").decode()
NOW = 1_800_000_000


def test_reference_vector_is_reproduced():
    assert standard_webhooks.sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIGNATURE
    sdk = Webhook(VECTOR_SECRET).sign(VECTOR_ID, datetime.fromtimestamp(VECTOR_TS, UTC), VECTOR_BODY.decode())
    assert sdk == VECTOR_SIGNATURE


def test_reference_vector_verifies():
    headers = {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TS),
        "webhook-signature": VECTOR_SIGNATURE,
    }
    assert standard_webhooks.verify(headers, VECTOR_BODY, [VECTOR_SECRET], now=VECTOR_TS + 10) == VECTOR_ID


def _headers(secret_list, ts=NOW, body=VECTOR_BODY, msg_id=VECTOR_ID):
    return standard_webhooks.sign_headers(secret_list, msg_id, ts, body)


def _sdk_accepts(secret, headers, body, now):
    """The official library's verdict, its clock pinned to `now`."""
    hook = Webhook(secret)
    import standardwebhooks.webhooks as module

    real = module.datetime

    class Frozen(real):
        @classmethod
        def now(cls, tz=None):
            return real.fromtimestamp(now, tz or UTC)

    module.datetime = Frozen
    try:
        hook.verify(body, headers)
    except WebhookVerificationError:
        return False
    finally:
        module.datetime = real
    return True


def _ours_accepts(secret, headers, body, now):
    try:
        standard_webhooks.verify(headers, body, [secret], 300, now=now)
    except SignatureError:
        return False
    return True


CASES = {
    "valid": (_headers(VECTOR_SECRET), VECTOR_BODY, NOW),
    "two-entries-second-matches": (_headers([OTHER_SECRET, VECTOR_SECRET]), VECTOR_BODY, NOW),
    "v1a-entry-then-v1": (
        {
            **_headers(VECTOR_SECRET),
            "webhook-signature": "v1a,AAAA " + _headers(VECTOR_SECRET)["webhook-signature"],
        },
        VECTOR_BODY,
        NOW,
    ),
    "tampered-body": (_headers(VECTOR_SECRET), VECTOR_BODY + b" ", NOW),
    "tampered-id": ({**_headers(VECTOR_SECRET), "webhook-id": "msg_other"}, VECTOR_BODY, NOW),
    "wrong-secret": (_headers(OTHER_SECRET), VECTOR_BODY, NOW),
    "stale-301s": (_headers(VECTOR_SECRET, ts=NOW - 301), VECTOR_BODY, NOW),
    "old-but-inside-299s": (_headers(VECTOR_SECRET, ts=NOW - 299), VECTOR_BODY, NOW),
    "future-301s": (_headers(VECTOR_SECRET, ts=NOW + 301), VECTOR_BODY, NOW),
    "future-inside-299s": (_headers(VECTOR_SECRET, ts=NOW + 299), VECTOR_BODY, NOW),
    "non-numeric-timestamp": ({**_headers(VECTOR_SECRET), "webhook-timestamp": "soon"}, VECTOR_BODY, NOW),
    "missing-id": ({k: v for k, v in _headers(VECTOR_SECRET).items() if k != "webhook-id"}, VECTOR_BODY, NOW),
    "only-v2-entry": (
        {
            **_headers(VECTOR_SECRET),
            "webhook-signature": _headers(VECTOR_SECRET)["webhook-signature"].replace("v1,", "v2,"),
        },
        VECTOR_BODY,
        NOW,
    ),
    "korean-body": (
        _headers(VECTOR_SECRET, body='{"상품": "구독"}'.encode()),
        '{"상품": "구독"}'.encode(),
        NOW,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_agrees_with_the_official_library(case):
    headers, body, now = CASES[case]
    assert _ours_accepts(VECTOR_SECRET, headers, body, now) == _sdk_accepts(VECTOR_SECRET, headers, body, now)


@pytest.mark.parametrize(
    "case", ["valid", "two-entries-second-matches", "old-but-inside-299s", "future-inside-299s"]
)
def test_accepted_cases_are_accepted(case):
    headers, body, now = CASES[case]
    assert _ours_accepts(VECTOR_SECRET, headers, body, now)


def test_either_of_two_configured_secrets_passes():
    headers = _headers(OTHER_SECRET)
    assert standard_webhooks.verify(headers, VECTOR_BODY, [VECTOR_SECRET, OTHER_SECRET], now=NOW) == VECTOR_ID


def test_headers_match_case_insensitively():
    headers = {k.upper(): v for k, v in _headers(VECTOR_SECRET).items()}
    assert standard_webhooks.verify(headers, VECTOR_BODY, [VECTOR_SECRET], now=NOW) == VECTOR_ID


def test_reasons_never_carry_secrets_or_signatures():
    headers = _headers(OTHER_SECRET)
    with pytest.raises(SignatureError) as caught:
        standard_webhooks.verify(headers, VECTOR_BODY, [VECTOR_SECRET], now=NOW)
    reason = caught.value.reason
    assert VECTOR_SECRET not in reason and headers["webhook-signature"].split(",")[1] not in reason


def test_a_secret_that_is_not_base64_is_a_config_error():
    with pytest.raises(ConfigError):
        standard_webhooks.signing_key("whsec_not base64 !!")
