"""A fake PortOne V2 REST API: GET /payments/{paymentId}, for the relay's read-back of thin webhooks.

Tests (and `make local`) register payments with `put_payment`; the fake answers as PortOne does:
401 UNAUTHORIZED without `Authorization: PortOne <the configured api secret>`, 404 PAYMENT_NOT_FOUND for
an id it does not hold, else the payment JSON. `fail_next` (FakeServer) simulates PortOne being down.
"""

from __future__ import annotations

from urllib.parse import unquote

from relay_local.fakes.base import Request, Response
from relay_local.fakes.payment_api import FakePaymentApi


class FakePortOne(FakePaymentApi):
    name = "portone-api"

    id_field = "id"

    def __init__(self, api_secret: str, port: int = 0) -> None:
        super().__init__(port)
        self.api_secret = api_secret

    def respond(self, request: Request) -> Response:
        if request.method != "GET" or not request.path.startswith("/payments/"):
            return Response(404, {"type": "NOT_FOUND", "message": "unknown route"})
        if request.headers.get("authorization") != f"PortOne {self.api_secret}":
            return Response(401, {"type": "UNAUTHORIZED", "message": "invalid API secret"})
        payment_id = unquote(request.path.removeprefix("/payments/"))
        payment = self.read_payment(payment_id)
        if payment is None:
            return Response(404, {"type": "PAYMENT_NOT_FOUND", "message": "결제 건이 존재하지 않는 경우"})
        return Response(200, payment)
