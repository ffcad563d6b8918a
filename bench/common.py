"""Helpers every benchmark shares: paths, the machine description, medians, quiet output, result files."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LAYER = ROOT / "layers" / "shared"
BUILD = ROOT / "build" / "bench"
RESULTS = ROOT / "bench" / "results"
# Lambda's runtime is python3.13; measure with the same minor version (pyenv's build if present).
PYTHON313 = Path(os.environ.get("BENCH_PYTHON", "/root/.pyenv/versions/3.13.0/bin/python3.13"))

# What every function sees at import time in the template (values are placeholders: nothing is called).
FUNCTION_ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "POWERTOOLS_METRICS_NAMESPACE": "ConversionRelayBench",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    "POWERTOOLS_PARAMETERS_MAX_AGE": "300",
    "IDEMPOTENCY_TABLE": "bench-idempotency",
    "MAPPING_OVERRIDES": "",
}

# Logger and Metrics read their settings when conversion_relay.observability is first imported.
for _name, _value in FUNCTION_ENV.items():
    os.environ.setdefault(_name, _value)

if str(LAYER) not in sys.path:  # `python -m bench.x` from the repository root, without PYTHONPATH
    sys.path.insert(0, str(LAYER))


@dataclass
class LambdaContext:
    """The attributes Powertools reads from Lambda's context (relay_local's pulls in cfn-lint at import)."""

    function_name: str
    memory_limit_in_mb: int
    aws_request_id: str = "bench-request"
    function_version: str = "$LATEST"
    invoked_function_arn: str = ""
    log_group_name: str = "/aws/lambda/bench"
    log_stream_name: str = "bench"

    def __post_init__(self) -> None:
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def median(values: list[float]) -> float:
    return statistics.median(values)


def cpu_description() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return model


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_description(),
        "cores": os.cpu_count(),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
    }


class CountingSink:
    """A text stream that only counts what is written: log and EMF bytes, without printing them."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, text: str) -> int:
        self.bytes += len(text.encode("utf-8"))
        return len(text)

    def flush(self) -> None:
        return None

    def isatty(self) -> bool:
        return False


@contextmanager
def captured_output(sink: CountingSink) -> Iterator[CountingSink]:
    """Send Powertools' log lines and EMF metric blobs to `sink` (they would go to CloudWatch Logs)."""
    from conversion_relay.observability import logger

    handlers = [h for h in logger.handlers if hasattr(h, "setStream")]
    previous = [h.setStream(sink) for h in handlers]  # type: ignore[attr-defined]
    stdout = sys.stdout
    sys.stdout = sink  # type: ignore[assignment]
    try:
        yield sink
    finally:
        sys.stdout = stdout
        for handler, stream in zip(handlers, previous, strict=True):
            handler.setStream(stream)  # type: ignore[attr-defined]


def cpu_us_per_item(call: Callable[[Any], Any], items: list[Any]) -> float:
    """CPU microseconds per item of `call` over `items` (process time: other load does not count)."""
    start = time.process_time_ns()
    for item in items:
        call(item)
    return (time.process_time_ns() - start) / len(items) / 1000


def repeat_median(run: Callable[[], float], repeats: int) -> tuple[float, list[float]]:
    samples = [run() for _ in range(repeats)]
    return median(samples), samples


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def out_path(argv: list[str]) -> Path | None:
    """`--out FILE`: where a benchmark run as a subprocess leaves its numbers for bench.run."""
    if "--out" in argv:
        return Path(argv[argv.index("--out") + 1])
    return None
