"""Logger and Metrics singletons shared by every module, so all log lines carry the same keys."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics

logger = Logger(log_uncaught_exceptions=True)
metrics = Metrics()
