"""Ingest Lambda: POST /webhooks/{provider} and POST /events -> verify, map, dedupe, enqueue.

The domain is in the layer; this module only turns HTTP API events into ingest.receive calls and
WebhookRejected errors into JSON answers.
"""

from __future__ import annotations

import base64
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from conversion_relay import ingest
from conversion_relay.config import ConfigError, Settings
from conversion_relay.errors import WebhookRejected
from conversion_relay.observability import logger, metrics, tracer
from conversion_relay.providers import FIRST_PARTY, Provider, first_party_provider

app = APIGatewayHttpResolver()


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


def _raw_body() -> bytes:
    event = app.current_event
    body = event.get("body") or ""
    return base64.b64decode(body) if event.get("isBase64Encoded") else body.encode("utf-8")


def _source_ip() -> str | None:
    # The TCP peer API Gateway saw (not X-Forwarded-For, which the caller can write).
    return ((app.current_event.get("requestContext") or {}).get("http") or {}).get("sourceIp")


@app.post("/webhooks/<provider>")
def receive_webhook(provider: str) -> Response:
    return _receive(provider)


@app.post("/events")
def receive_events() -> Response:
    return _receive(FIRST_PARTY, first_party_provider())


def _receive(provider: str, handler: Provider | None = None) -> Response:
    try:
        result = ingest.receive(
            provider,
            app.current_event.headers or {},
            _raw_body(),
            Settings.from_env(),
            app.lambda_context,
            source_ip=_source_ip(),
            provider=handler,
        )
    except WebhookRejected as error:
        metrics.add_metric(f"WebhookRejected_{error.code}", "Count", 1)
        logger.warning(
            "webhook rejected", extra={"provider": provider, "status": error.status, "reason": error.reason}
        )
        body: dict[str, Any] = {"error": error.code, "reason": error.reason}
        errors = getattr(error, "errors", None)
        if errors:
            body["errors"] = errors  # first-party events: one {index, path, reason} per problem
        return _json(error.status, body)
    except ConfigError as error:
        logger.error("relay misconfigured", extra={"reason": str(error)})
        return _json(500, {"error": "misconfigured", "reason": str(error)})
    return _json(200, result.body())


@app.exception_handler(Exception)
def unexpected(error: Exception) -> Response:
    # A 5xx makes the provider retry; nothing was acknowledged, so nothing is lost.
    logger.exception("unexpected error while receiving a webhook")
    return _json(
        500,
        {
            "error": "internal_error",
            "reason": f"{error.__class__.__name__}; the provider will retry this delivery",
        },
    )


@app.not_found
def not_found(_: Exception) -> Response:
    routes = "POST /webhooks/{provider} and POST /events"
    return _json(404, {"error": "not_found", "reason": f"the routes are {routes}"})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
