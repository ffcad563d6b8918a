"""ga4 consumer Lambda: SQS batch -> ga4 -> partial batch response. The domain is in the layer."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from conversion_relay.delivery import consume
from conversion_relay.destinations.ga4 import Ga4Destination
from conversion_relay.http import new_session
from conversion_relay.observability import logger, metrics, tracer

# One pooled session per container, reused across invocations.
SESSION = new_session()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return consume(event, Ga4Destination.name, lambda: Ga4Destination.from_environment(SESSION))
