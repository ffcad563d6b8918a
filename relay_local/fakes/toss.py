"""A fake Toss Payments API: GET /v1/payments/{paymentKey}, for the read-back of unsigned webhooks.

Tests register payments with `put_payment`; the fake answers as Toss does: 401 UNAUTHORIZED_KEY
unless `Authorization: Basic base64(<secret key> + ":")`, 404 NOT_FOUND_PAYMENT for an unknown
paymentKey, else the Payment object. `fail_next` (FakeServer) simulates Toss being down.
"""

from __future__ import annotations

import base64
from urllib.parse import unquote

from relay_local.fakes.base import Request, Response
from relay_local.fakes.payment_api import FakePaymentApi


class FakeToss(FakePaymentApi):
    name = "toss-api"

    id_field = "paymentKey"

    def __init__(self, secret_key: str, port: int = 0) -> None:
        super().__init__(port)
        self.secret_key = secret_key

    def respond(self, request: Request) -> Response:
        if request.method != "GET" or not request.path.startswith("/v1/payments/"):
            return Response(404, {"code": "NOT_FOUND", "message": "unknown route"})
        expected = "Basic " + base64.b64encode(f"{self.secret_key}:".encode()).decode("ascii")
        if request.headers.get("authorization") != expected:
            return Response(
                401,
                {"code": "UNAUTHORIZED_KEY", "message": "인증되지 않은 시크릿 키 혹은 클라이언트 키 입니다."},
            )
        payment_key = unquote(request.path.removeprefix("/v1/payments/"))
        payment = self.read_payment(payment_key)
        if payment is None:
            return Response(404, {"code": "NOT_FOUND_PAYMENT", "message": "존재하지 않는 결제 정보 입니다."})
        return Response(200, payment)
