"""A fake PortOne V2 REST API: GET /payments/{paymentId}, for the relay's read-back of thin webhooks.

Tests (and `make local`) register payments with `put_payment`; the fake answers as PortOne does:
401 UNAUTHORIZED without `Authorization: PortOne <the configured api secret>`, 404 PAYMENT_NOT_FOUND for
an id it does not hold, else the payment JSON. `fail_next` (FakeServer) simulates PortOne being down.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import unquote

from relay_local.fakes.base import FakeServer, Request, Response


class FakePortOne(FakeServer):
    name = "portone-api"

    def __init__(self, api_secret: str, port: int = 0) -> None:
        super().__init__(port)
        self.api_secret = api_secret
        self.payments: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []  # the reads it answered, for /_received
        self._payments_lock = threading.Lock()

    def put_payment(self, payment: dict[str, Any]) -> None:
        """Add or replace a payment (keyed by its `id`, the merchant's paymentId)."""
        with self._payments_lock:
            self.payments[str(payment["id"])] = payment

    def reset(self) -> None:
        super().reset()
        with self._payments_lock:
            self.payments.clear()
            self.events.clear()

    def respond(self, request: Request) -> Response:
        if request.method != "GET" or not request.path.startswith("/payments/"):
            return Response(404, {"type": "NOT_FOUND", "message": "unknown route"})
        if request.headers.get("authorization") != f"PortOne {self.api_secret}":
            return Response(401, {"type": "UNAUTHORIZED", "message": "invalid API secret"})
        payment_id = unquote(request.path.removeprefix("/payments/"))
        with self._payments_lock:
            payment = self.payments.get(payment_id)
            if payment is None:
                return Response(404, {"type": "PAYMENT_NOT_FOUND", "message": "결제 건이 존재하지 않는 경우"})
            self.events.append({"payment_id": payment_id, "status": payment.get("status")})
            return Response(200, payment)

    def summarize(self, event: dict[str, Any]) -> dict[str, Any]:
        return dict(event)
