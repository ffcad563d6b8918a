"""A stand-in for Lambda's context object, and the one-at-a-time invoker the local stack calls handlers with.

Every handler runs in this one process. In Lambda each invocation has a sandbox to itself; here the
handlers share module-level singletons (the Powertools resolver's `current_event`, the Logger's
appended keys, the Metrics set in conversion_relay.observability), so two invocations running at
once would mix each other's state. `LambdaInvoker` runs them one at a time, which is also what a
single Lambda sandbox does.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from relay_local.template_settings import LOCAL_ACCOUNT_ID, LOCAL_REGION, FunctionSettings

log = logging.getLogger("relay_local")

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class LocalLambdaContext:
    """The attributes Powertools and our handlers read from `context` (awslambdaric's LambdaContext)."""

    function_name: str
    memory_limit_in_mb: int
    timeout_seconds: float
    region: str = LOCAL_REGION
    account_id: str = LOCAL_ACCOUNT_ID
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    identity: Any = None
    client_context: Any = None
    tenant_id: str | None = None
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds

    @classmethod
    def for_function(cls, function: FunctionSettings) -> LocalLambdaContext:
        return cls(function.logical_id, function.memory_size, float(function.timeout))

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/[{self.function_version}]{self.aws_request_id.replace('-', '')}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class LambdaInvoker:
    """Calls handlers one at a time with a fresh context, like one warm sandbox per function."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def invoke(self, function: FunctionSettings, handler: Handler, event: dict[str, Any]) -> Any:
        """The handler's result; its exception propagates (the caller decides what a crash means)."""
        with self._lock:
            context = LocalLambdaContext.for_function(function)
            started = time.monotonic()
            try:
                return handler(event, context)
            finally:
                elapsed = time.monotonic() - started
                _forget_unflushed_metrics()
                if elapsed > function.timeout:
                    # Lambda would have killed this invocation; locally it ran to the end.
                    log.warning(
                        "%s ran %.1f s, over its Timeout of %d s: Lambda would have stopped it",
                        function.logical_id,
                        elapsed,
                        function.timeout,
                    )


def _forget_unflushed_metrics() -> None:
    """With POWERTOOLS_METRICS_DISABLED, Powertools keeps the metric set instead of printing it, so it
    would grow across invocations (a sandbox would be recycled long before); clear it ourselves."""
    if os.environ.get("POWERTOOLS_METRICS_DISABLED", "").lower() not in ("1", "true", "yes", "on"):
        return
    try:
        from conversion_relay.observability import metrics
    except ImportError:  # pragma: no cover - the layer is always importable in this repository
        return
    metrics.provider.clear_metrics()
