"""Logger, Metrics and Tracer singletons shared by every module, so all log lines carry the same keys.

Every line the logger writes goes through redaction.RedactingFormatter (no raw email, phone, name,
IP, token or secret reaches a log line); the root logger's handlers get the same treatment for
lines from other libraries.

Tracing is on when the function's POWERTOOLS_TRACE_DISABLED is "false" (template parameter
Tracing=Active) and aws-xray-sdk is importable; otherwise `tracer` is a stand-in whose decorators
do nothing, so handlers can always be decorated and the X-Ray SDK (the largest import there is)
is not loaded when tracing is off.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from conversion_relay.redaction import RedactingFilter, RedactingFormatter, install_on_root_handlers

logger = Logger(log_uncaught_exceptions=True, logger_formatter=RedactingFormatter())
logger.addFilter(RedactingFilter())
metrics = Metrics()
install_on_root_handlers()


class _NoTracer:
    """The part of Powertools' Tracer the handlers use, doing nothing."""

    enabled = False

    def capture_lambda_handler(self, handler: Callable[..., Any] | None = None, **_: Any) -> Any:
        return handler if handler is not None else (lambda function: function)

    def capture_method(self, method: Callable[..., Any] | None = None, **_: Any) -> Any:
        return method if method is not None else (lambda function: function)

    def put_annotation(self, key: str, value: Any) -> None:
        pass


def tracing_enabled() -> bool:
    return os.environ.get("POWERTOOLS_TRACE_DISABLED", "true").strip().lower() in ("false", "0")


def _build_tracer() -> Any:
    if not tracing_enabled():
        return _NoTracer()
    try:
        from aws_lambda_powertools import Tracer
    except ImportError:  # aws-xray-sdk missing from the layer: keep working untraced
        return _NoTracer()
    try:
        return Tracer()
    except ModuleNotFoundError:
        logger.warning("tracing requested but aws-xray-sdk is not installed; running untraced")
        return _NoTracer()


tracer = _build_tracer()


def count_for(destination: str, name: str, value: float = 1, unit: str = MetricUnit.Count) -> None:
    """A metric with its own `destination` dimension, outside the invocation's metric set.

    For code that emits for several destinations at once (the ingest enqueues to each), where the
    shared Metrics object can carry only one dimension set.
    """
    with single_metric(
        name=name,
        unit=unit,
        value=value,
        namespace=metrics.namespace,
        default_dimensions={"service": metrics.service or "service_undefined"},
    ) as metric:
        metric.add_dimension(name="destination", value=destination)
