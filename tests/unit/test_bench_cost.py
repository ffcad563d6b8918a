"""The cost model's arithmetic (bench/cost.py). Timings are never asserted; only the pricing maths is."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench import cost

PRICES = {
    "as_of": "2026-11-28",
    "region": "us-east-1",
    "prices": {
        "api_gateway_http_per_million_requests": {"price": 1.0},
        "lambda_per_million_requests": {"price": 0.2},
        "lambda_arm64_per_gb_second": {"price": 0.0000133334},
        "sqs_standard_per_million_requests": {"price": 0.4},
        "dynamodb_on_demand_per_million_write_units": {"price": 0.625},
        "dynamodb_on_demand_per_million_read_units": {"price": 0.125},
        "secrets_manager_per_10k_calls": {"price": 0.05},
        "cloudwatch_logs_ingest_per_gb": {"price": 0.5},
    },
}
QUIET = cost.Assumptions(
    webhooks=1_000_000,
    dynamodb_call_ms=0,
    sqs_call_ms=0,
    destination_latency_ms=0,
    platform_log_bytes_per_invocation=0,
    cold_start_fraction=0,
    warm_containers_per_function=0,
)


def ingest_profile(**overrides: float) -> cost.IngestProfile:
    values = {
        "memory_mb": 1024,
        "cpu_ms": 0.0,
        "dynamodb_calls": 0.0,
        "dynamodb_write_units": 0.0,
        "sqs_calls": 0.0,
        "sqs_billed_requests": 0.0,
        "log_bytes": 0.0,
        "init_ms": 0.0,
    }
    values.update(overrides)
    return cost.IngestProfile(**values)  # type: ignore[arg-type]


def consumer_profile(**overrides: object) -> cost.ConsumerProfile:
    values: dict[str, object] = {
        "name": "meta",
        "memory_mb": 1024,
        "batch_size": 10,
        "connections": 1,
        "events_per_request": 1.0,
        "cpu_ms_per_event": 0.0,
        "dynamodb_calls_per_event": 0.0,
        "dynamodb_calls_per_invocation": 0.0,
        "dynamodb_write_units_per_event": 0.0,
        "dynamodb_read_units_per_event": 0.0,
        "log_bytes_per_event": 0.0,
        "init_ms": 0.0,
    }
    values.update(overrides)
    return cost.ConsumerProfile(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("invocations", "duration_ms", "memory_mb", "expected"),
    [
        (1000, 10.0, 1024, 1000 * 0.010 * 1.0),
        (1000, 10.2, 1024, 1000 * 0.011 * 1.0),  # billed per started millisecond
        (1000, 0.1, 512, 1000 * 0.001 * 0.5),
        (0, 50.0, 512, 0.0),
    ],
)
def test_lambda_compute_bills_gb_seconds_rounded_up_to_the_millisecond(
    invocations: int, duration_ms: float, memory_mb: int, expected: float
) -> None:
    assert cost.lambda_compute(invocations, duration_ms, memory_mb, 1.0) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("memory_mb", "expected"), [(512, 1769 / 512), (1769, 1.0), (3008, 1.0), (128, 1769 / 128)]
)
def test_cpu_scale_is_one_vcpu_at_1769_mb_and_never_faster_than_one_core(
    memory_mb: int, expected: float
) -> None:
    assert cost.cpu_scale(memory_mb) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("messages", "batch", "expected"),
    [
        (100, 1, 200),  # a receive and a delete per message
        (100, 10, 20),
        (100, 25, 4 * 2 * 3),  # 25 messages need 3 receives and 3 deletes of at most 10
        (101, 100, 2 * 2 * 10),
    ],
)
def test_consumer_sqs_requests_count_receives_and_deletes_of_ten(
    messages: int, batch: int, expected: int
) -> None:
    assert cost.consumer_sqs_requests(messages, batch) == expected


def test_secret_calls_refresh_once_per_max_age_per_warm_container() -> None:
    assumptions = cost.Assumptions(
        month_seconds=3000, secret_max_age_seconds=300, warm_containers_per_function=2
    )
    assert cost.secret_calls(4, assumptions) == 4 * 2 * 10


def test_ingest_duration_adds_scaled_cpu_and_sequential_calls() -> None:
    profile = ingest_profile(memory_mb=512, cpu_ms=2.0, dynamodb_calls=2, sqs_calls=3)
    assumptions = cost.Assumptions(dynamodb_call_ms=5, sqs_call_ms=10)
    assert cost.ingest_duration_ms(profile, assumptions) == pytest.approx(2.0 * 1769 / 512 + 2 * 5 + 3 * 10)


@pytest.mark.parametrize(
    ("batch", "events_per_request", "connections", "rounds"),
    [(10, 1, 8, 2), (8, 1, 8, 1), (100, 1000, 1, 1), (1000, 1000, 1, 1), (25, 1, 1, 25)],
)
def test_consumer_duration_counts_round_trips_over_the_connections(
    batch: int, events_per_request: float, connections: int, rounds: int
) -> None:
    profile = consumer_profile(
        memory_mb=1769,
        events_per_request=events_per_request,
        connections=connections,
        cpu_ms_per_event=0.5,
        dynamodb_calls_per_event=1,
        dynamodb_calls_per_invocation=2,
    )
    assumptions = cost.Assumptions(dynamodb_call_ms=5, destination_latency_ms=50)
    expected = batch * 0.5 + (batch + 2) * 5 + rounds * 50
    assert cost.consumer_duration_ms(profile, batch, assumptions) == pytest.approx(expected)


def test_estimate_prices_each_component_and_the_total_is_their_sum() -> None:
    ingest = ingest_profile(
        cpu_ms=10.0, dynamodb_write_units=2, sqs_billed_requests=3, log_bytes=1000, memory_mb=1024
    )
    consumer = consumer_profile(
        batch_size=10, dynamodb_write_units_per_event=2, dynamodb_read_units_per_event=0.5
    )
    result = cost.estimate(ingest, [consumer], PRICES, QUIET, "spike")
    c = result.components
    assert c["API Gateway HTTP API"] == pytest.approx(1.0)
    assert result.invocations == {"ingest": 1_000_000, "meta": 100_000}
    assert c["Lambda requests"] == pytest.approx(1.1 * 0.2)
    # 10 ms of CPU at 1 GB (1769/1024 of a core's time: 17.3 ms, billed 18 ms), a million times: 18,000 GB-s
    assert c["Lambda compute: ingest"] == pytest.approx(18_000 * 0.0000133334)
    assert c["Lambda compute: meta"] == 0.0  # no CPU, no latency: 0 ms billed
    # ingest 3 per webhook + consumer 100,000 invocations x (1 receive + 1 delete)
    assert c["SQS requests"] == pytest.approx((3_000_000 + 200_000) * 0.4 / 1e6)
    assert c["DynamoDB writes"] == pytest.approx((2_000_000 + 2_000_000) * 0.625 / 1e6)
    assert c["DynamoDB reads"] == pytest.approx(500_000 * 0.125 / 1e6)
    assert c["Secrets Manager calls"] == 0.0
    assert c["CloudWatch Logs ingestion"] == pytest.approx(1e9 / 1e9 * 0.5)
    assert result.total == pytest.approx(sum(c.values()))


def test_trickle_invokes_the_consumer_once_per_message() -> None:
    consumer = consumer_profile(batch_size=100)
    spike = cost.estimate(ingest_profile(), [consumer], PRICES, QUIET, "spike")
    trickle = cost.estimate(ingest_profile(), [consumer], PRICES, QUIET, "trickle")
    assert spike.invocations["meta"] == 10_000
    assert trickle.invocations["meta"] == 1_000_000
    assert trickle.components["SQS requests"] > spike.components["SQS requests"]


def test_init_is_billed_for_the_cold_fraction_of_invocations() -> None:
    assumptions = cost.Assumptions(
        webhooks=1000,
        cold_start_fraction=0.5,
        dynamodb_call_ms=0,
        sqs_call_ms=0,
        warm_containers_per_function=0,
    )
    result = cost.estimate(ingest_profile(init_ms=1000, memory_mb=1024), [], PRICES, assumptions)
    assert result.components["Lambda INIT (cold starts)"] == pytest.approx(500 * 1.0 * 1.0 * 0.0000133334)


def test_unknown_scenario_is_refused() -> None:
    with pytest.raises(ValueError, match="spike or trickle"):
        cost.estimate(ingest_profile(), [], PRICES, QUIET, "peak")


def test_shipped_price_table_has_a_date_a_source_and_every_price_the_model_reads() -> None:
    prices = cost.load_prices()
    assert prices["as_of"]
    for name in PRICES["prices"]:
        entry = prices["prices"][name]
        assert entry["price"] > 0
        assert entry["source"].startswith("https://")
    for alternative in prices["hosted_alternatives"]:
        assert alternative["source"].startswith("https://")
    assert math.isfinite(
        cost.estimate(ingest_profile(), [consumer_profile()], prices, cost.Assumptions()).total
    )


def test_price_table_without_a_date_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({**PRICES, "as_of": ""}))
    with pytest.raises(ValueError, match="as_of"):
        cost.load_prices(path)


def test_template_settings_read_memory_and_batch_defaults(tmp_path: Path) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(
        "Parameters:\n"
        "  Ga4BatchSize:\n    Type: Number\n    Default: 25\n"
        "  MetaBatchSize:\n    Type: Number\n    Default: 100\n"
        "  AppsflyerBatchSize:\n    Type: Number\n    Default: 10\n"
        "Globals:\n  Function:\n    Runtime: python3.13\n    MemorySize: 512\n"
        "Resources:\n"
        "  IngestFunction:\n    Type: AWS::Serverless::Function\n    Properties:\n      MemorySize: 256\n"
        "  MetaFunction:\n    Type: AWS::Serverless::Function\n    Properties:\n      Timeout: 30\n"
    )
    settings = cost.template_settings(template)
    assert settings["ingest_memory_mb"] == 256
    assert settings["meta_memory_mb"] == 512
    assert settings["ga4_memory_mb"] == 512
    assert (settings["ga4_batch_size"], settings["meta_batch_size"], settings["appsflyer_batch_size"]) == (
        25,
        100,
        10,
    )
