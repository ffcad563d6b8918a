"""Why the ingest refuses a webhook: each error maps to one HTTP status with a JSON reason."""

from __future__ import annotations


class WebhookRejected(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SignatureInvalid(WebhookRejected):
    """Bad or missing signature, unknown secret, stale timestamp: the provider may retry."""

    status = 401
    code = "invalid_signature"


class PayloadInvalid(WebhookRejected):
    status = 400
    code = "malformed_payload"


class PayloadTooLarge(WebhookRejected):
    status = 413
    code = "payload_too_large"


class UnknownProvider(WebhookRejected):
    status = 404
    code = "unknown_provider"


class DeliveryInProgress(WebhookRejected):
    """The same delivery is being processed right now by another request; the provider retries."""

    status = 409
    code = "delivery_in_progress"


class EnqueueFailed(WebhookRejected):
    """Not every message reached SQS: answer 5xx so the provider retries the whole delivery."""

    status = 503
    code = "enqueue_failed"
