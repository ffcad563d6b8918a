"""Consumer throughput per invocation against a fake destination with fixed latency, beside the network limit.

Each destination runs in its own process (fresh module state, as each is its own Lambda) and calls
its real handler (functions/<dest>/app.py -> delivery.consume -> delivery.process_batch) on SQS
batches of fresh canonical events; boto3's DynamoDB and SQS clients are in-memory stand-ins
(bench.aws_stubs) and the destination is its relay_local fake in another process, answering after
`LATENCY_SECONDS`.

Network limit: the fastest an invocation could go if our code took no time, given the requests it
made (counted at the fake) and the connections the destination uses at once:
    limit events/s = events / (ceil(requests / connections) * latency)
GA4 sends one request per user over SEND_CONCURRENCY connections, Meta one request per up to 1,000
events, AppsFlyer one request per event over DEFAULT_MAX_WORKERS connections (and a 150/s token
bucket).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from typing import Any

from bench import common

LATENCY_SECONDS = 0.05
# (destination, batch size, label, timed invocations): the template's default BatchSize for each, plus a
# deep queue (one timed invocation: a 1,000-event Meta batch takes long enough to be its own median).
SCENARIOS: tuple[tuple[str, int, str, int], ...] = (
    ("ga4", 25, "template BatchSize", 5),
    ("meta", 100, "template BatchSize", 5),
    ("meta", 1000, "deep queue, BatchSize max", 1),
    ("appsflyer", 10, "template BatchSize", 5),
    ("appsflyer", 100, "deep queue", 2),
)
CREDENTIALS: dict[str, dict[str, str]] = {
    "ga4": {"measurement_id": "G-FAKE000001", "api_secret": "fake-ga4-api-secret"},
    "meta": {"pixel_id": "123456789012345", "access_token": "test-meta-token"},
    "appsflyer": {"bundle_id": "test-bundle", "web_dev_key": "test-web-dev-key"},
}


class FakeProcess:
    def __init__(self, destination: str, latency: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.fake_server", destination, str(latency)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=common.ROOT,
            env={**os.environ, "PYTHONPATH": f"{common.LAYER}{os.pathsep}{common.ROOT}"},
        )
        assert self.process.stdout and self.process.stdin
        self.url = self.process.stdout.readline().strip()
        if not self.url.startswith("http://"):
            raise RuntimeError(f"fake {destination} did not start")

    def command(self, line: str) -> dict[str, Any]:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        assert self.process.stdin
        self.process.stdin.close()
        self.process.wait(timeout=10)


def _connections(destination: str) -> int:
    if destination == "appsflyer":
        from conversion_relay.destinations.appsflyer import DEFAULT_MAX_WORKERS

        return DEFAULT_MAX_WORKERS
    if destination == "ga4":
        from conversion_relay.destinations.ga4 import SEND_CONCURRENCY

        return SEND_CONCURRENCY
    return 1


def measure_one(destination: str, batch: int, repeats: int) -> dict[str, Any]:
    """Runs in the destination's own process (see main)."""
    from bench import aws_stubs, fixtures
    from bench.ingest_overhead import load_handler

    fake = FakeProcess(destination, LATENCY_SECONDS)
    prefix = destination.upper()
    os.environ.update(
        {
            "POWERTOOLS_SERVICE_NAME": destination,
            f"{prefix}_BASE_URL": fake.url,
            f"{prefix}_SECRET_NAME": f"bench/{destination}",
            f"{prefix}_DLQ_URL": f"https://sqs.us-east-1.amazonaws.com/123456789012/{destination}-dlq",
            f"{prefix}_QUEUE_URL": f"https://sqs.us-east-1.amazonaws.com/123456789012/{destination}",
            "MAX_RECEIVE_COUNT": "5",
            # RetryPolicy's defaults, spelled out: nothing is retried here, but the policy is built.
            "RETRY_BASE_SECONDS": os.environ.get("RETRY_BASE_SECONDS", "30"),
            "RETRY_CAP_SECONDS": os.environ.get("RETRY_CAP_SECONDS", "900"),
            "RETRY_LIMIT_SECONDS": os.environ.get("RETRY_LIMIT_SECONDS", "43200"),
        }
    )
    stubs = aws_stubs.install()
    app = load_handler(destination)
    for module in list(sys.modules.values()):  # secrets are cached per container in Lambda
        if getattr(module, "__name__", "").startswith("conversion_relay") and hasattr(module, "get_secret"):
            module.get_secret = lambda component, **_: dict(CREDENTIALS[component])

    context = common.LambdaContext(f"bench-{destination}", 512)
    sink = common.CountingSink()
    walls: list[float] = []
    cpus: list[float] = []
    offset = 0
    try:
        with common.captured_output(sink):
            for attempt in range(repeats + 1):  # the first (one event) opens the connections, not counted
                size = batch if attempt else 1
                event = fixtures.sqs_event(fixtures.canonical_events(size, offset))
                offset += size
                if attempt == 1:
                    fake.command("reset")
                    sink.bytes = 0
                    ddb_units = (stubs.dynamodb.write_units, stubs.dynamodb.read_units, stubs.dynamodb.calls)
                    sqs_before = stubs.sqs.billed_requests
                cpu, wall = time.process_time(), time.perf_counter()
                response = app.handler(event, context)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                failures = response.get("batchItemFailures", [])
                if failures:
                    raise AssertionError(
                        f"{destination}: {len(failures)} of {size} events were not delivered"
                    )
                if attempt:
                    walls.append(wall)
                    cpus.append(cpu)
        stats = fake.command("stats")
    finally:
        fake.close()
    events = batch * repeats
    if stats["events"] != events:
        raise AssertionError(f"{destination}: the fake accepted {stats['events']} events, expected {events}")
    requests_per_invocation = stats["requests"] / repeats
    connections = _connections(destination)
    wall = common.median(walls)
    limit = batch / (math.ceil(requests_per_invocation / connections) * LATENCY_SECONDS)
    return {
        "destination": destination,
        "batch": batch,
        "repeats": repeats,
        "latency_s": LATENCY_SECONDS,
        "connections": connections,
        "requests_per_invocation": requests_per_invocation,
        "events_per_request": batch / requests_per_invocation,
        "wall_s": wall,
        "events_per_s": batch / wall,
        "network_limit_events_per_s": limit,
        "ratio_to_limit": (batch / wall) / limit,
        "cpu_ms_per_event": common.median(cpus) / batch * 1000,
        "dynamodb_write_units_per_event": (stubs.dynamodb.write_units - ddb_units[0]) / events,
        "dynamodb_read_units_per_event": (stubs.dynamodb.read_units - ddb_units[1]) / events,
        "dynamodb_calls_per_invocation": (stubs.dynamodb.calls - ddb_units[2]) / repeats,
        "sqs_requests_per_invocation": (stubs.sqs.billed_requests - sqs_before) / repeats,
        "log_bytes_per_event": sink.bytes / events,
    }


def run() -> dict[str, Any]:
    scenarios = []
    for destination, batch, label, repeats in SCENARIOS:
        out = common.BUILD / f"consumer-{destination}-{batch}.json"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.consumer_throughput",
                "--one",
                destination,
                str(batch),
                str(repeats),
                "--out",
                str(out),
            ],
            check=True,
            cwd=common.ROOT,
            env={**os.environ, "PYTHONPATH": f"{common.LAYER}{os.pathsep}{common.ROOT}"},
        )
        result = common.read_json(out)
        result["label"] = label
        scenarios.append(result)
    return {"latency_s": LATENCY_SECONDS, "scenarios": scenarios}


def _line(s: dict[str, Any]) -> str:
    return (
        f"{s['destination']:>9} batch {s['batch']:>4}: {s['events_per_s']:7.1f} events/s, limit "
        f"{s['network_limit_events_per_s']:7.1f} (ratio {s['ratio_to_limit']:.2f}); "
        f"{s['events_per_request']:.0f} events/request, {s['cpu_ms_per_event']:.2f} ms CPU/event"
    )


def main() -> None:
    if "--one" in sys.argv:
        index = sys.argv.index("--one")
        destination, batch, repeats = sys.argv[index + 1], int(sys.argv[index + 2]), int(sys.argv[index + 3])
        result = measure_one(destination, batch, repeats)
        target = common.out_path(sys.argv)
        if target:
            common.write_json(target, result)
        return
    result = run()
    target = common.out_path(sys.argv)
    if target:
        common.write_json(target, result)
    for scenario in result["scenarios"]:
        print("consumer:", _line(scenario))


if __name__ == "__main__":
    main()
