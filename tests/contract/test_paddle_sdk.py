"""Paddle-Signature verification against paddle-python-sdk's own Verifier and PaddleSignature.

The SDK is a test-only oracle (requirements-dev.txt). Its wheel also installs a top-level `tests`
package into site-packages; tests/__init__.py makes this repository's `tests` a regular package so
that one cannot shadow it. The reference vector below runs even without the SDK.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from conversion_relay.providers import paddle
from conversion_relay.signatures import SignatureError

pytestmark = pytest.mark.contract

SECRET = "pdl_ntfset_test_secret"
OTHER = "pdl_ntfset_other_secret"
BODY = b'{"id":"evt_test","object":"event"}'


def test_reference_vector():
    # payment-webhooks.md section 10 (self-computed there; the SDK must agree, below).
    expected = "ts=1700000000;h1=bcb175cfc7199f65d8f16a6c9ab538d498a855e2da062c52e1d5790253b91967"
    assert paddle.signature_header(BODY, SECRET, 1700000000) == expected


def _sdk(header: str, body: bytes, secrets: list[str]) -> bool:
    notifications = pytest.importorskip("paddle_billing.Notifications")
    Secret, Verifier = notifications.Secret, notifications.Verifier
    request = SimpleNamespace(headers={"Paddle-Signature": header}, body=body)
    try:
        return Verifier(maximum_variance=300).verify(request, [Secret(s) for s in secrets])
    except ConnectionRefusedError:  # the SDK's way of saying "no secret matched" when given a list
        return False


def _ours(header: str, body: bytes, secrets: list[str]) -> bool:
    try:
        paddle.verify({"paddle-signature": header}, body, secrets, tolerance_seconds=300)
    except SignatureError:
        return False
    return True


def _sign(body: bytes, secret: str, ts: int) -> str:
    return paddle.signature_header(body, secret, ts)


def _cases() -> dict[str, tuple[str, bytes, list[str]]]:
    now = int(time.time())
    good = _sign(BODY, SECRET, now)
    other_h1 = _sign(BODY, OTHER, now).split(";")[1]
    return {
        "valid": (good, BODY, [SECRET]),
        "two-h1-second-matches": (f"ts={now};{other_h1};{good.split(';')[1]}", BODY, [SECRET]),
        "rotated-secrets-list": (good, BODY, [OTHER, SECRET]),
        "tampered-body": (good, BODY + b" ", [SECRET]),
        "wrong-secret": (good, BODY, [OTHER]),
        "stale": (_sign(BODY, SECRET, now - 3600), BODY, [SECRET]),
        "future": (_sign(BODY, SECRET, now + 3600), BODY, [SECRET]),
        "ts-changed": (good.replace(f"ts={now}", f"ts={now - 1}"), BODY, [SECRET]),
        "multibyte-body": (
            _sign('{"이름":"김민수"}'.encode(), SECRET, now),
            '{"이름":"김민수"}'.encode(),
            [SECRET],
        ),
    }


@pytest.mark.parametrize("case", sorted(_cases()))
def test_agrees_with_the_sdk(case):
    header, body, secrets = _cases()[case]
    assert _ours(header, body, secrets) == _sdk(header, body, secrets)


def test_the_valid_cases_really_pass():
    cases = _cases()
    assert all(_ours(*cases[name]) for name in ("valid", "two-h1-second-matches", "rotated-secrets-list"))
