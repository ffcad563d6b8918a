"""AWS cost per million webhooks: a model in code, fed by the benchmark's measurements and bench/prices.json.

What is measured (this run) and what is assumed (ASSUMPTIONS, printed with every estimate):
- measured: CPU per webhook in the ingest handler and per event in each consumer; DynamoDB write/read
  units and calls, SQS requests, and log + EMF bytes, as counted by the in-memory stand-ins; requests
  per invocation at each destination; import time for INIT.
- assumed: how this machine's CPU maps to Lambda's (1,769 MB = one vCPU, so a CPU-bound step at 512 MB
  takes 1769/512 = 3.5x as long; a Graviton core taken as equal to this machine's core), the latency
  of each AWS call and of the destination, the Lambda platform's own log lines, the cold-start rate,
  and how many containers keep a cached secret.
Billed duration = ceil(ms) x memory GB x price; every AWS call in a function runs one after another.
Two scenarios: `spike` (every consumer invocation gets a full batch, the template's BatchSize) and
`trickle` (one message per invocation, the worst case for per-invocation costs).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

PRICES_PATH = Path(__file__).with_name("prices.json")
LAMBDA_VCPU_MB = 1769
SQS_BATCH = 10  # ReceiveMessage and DeleteMessageBatch both take at most 10 messages


@dataclass(frozen=True)
class Assumptions:
    webhooks: int = 1_000_000
    events_per_webhook: float = 1.0  # a checkout or an invoice payment maps to one conversion
    dynamodb_call_ms: float = 5.0  # in-region round trip, assumed
    sqs_call_ms: float = 10.0  # in-region round trip, assumed
    destination_latency_ms: float = 50.0  # the benchmark's fake; real APIs are often slower
    platform_log_bytes_per_invocation: int = 600  # Lambda's START/END/REPORT lines in JSON, assumed
    cold_start_fraction: float = 0.01  # AWS: INIT is "typically under 1 %" of invocations
    warm_containers_per_function: int = 1
    secret_max_age_seconds: int = 300  # POWERTOOLS_PARAMETERS_MAX_AGE in the template
    month_seconds: int = 30 * 24 * 3600


@dataclass(frozen=True)
class IngestProfile:
    memory_mb: int
    cpu_ms: float  # per webhook, whole handler
    dynamodb_calls: float  # sequential calls per webhook (idempotency put + update)
    dynamodb_write_units: float
    sqs_calls: float  # sequential SendMessageBatch calls per webhook (one per destination queue)
    sqs_billed_requests: float
    log_bytes: float
    init_ms: float


@dataclass(frozen=True)
class ConsumerProfile:
    name: str
    memory_mb: int
    batch_size: int  # the template's BatchSize
    connections: int  # requests the destination module keeps in flight at once
    events_per_request: float  # as measured at a full batch
    cpu_ms_per_event: float
    dynamodb_calls_per_event: float  # sequential (a claim is one PutItem per event)
    dynamodb_calls_per_invocation: float  # batch reads/writes that do not grow per event
    dynamodb_write_units_per_event: float
    dynamodb_read_units_per_event: float
    log_bytes_per_event: float
    init_ms: float
    sqs_extra_calls_per_invocation: float = 0.0  # DLQ / visibility changes (0 on the happy path)


@dataclass
class Estimate:
    scenario: str
    components: dict[str, float] = field(default_factory=dict)
    durations_ms: dict[str, float] = field(default_factory=dict)
    invocations: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.components.values())


def load_prices(path: Path = PRICES_PATH) -> dict[str, Any]:
    data = json.loads(path.read_text())
    if not data.get("as_of"):
        raise ValueError(f"{path} must say when its prices were read (as_of)")
    return data


def price(prices: dict[str, Any], name: str) -> float:
    return float(prices["prices"][name]["price"])


def cpu_scale(memory_mb: int) -> float:
    """How much longer a CPU-bound step takes in Lambda at this memory than on one full core."""
    return max(1.0, LAMBDA_VCPU_MB / memory_mb)


def lambda_compute(invocations: float, duration_ms: float, memory_mb: int, per_gb_second: float) -> float:
    """Lambda bills each invocation's duration rounded up to the millisecond."""
    return invocations * math.ceil(duration_ms) / 1000 * memory_mb / 1024 * per_gb_second


def ingest_duration_ms(ingest: IngestProfile, a: Assumptions) -> float:
    return (
        ingest.cpu_ms * cpu_scale(ingest.memory_mb)
        + ingest.dynamodb_calls * a.dynamodb_call_ms
        + ingest.sqs_calls * a.sqs_call_ms
    )


def consumer_duration_ms(consumer: ConsumerProfile, batch: int, a: Assumptions) -> float:
    requests = math.ceil(batch / max(1.0, consumer.events_per_request))
    rounds = math.ceil(requests / consumer.connections)
    dynamodb_calls = consumer.dynamodb_calls_per_event * batch + consumer.dynamodb_calls_per_invocation
    return (
        batch * consumer.cpu_ms_per_event * cpu_scale(consumer.memory_mb)
        + dynamodb_calls * a.dynamodb_call_ms
        + rounds * a.destination_latency_ms
        + consumer.sqs_extra_calls_per_invocation * a.sqs_call_ms
    )


def consumer_sqs_requests(messages: float, batch: int) -> float:
    """What the event source mapping asks SQS for: receives and deletes, at most 10 messages each."""
    invocations = math.ceil(messages / batch)
    return invocations * 2 * math.ceil(batch / SQS_BATCH)


def secret_calls(functions: int, a: Assumptions) -> float:
    """GetSecretValue calls after caching: each warm container refreshes once per max-age."""
    return functions * a.warm_containers_per_function * math.ceil(a.month_seconds / a.secret_max_age_seconds)


def estimate(
    ingest: IngestProfile,
    consumers: list[ConsumerProfile],
    prices: dict[str, Any],
    a: Assumptions,
    scenario: str = "spike",
) -> Estimate:
    if scenario not in ("spike", "trickle"):
        raise ValueError(f"unknown scenario {scenario!r}: spike or trickle")
    result = Estimate(scenario)
    gb_second = price(prices, "lambda_arm64_per_gb_second")
    webhooks = a.webhooks
    messages = webhooks * a.events_per_webhook  # per destination queue

    result.components["API Gateway HTTP API"] = (
        webhooks * price(prices, "api_gateway_http_per_million_requests") / 1e6
    )

    result.durations_ms["ingest"] = ingest_duration_ms(ingest, a)
    result.invocations["ingest"] = webhooks
    compute = {"ingest": lambda_compute(webhooks, result.durations_ms["ingest"], ingest.memory_mb, gb_second)}
    init = webhooks * a.cold_start_fraction * ingest.init_ms / 1000 * ingest.memory_mb / 1024 * gb_second
    sqs_requests = webhooks * ingest.sqs_billed_requests
    write_units = webhooks * ingest.dynamodb_write_units
    read_units = 0.0
    log_bytes = webhooks * (ingest.log_bytes + a.platform_log_bytes_per_invocation)
    for consumer in consumers:
        batch = consumer.batch_size if scenario == "spike" else 1
        invocations = math.ceil(messages / batch)
        duration = consumer_duration_ms(consumer, batch, a)
        result.durations_ms[consumer.name] = duration
        result.invocations[consumer.name] = invocations
        compute[consumer.name] = lambda_compute(invocations, duration, consumer.memory_mb, gb_second)
        init += (
            invocations
            * a.cold_start_fraction
            * consumer.init_ms
            / 1000
            * consumer.memory_mb
            / 1024
            * gb_second
        )
        sqs_requests += (
            consumer_sqs_requests(messages, batch) + invocations * consumer.sqs_extra_calls_per_invocation
        )
        write_units += messages * consumer.dynamodb_write_units_per_event
        read_units += messages * consumer.dynamodb_read_units_per_event
        log_bytes += (
            messages * consumer.log_bytes_per_event + invocations * a.platform_log_bytes_per_invocation
        )

    total_invocations = sum(result.invocations.values())
    result.components["Lambda requests"] = (
        total_invocations * price(prices, "lambda_per_million_requests") / 1e6
    )
    for name, dollars in compute.items():
        result.components[f"Lambda compute: {name}"] = dollars
    result.components["Lambda INIT (cold starts)"] = init
    result.components["SQS requests"] = (
        sqs_requests * price(prices, "sqs_standard_per_million_requests") / 1e6
    )
    result.components["DynamoDB writes"] = (
        write_units * price(prices, "dynamodb_on_demand_per_million_write_units") / 1e6
    )
    result.components["DynamoDB reads"] = (
        read_units * price(prices, "dynamodb_on_demand_per_million_read_units") / 1e6
    )
    result.components["Secrets Manager calls"] = (
        secret_calls(1 + len(consumers), a) * price(prices, "secrets_manager_per_10k_calls") / 1e4
    )
    result.components["CloudWatch Logs ingestion"] = (
        log_bytes / 1e9 * price(prices, "cloudwatch_logs_ingest_per_gb")
    )
    return result


# -- wiring from the benchmark's results and the template ----------------------------------------------


def template_settings(template: Path) -> dict[str, int]:
    """Function MemorySize (Globals unless a function overrides it) and the BatchSize parameter defaults."""
    text = template.read_text()
    settings: dict[str, int] = {}
    globals_match = re.search(r"^Globals:\n(?:[ \t].*\n|\n)*?\s+MemorySize:\s*(\d+)", text, re.M)
    default_memory = int(globals_match.group(1)) if globals_match else 128
    for logical, name in (
        ("IngestFunction", "ingest"),
        ("Ga4Function", "ga4"),
        ("MetaFunction", "meta"),
        ("AppsflyerFunction", "appsflyer"),
    ):
        block = re.search(rf"^  {logical}:\n((?:    .*\n|\n)*)", text, re.M)
        memory = re.search(r"^      MemorySize:\s*(\d+)", block.group(1), re.M) if block else None
        settings[f"{name}_memory_mb"] = int(memory.group(1)) if memory else default_memory
    for parameter, name in (
        ("Ga4BatchSize", "ga4"),
        ("MetaBatchSize", "meta"),
        ("AppsflyerBatchSize", "appsflyer"),
    ):
        match = re.search(rf"^  {parameter}:\n(?:    .*\n)*?    Default:\s*(\d+)", text, re.M)
        settings[f"{name}_batch_size"] = int(match.group(1)) if match else 10
    return settings


def profiles_from_results(
    results: dict[str, Any], settings: dict[str, int]
) -> tuple[IngestProfile, list[ConsumerProfile]]:
    ingest = results["ingest"]
    cold = results["cold_start"]["functions"]
    ingest_profile = IngestProfile(
        memory_mb=settings["ingest_memory_mb"],
        cpu_ms=ingest["handler_us"] / 1000,
        dynamodb_calls=ingest["dynamodb_writes_per_webhook"],
        dynamodb_write_units=ingest["dynamodb_writes_per_webhook"],
        sqs_calls=ingest["sqs_requests_per_webhook"],
        sqs_billed_requests=ingest["sqs_requests_per_webhook"],
        log_bytes=ingest["log_bytes_per_webhook"],
        init_ms=cold["ingest"]["hashpyc_wall_ms"],
    )
    consumers = []
    for name in ("ga4", "meta", "appsflyer"):
        batch = settings[f"{name}_batch_size"]
        runs = [s for s in results["consumers"]["scenarios"] if s["destination"] == name]
        run = min(runs, key=lambda s: abs(s["batch"] - batch))  # the template's batch size was measured
        per_event_calls = max(0.0, (run["dynamodb_calls_per_invocation"] - 1) / run["batch"])
        consumers.append(
            ConsumerProfile(
                name=name,
                memory_mb=settings[f"{name}_memory_mb"],
                batch_size=batch,
                connections=run["connections"],
                events_per_request=run["events_per_request"],
                cpu_ms_per_event=run["cpu_ms_per_event"],
                dynamodb_calls_per_event=per_event_calls,
                dynamodb_calls_per_invocation=run["dynamodb_calls_per_invocation"]
                - per_event_calls * run["batch"],
                dynamodb_write_units_per_event=run["dynamodb_write_units_per_event"],
                dynamodb_read_units_per_event=run["dynamodb_read_units_per_event"],
                log_bytes_per_event=run["log_bytes_per_event"],
                init_ms=cold[name]["hashpyc_wall_ms"],
                sqs_extra_calls_per_invocation=run["sqs_requests_per_invocation"],
            )
        )
    return ingest_profile, consumers


def run(results: dict[str, Any], template: Path, prices: dict[str, Any] | None = None) -> dict[str, Any]:
    prices = prices or load_prices()
    settings = template_settings(template)
    ingest, consumers = profiles_from_results(results, settings)
    latency = results["consumers"]["latency_s"] * 1000
    assumptions = replace(Assumptions(), destination_latency_ms=latency)
    estimates = {s: estimate(ingest, consumers, prices, assumptions, s) for s in ("spike", "trickle")}
    return {
        "prices_as_of": prices["as_of"],
        "region": prices["region"],
        "settings": settings,
        "assumptions": assumptions.__dict__,
        "estimates": {
            name: {
                "components": e.components,
                "total": e.total,
                "durations_ms": e.durations_ms,
                "invocations": e.invocations,
            }
            for name, e in estimates.items()
        },
        "hosted_alternatives": prices.get("hosted_alternatives", []),
    }
