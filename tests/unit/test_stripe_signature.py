import hashlib
import hmac

import pytest

from conversion_relay.config import ConfigError
from conversion_relay.providers import stripe
from conversion_relay.providers.stripe import PROVIDER, SignatureError, verify, webhook_secrets

SECRET = "whsec_test_secret"
OLD_SECRET = "whsec_old_secret_being_rolled"
BODY = b'{"id":"evt_test","object":"event"}'
T = 1700000000


def sign(body: bytes, secret: str, timestamp: int = T) -> str:
    return hmac.new(secret.encode(), b"%d." % timestamp + body, hashlib.sha256).hexdigest()


def headers(value: str) -> dict[str, str]:
    return {"stripe-signature": value, "content-type": "application/json"}


def test_reference_test_vector():
    # payment-webhooks.md section 10: whsec_test_secret, t=1700000000, {"id":"evt_test","object":"event"}
    assert sign(BODY, SECRET) == "8042376f6ca064adbe037642a718227dfd59047137eb49497a54c49eb0cfb724"
    verify(
        headers(f"t={T},v1=8042376f6ca064adbe037642a718227dfd59047137eb49497a54c49eb0cfb724"),
        BODY,
        [SECRET],
        now=T,
    )


def test_valid_signature_passes():
    assert verify(headers(f"t={T},v1={sign(BODY, SECRET)}"), BODY, [SECRET], now=T + 10) is None


def test_provider_object_delegates():
    PROVIDER.verify(headers(f"t={T},v1={sign(BODY, SECRET)}"), BODY, [SECRET], now=T)
    with pytest.raises(SignatureError):
        PROVIDER.verify(headers(f"t={T},v1={sign(BODY, OLD_SECRET)}"), BODY, [SECRET], now=T)


def test_multibyte_body_is_signed_as_utf8_bytes():
    body = '{"name":"김민수"}'.encode()
    verify(headers(f"t={T},v1={sign(body, SECRET)}"), body, [SECRET], now=T)


@pytest.mark.parametrize(
    ("header_value", "body", "secrets", "now", "reason"),
    [
        pytest.param(
            f"t={T},v1={sign(BODY, SECRET)}",
            BODY.replace(b"evt_test", b"evt_tset"),
            [SECRET],
            T,
            "signature does not match any configured webhook secret",
            id="tampered body",
        ),
        pytest.param(
            f"t={T},v1={sign(BODY, SECRET)}",
            BODY + b"\n",
            [SECRET],
            T,
            "signature does not match any configured webhook secret",
            id="re-serialised body (trailing newline)",
        ),
        pytest.param(
            f"t={T},v1={sign(BODY, 'whsec_wrong')}",
            BODY,
            [SECRET],
            T,
            "signature does not match any configured webhook secret",
            id="wrong secret",
        ),
        pytest.param(
            f"t={T + 1},v1={sign(BODY, SECRET)}",
            BODY,
            [SECRET],
            T,
            "signature does not match any configured webhook secret",
            id="timestamp changed after signing",
        ),
        pytest.param(
            f"t={T},v1={sign(BODY, SECRET).upper()}",
            BODY,
            [SECRET],
            T,
            "signature does not match any configured webhook secret",
            id="upper-case hex is not what Stripe sends",
        ),
        pytest.param(
            f"t={T},v1={sign(BODY, SECRET)}",
            BODY,
            [SECRET],
            T + 301,
            "timestamp outside the tolerance (301 s old, limit 300 s)",
            id="stale timestamp",
        ),
        pytest.param(
            f"t={T},v0={sign(BODY, SECRET)}",
            BODY,
            [SECRET],
            T,
            "no v1 signature in header",
            id="v0 only",
        ),
        pytest.param(f"t={T}", BODY, [SECRET], T, "no v1 signature in header", id="no signature at all"),
        pytest.param(
            f"v1={sign(BODY, SECRET)}", BODY, [SECRET], T, "malformed Stripe-Signature header", id="no t"
        ),
        pytest.param(
            f"t=yesterday,v1={sign(BODY, SECRET)}",
            BODY,
            [SECRET],
            T,
            "malformed Stripe-Signature header: t= is not an integer",
            id="t not an integer",
        ),
        pytest.param(
            f"t={T},v1",
            BODY,
            [SECRET],
            T,
            "malformed Stripe-Signature header: v1 has no value",
            id="v1 without =",
        ),
        pytest.param("garbage", BODY, [SECRET], T, "malformed Stripe-Signature header", id="garbage"),
        pytest.param(
            f"t={T}, v1={sign(BODY, SECRET)}",
            BODY,
            [SECRET],
            T,
            "no v1 signature in header",
            id="space after comma is not stripped (as in the SDK)",
        ),
        pytest.param(
            f"t={T},v1={sign(BODY, SECRET)}",
            BODY,
            ["", "  "],
            T,
            "no Stripe webhook secret configured",
            id="no usable secret",
        ),
    ],
)
def test_rejections(header_value, body, secrets, now, reason):
    with pytest.raises(SignatureError) as caught:
        verify(headers(header_value), body, secrets, now=now)
    assert caught.value.reason.startswith(reason)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("given", [{}, {"stripe-signature": ""}, {"content-type": "application/json"}])
def test_missing_header(given):
    with pytest.raises(SignatureError) as caught:
        verify(given, BODY, [SECRET], now=T)
    assert caught.value.reason == "missing Stripe-Signature header"


def test_header_name_is_matched_case_insensitively():
    verify({"Stripe-Signature": f"t={T},v1={sign(BODY, SECRET)}"}, BODY, [SECRET], now=T)


def test_reasons_never_echo_the_signature_or_secret():
    signature = sign(BODY, "whsec_wrong")
    with pytest.raises(SignatureError) as caught:
        verify(headers(f"t={T},v1={signature}"), BODY, [SECRET], now=T)
    assert signature not in str(caught.value)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("age", "passes"),
    [
        (0, True),
        (299, True),
        (300, True),
        (301, False),
        (-3600, True),
    ],  # future timestamps pass, as in the SDK
)
def test_tolerance_is_one_sided(age, passes):
    header_value = f"t={T},v1={sign(BODY, SECRET)}"
    if passes:
        verify(headers(header_value), BODY, [SECRET], tolerance_seconds=300, now=T + age)
    else:
        with pytest.raises(SignatureError, match="tolerance"):
            verify(headers(header_value), BODY, [SECRET], tolerance_seconds=300, now=T + age)


def test_zero_tolerance_disables_the_age_check():
    verify(headers(f"t={T},v1={sign(BODY, SECRET)}"), BODY, [SECRET], tolerance_seconds=0, now=T + 10**6)


def test_signature_is_checked_before_the_timestamp():
    # A stale AND forged header reports the forgery, like the SDK.
    with pytest.raises(SignatureError, match="does not match"):
        verify(headers(f"t={T},v1={sign(BODY, 'whsec_wrong')}"), BODY, [SECRET], now=T + 10**6)


def test_default_now_is_the_clock():
    with pytest.raises(SignatureError, match="tolerance"):
        verify(headers(f"t={T},v1={sign(BODY, SECRET)}"), BODY, [SECRET])  # 2023 is long past


def test_rotation_two_secrets_configured_header_with_two_v1():
    # While a secret is rolled Stripe signs with both; either configured secret accepts.
    value = f"t={T},v1={sign(BODY, SECRET)},v1={sign(BODY, OLD_SECRET)}"
    verify(headers(value), BODY, [SECRET, OLD_SECRET], now=T)
    verify(headers(value), BODY, [OLD_SECRET], now=T)
    verify(headers(value), BODY, ["whsec_other", SECRET], now=T)


def test_several_v1_only_the_second_matches():
    value = f"t={T},v1={sign(BODY, 'whsec_unknown')},v1={sign(BODY, SECRET)}"
    verify(headers(value), BODY, [SECRET], now=T)


def test_other_schemes_are_ignored_next_to_v1():
    value = f"t={T},v0=deadbeef,v1={sign(BODY, SECRET)},x=1"
    verify(headers(value), BODY, [SECRET], now=T)


def test_first_t_wins_as_in_the_sdk():
    verify(headers(f"t={T},t={T + 5},v1={sign(BODY, SECRET)}"), BODY, [SECRET], now=T)
    with pytest.raises(SignatureError, match="does not match"):
        verify(headers(f"t={T + 5},t={T},v1={sign(BODY, SECRET)}"), BODY, [SECRET], now=T)


def test_timestamp_is_signed_as_a_normalised_integer():
    # The SDK signs "%d." % int(t), so t=01700000000 verifies against the signature over "1700000000.".
    verify(headers(f"t=0{T},v1={sign(BODY, SECRET)}"), BODY, [SECRET], now=T)


def test_non_ascii_signature_is_a_mismatch_not_a_crash():
    with pytest.raises(SignatureError, match="does not match"):
        verify(headers(f"t={T},v1=é{sign(BODY, SECRET)[1:]}"), BODY, [SECRET], now=T)


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        ({"webhook_secrets": ["whsec_a", "whsec_b"]}, ("whsec_a", "whsec_b")),
        ({"webhook_secrets": "whsec_a"}, ("whsec_a",)),
    ],
)
def test_webhook_secrets(secret, expected):
    assert webhook_secrets(secret) == expected
    assert PROVIDER.webhook_secrets(secret) == expected


@pytest.mark.parametrize(
    "secret", [{}, {"webhook_secrets": []}, {"webhook_secrets": [""]}, {"webhook_secrets": [1]}, {"x": "y"}]
)
def test_webhook_secrets_misconfigured(secret):
    with pytest.raises(ConfigError, match="webhook_secrets"):
        webhook_secrets(secret)


def test_provider_metadata():
    assert PROVIDER.name == stripe.PROVIDER_NAME == "stripe"
    assert PROVIDER.signature_header == "stripe-signature"
    assert stripe.DEFAULT_TOLERANCE_SECONDS == 300
