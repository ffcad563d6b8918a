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


class SourceNotAllowed(WebhookRejected):
    """The request came from an address outside the provider's configured allow-list."""

    status = 403
    code = "source_not_allowed"


class ObjectNotFound(WebhookRejected):
    """The provider's API does not know the object the webhook names: nothing is enqueued.

    Usually a test-mode webhook reaching a relay configured with live credentials (or the reverse),
    or a forged request naming a made-up payment.
    """

    status = 404
    code = "object_not_found"


class ProviderUnavailable(WebhookRejected):
    """The provider's API could not be read (down, timed out, throttled): answer 5xx so it retries."""

    status = 503
    code = "provider_unavailable"


class EventsInvalid(PayloadInvalid):
    """First-party events failed validation; `errors` lists each one as {"index", "path", "reason"}."""

    code = "invalid_events"

    def __init__(self, reason: str, errors: list[dict[str, object]]) -> None:
        super().__init__(reason)
        self.errors = errors
