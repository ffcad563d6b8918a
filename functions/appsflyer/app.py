"""appsflyer consumer Lambda: SQS batch -> appsflyer -> partial batch response. The domain is in the layer."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from conversion_relay.delivery import consume
from conversion_relay.destinations.appsflyer import DEFAULT_MAX_WORKERS, AppsflyerDestination
from conversion_relay.http import new_session
from conversion_relay.observability import logger, metrics, tracer

# One pooled session per container, sized to the number of concurrent sends.
SESSION = new_session(pool_size=DEFAULT_MAX_WORKERS)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return consume(event, AppsflyerDestination.name, lambda: AppsflyerDestination.from_environment(SESSION))
