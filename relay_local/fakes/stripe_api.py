"""A fake Stripe API: GET /v1/refunds?charge=..., for the relay's read-back of charge.refunded events.

Tests (and `make local`, when the local stripe secret has an "api_key") register charges and their
refunds with `put_refund`; the fake answers as Stripe does:
- 401 with Stripe's error envelope unless `Authorization: Bearer <the configured api key>`;
- 400 parameter_missing without `charge` (the relay always filters by charge), 400 for a bad `limit`;
- 404 resource_missing for a charge it does not know ("No such charge");
- else a list object `{"object": "list", "url": "/v1/refunds", "has_more", "data"}`, newest first
  (by created, then id descending), `limit` 1-100 (default 10), paged with `starting_after`.
`fail_next` (FakeServer) simulates Stripe being down.
"""

from __future__ import annotations

import threading
from typing import Any

from relay_local.fakes.base import FakeServer, Request, Response

_ROUTE = "/v1/refunds"


def _error(status: int, message: str, *, code: str | None = None, param: str | None = None) -> Response:
    error: dict[str, Any] = {"type": "invalid_request_error", "message": message}
    if code is not None:
        error["code"] = code
        error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    if param is not None:
        error["param"] = param
    return Response(status, {"error": error})


class FakeStripeApi(FakeServer):
    name = "stripe-api"

    def __init__(self, api_key: str, port: int = 0) -> None:
        super().__init__(port)
        self.api_key = api_key
        self.refunds: dict[str, list[dict[str, Any]]] = {}  # charge id -> its refunds
        self.events: list[dict[str, Any]] = []  # the list reads it answered, for /_received
        self._data_lock = threading.Lock()

    def put_charge(self, charge_id: str) -> None:
        """Make a charge known (with no refunds yet), so listing its refunds is not a 404."""
        with self._data_lock:
            self.refunds.setdefault(charge_id, [])

    def put_refund(self, refund: dict[str, Any]) -> None:
        """Add or replace a refund (keyed by `id`) of the charge its `charge` field names."""
        charge_id = str(refund["charge"])
        with self._data_lock:
            kept = [r for r in self.refunds.get(charge_id, []) if r["id"] != refund["id"]]
            self.refunds[charge_id] = [*kept, dict(refund)]

    def reset(self) -> None:
        super().reset()
        with self._data_lock:
            self.refunds.clear()
            self.events.clear()

    def respond(self, request: Request) -> Response:
        if request.method != "GET" or request.path != _ROUTE:
            return _error(404, f"Unrecognized request URL ({request.method}: {request.path}).")
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "Invalid API Key provided.")
        charge_id = (request.query.get("charge") or [""])[0]
        if not charge_id:
            return _error(400, "This fake lists refunds of one charge: pass charge.", param="charge")
        raw_limit = (request.query.get("limit") or ["10"])[0]
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 100:
            return _error(400, "Invalid integer: limit must be between 1 and 100.", param="limit")
        limit = int(raw_limit)
        after = (request.query.get("starting_after") or [None])[0]
        with self._data_lock:
            refunds = self.refunds.get(charge_id)
            if refunds is None:
                return _error(404, f"No such charge: '{charge_id}'", code="resource_missing", param="charge")
            ordered = sorted(refunds, key=lambda r: (r["created"], r["id"]), reverse=True)
            start = 0
            if after is not None:
                ids = [r["id"] for r in ordered]
                if after not in ids:
                    return _error(
                        400, f"No such refund: '{after}'", code="resource_missing", param="starting_after"
                    )
                start = ids.index(after) + 1
            page = ordered[start : start + limit]
            self.events.append({"charge": charge_id, "returned": len(page), "starting_after": after})
            return Response(
                200,
                {
                    "object": "list",
                    "url": _ROUTE,
                    "has_more": start + limit < len(ordered),
                    "data": page,
                },
            )

    def summarize(self, event: dict[str, Any]) -> dict[str, Any]:
        return dict(event)
