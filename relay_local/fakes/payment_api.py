"""What the fake provider APIs the relay reads payments back from (PortOne, Toss) have in common:
a store of payments that tests fill with `put_payment`, and a record of each read it answered."""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from relay_local.fakes.base import FakeServer


class FakePaymentApi(FakeServer):
    id_field: ClassVar[str] = "id"  # the payment field the provider's API is keyed by

    def __init__(self, port: int = 0) -> None:
        super().__init__(port)
        self.payments: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []  # the reads it answered, for /_received
        self._payments_lock = threading.Lock()

    def put_payment(self, payment: dict[str, Any]) -> None:
        """Add or replace a payment, keyed by its `id_field`."""
        with self._payments_lock:
            self.payments[str(payment[self.id_field])] = payment

    def reset(self) -> None:
        super().reset()
        with self._payments_lock:
            self.payments.clear()
            self.events.clear()

    def read_payment(self, key: str) -> dict[str, Any] | None:
        """The payment under `key` (None when unknown); a successful read is recorded."""
        with self._payments_lock:
            payment = self.payments.get(key)
            if payment is not None:
                self.events.append({self.id_field: key, "status": payment.get("status")})
            return payment

    def summarize(self, event: dict[str, Any]) -> dict[str, Any]:
        return dict(event)
