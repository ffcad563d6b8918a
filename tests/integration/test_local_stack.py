"""The local stack itself: it follows template.yaml; its API and pollers act like API Gateway and Lambda."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from relay_local.stack import DrainTimeout, LocalRelay
from relay_local.template_settings import PROJECT_ROOT

pytestmark = pytest.mark.integration

DESTINATIONS = {"ga4": "Ga4", "meta": "Meta", "appsflyer": "Appsflyer"}
# The deployment contract (project brief): variables each component reads.
CONTRACT_VARIABLES = {
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
    "IDEMPOTENCY_TABLE",
    "MAPPING_OVERRIDES",
    "POWERTOOLS_PARAMETERS_MAX_AGE",
    "ENABLED_DESTINATIONS",
    "GA4_QUEUE_URL",
    "META_QUEUE_URL",
    "APPSFLYER_QUEUE_URL",
    "STRIPE_SECRET_NAME",
    "WEBHOOK_TOLERANCE_SECONDS",
    "MAX_BODY_BYTES",
    "GA4_SECRET_NAME",
    "GA4_DLQ_URL",
    "GA4_BASE_URL",
    "MAX_RECEIVE_COUNT",
    "META_SECRET_NAME",
    "META_DLQ_URL",
    "META_BASE_URL",
    "META_API_VERSION",
    "APPSFLYER_SECRET_NAME",
    "APPSFLYER_DLQ_URL",
    "APPSFLYER_BASE_URL",
}


# -- a second, independent reading of template.yaml (plain PyYAML, short tags kept as data) ------------------
class _TemplateLoader(yaml.SafeLoader):
    pass


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {suffix: value}


_TemplateLoader.add_multi_constructor("!", _tag)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return yaml.load((PROJECT_ROOT / "template.yaml").read_text("utf-8"), Loader=_TemplateLoader)


def _value(template: dict[str, Any], value: Any) -> Any:
    """A literal, or the Default of the Parameter a `!Ref` names."""
    if isinstance(value, dict) and "Ref" in value:
        return template["Parameters"][value["Ref"]]["Default"]
    return value


def _queue_attributes(relay: LocalRelay, url: str) -> dict[str, str]:
    return relay.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]


# -- template parity -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("destination", DESTINATIONS)
def test_queues_are_created_with_the_templates_attributes_and_redrive(
    relay: LocalRelay, template: dict[str, Any], destination: str
):
    prefix = DESTINATIONS[destination]
    queue = template["Resources"][f"{prefix}Queue"]["Properties"]
    dlq = template["Resources"][f"{prefix}DeadLetterQueue"]["Properties"]

    created = _queue_attributes(relay, relay.queue_urls[destination])
    created_dlq = _queue_attributes(relay, relay.dlq_urls[destination])

    assert int(created["VisibilityTimeout"]) == int(_value(template, queue["VisibilityTimeout"]))
    assert int(created["MessageRetentionPeriod"]) == int(_value(template, queue["MessageRetentionPeriod"]))
    assert int(created_dlq["MessageRetentionPeriod"]) == int(_value(template, dlq["MessageRetentionPeriod"]))
    redrive = json.loads(created["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == int(_value(template, queue["RedrivePolicy"]["maxReceiveCount"]))
    assert redrive["deadLetterTargetArn"] == created_dlq["QueueArn"]


@pytest.mark.parametrize("destination", DESTINATIONS)
def test_pollers_use_the_templates_event_source_and_function_settings(
    relay: LocalRelay, template: dict[str, Any], destination: str
):
    function = template["Resources"][f"{DESTINATIONS[destination]}Function"]["Properties"]
    event_source = function["Events"]["Queue"]["Properties"]
    timeout = function.get("Timeout", template["Globals"]["Function"].get("Timeout"))

    consumer = relay.event_sources[destination].consumer

    assert consumer.batch_size == int(_value(template, event_source["BatchSize"]))
    assert consumer.batching_window_seconds == int(
        _value(template, event_source["MaximumBatchingWindowInSeconds"])
    )
    assert consumer.maximum_concurrency == int(
        _value(template, event_source["ScalingConfig"]["MaximumConcurrency"])
    )
    assert consumer.function.timeout == int(_value(template, timeout))
    assert consumer.function_response_types == ("ReportBatchItemFailures",)
    assert relay.event_sources[destination].queue_url == relay.queue_urls[destination]


def test_environment_carries_the_contract_variables_with_the_templates_defaults(
    relay: LocalRelay, template: dict[str, Any]
):
    parameters = {name: spec.get("Default") for name, spec in template["Parameters"].items()}
    env = relay.environment

    assert set(env) >= CONTRACT_VARIABLES
    assert env["MAX_RECEIVE_COUNT"] == str(parameters["MaxReceiveCount"])
    assert env["WEBHOOK_TOLERANCE_SECONDS"] == str(parameters["WebhookToleranceSeconds"])
    assert env["META_API_VERSION"] == parameters["MetaApiVersion"]
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == parameters["MetricsNamespace"]
    ingest_env = template["Resources"]["IngestFunction"]["Properties"]["Environment"]["Variables"]
    assert env["MAX_BODY_BYTES"] == str(ingest_env["MAX_BODY_BYTES"])
    for name in DESTINATIONS:
        assert env[f"{name.upper()}_BASE_URL"] == relay.fakes[name].url
        assert env[f"{name.upper()}_BASE_URL"].startswith("http://127.0.0.1:")
        assert env[f"{name.upper()}_QUEUE_URL"] == relay.queue_urls[name]
        assert env[f"{name.upper()}_DLQ_URL"] == relay.dlq_urls[name]
        assert env[f"{name.upper()}_SECRET_NAME"] == parameters[f"{DESTINATIONS[name]}SecretName"]
    assert env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")


def test_table_and_secrets_exist_as_the_handlers_expect(relay: LocalRelay):
    dynamodb = relay._dynamodb
    table = dynamodb.describe_table(TableName=relay.environment["IDEMPOTENCY_TABLE"])["Table"]
    ttl = dynamodb.describe_time_to_live(TableName=relay.environment["IDEMPOTENCY_TABLE"])

    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert ttl["TimeToLiveDescription"]["AttributeName"] == "expiration"
    for component, name in relay.secret_names.items():
        stored = relay._secretsmanager.get_secret_value(SecretId=name)["SecretString"]
        assert json.loads(stored) == relay.secrets[component]


# -- the HTTP API --------------------------------------------------------------------------------------------
def test_health_answers_once_started(relay: LocalRelay):
    response = requests.get(f"{relay.api_url}/health", timeout=10)

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_api_builds_a_payload_v2_event_and_writes_the_handlers_answer_back(
    relay: LocalRelay, monkeypatch: pytest.MonkeyPatch
):
    seen: list[dict[str, Any]] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.append(event)
        assert context.get_remaining_time_in_millis() > 0
        return {
            "statusCode": 202,
            "headers": {"Content-Type": "application/json", "X-Probe": "yes"},
            "body": json.dumps({"ok": True}),
        }

    monkeypatch.setattr(relay.http_api, "handler", handler)
    binary = b"\xff\xfe not utf-8"

    response = requests.post(
        f"{relay.api_url}/webhooks/stripe?a=1&a=2&b=",
        data=binary,
        headers={"Stripe-Signature": "t=1,v1=abc", "X-Mixed-Case": "v"},
        timeout=10,
    )

    assert response.status_code == 202
    assert response.headers["X-Probe"] == "yes"
    assert response.json() == {"ok": True}
    [event] = seen
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /webhooks/{provider}"
    assert event["rawPath"] == "/webhooks/stripe"
    assert event["rawQueryString"] == "a=1&a=2&b="
    assert event["queryStringParameters"] == {"a": "1,2", "b": ""}
    assert event["pathParameters"] == {"provider": "stripe"}
    assert event["headers"]["stripe-signature"] == "t=1,v1=abc"
    assert event["headers"]["x-mixed-case"] == "v"
    assert all(name == name.lower() for name in event["headers"])
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == binary
    context = event["requestContext"]
    assert context["http"]["method"] == "POST"
    assert context["http"]["path"] == "/webhooks/stripe"
    assert context["http"]["sourceIp"] == "127.0.0.1"
    assert context["stage"] == "$default"
    assert context["requestId"]
    assert isinstance(context["timeEpoch"], int)


def test_api_passes_utf8_bodies_as_text_and_unmatched_routes_as_default(relay: LocalRelay, monkeypatch):
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(relay.http_api, "handler", lambda event, _: seen.append(event) or {"statusCode": 204})

    requests.post(f"{relay.api_url}/elsewhere", data='{"name": "김민수"}'.encode(), timeout=10)

    [event] = seen
    assert event["isBase64Encoded"] is False
    assert event["body"] == '{"name": "김민수"}'
    assert event["routeKey"] == "$default"
    assert "pathParameters" not in event


# -- the SQS event source mapping ----------------------------------------------------------------------------
def _send(relay: LocalRelay, destination: str, *bodies: str) -> None:
    for body in bodies:
        relay.sqs.send_message(
            QueueUrl=relay.queue_urls[destination],
            MessageBody=body,
            MessageAttributes={"event_id": {"DataType": "String", "StringValue": body}},
        )


def test_records_have_lambdas_sqs_event_shape(relay: LocalRelay, monkeypatch: pytest.MonkeyPatch):
    seen: list[dict[str, Any]] = []
    source = relay.event_sources["ga4"]
    monkeypatch.setattr(source, "handler", lambda event, _: seen.append(event) or {"batchItemFailures": []})
    _send(relay, "ga4", "one", "two")

    relay.drain()

    records = [record for event in seen for record in event["Records"]]
    assert sorted(record["body"] for record in records) == ["one", "two"]
    queue_arn = _queue_attributes(relay, relay.queue_urls["ga4"])["QueueArn"]
    for record in records:
        assert record["eventSource"] == "aws:sqs"
        assert record["eventSourceARN"] == queue_arn
        assert record["awsRegion"] == "us-east-1"
        assert record["messageId"] and record["receiptHandle"]
        assert record["attributes"]["ApproximateReceiveCount"] == "1"
        assert "SentTimestamp" in record["attributes"]
        assert record["messageAttributes"]["event_id"] == {
            "stringValue": record["body"],
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String",
        }
    assert relay.queue_depths()["ga4"] == 0


def test_only_the_reported_failures_are_redelivered(relay: LocalRelay, monkeypatch: pytest.MonkeyPatch):
    calls: list[str] = []

    def handler(event: dict[str, Any], _: Any) -> dict[str, Any]:
        failures = []
        for record in event["Records"]:
            calls.append(record["body"])
            if record["body"] == "flaky" and record["attributes"]["ApproximateReceiveCount"] == "1":
                failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}

    monkeypatch.setattr(relay.event_sources["meta"], "handler", handler)
    _send(relay, "meta", "fine", "flaky")

    relay.drain()

    assert sorted(calls) == ["fine", "flaky", "flaky"]
    assert relay.queue_depths()["meta"] == 0


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(RuntimeError("boom"), id="handler-raises"),
        pytest.param({"batchItemFailures": [{"itemIdentifier": "not-in-this-batch"}]}, id="unknown-id"),
        pytest.param({"batchItemFailures": [{"itemIdentifier": ""}]}, id="empty-id"),
    ],
)
def test_a_failed_invocation_retries_the_whole_batch_and_sqs_redrives_it(
    relay: LocalRelay, monkeypatch: pytest.MonkeyPatch, answer: Any
):
    """Without a reason from our code, SQS's redrive policy still moves the message after maxReceiveCount."""
    calls: list[str] = []

    def handler(event: dict[str, Any], _: Any) -> Any:
        calls.extend(record["body"] for record in event["Records"])
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(relay.event_sources["appsflyer"], "handler", handler)
    _send(relay, "appsflyer", "poison")

    relay.drain()

    max_receive_count = relay.settings.consumers["appsflyer"].max_receive_count
    assert calls == ["poison"] * max_receive_count
    [dead] = relay.dlq_messages("appsflyer")
    assert dead["body"] == "poison"
    assert "reason" not in dead["attributes"]  # moved by SQS, not written by the consumer
    assert relay.queue_depths()["appsflyer"] == 0


def test_drain_raises_when_a_failed_message_waits_out_the_visibility_timeout(
    relay: LocalRelay, monkeypatch: pytest.MonkeyPatch
):
    source = relay.event_sources["ga4"]
    monkeypatch.setattr(source, "fast_retries", False)
    monkeypatch.setattr(
        source,
        "handler",
        lambda event, _: {
            "batchItemFailures": [{"itemIdentifier": record["messageId"]} for record in event["Records"]]
        },
    )
    _send(relay, "ga4", "stuck")

    with pytest.raises(DrainTimeout):
        relay.drain(timeout_seconds=0.5)

    assert relay.queue_depths()["ga4"] == 1  # in flight until the template's visibility timeout


def test_reading_a_dlq_leaves_its_messages_in_place(relay: LocalRelay):
    url = relay.dlq_urls["meta"]
    for body in ("a", "b", "c"):
        relay.sqs.send_message(
            QueueUrl=url,
            MessageBody=body,
            MessageAttributes={"reason": {"DataType": "String", "StringValue": body}},
        )

    first = relay.dlq_messages("meta")
    second = relay.dlq_messages("meta")

    assert sorted(m["body"] for m in first) == ["a", "b", "c"]
    assert sorted(m["message_id"] for m in first) == sorted(m["message_id"] for m in second)
    assert all(m["attributes"]["reason"] == m["body"] for m in first)
    visible = _queue_attributes(relay, url)["ApproximateNumberOfMessages"]
    assert visible == "3"


def test_local_routes_show_what_fakes_accepted_and_what_is_dead_lettered(relay: LocalRelay):
    relay.sqs.send_message(
        QueueUrl=relay.dlq_urls["ga4"],
        MessageBody='{"person": {"email": "someone@example.com"}}',
        MessageAttributes={"reason": {"DataType": "String", "StringValue": "client_id: VALUE_REQUIRED"}},
    )

    received = requests.get(f"{relay.api_url}/_local/received/ga4", timeout=10).json()
    dead = requests.get(f"{relay.api_url}/_local/dlq/ga4", timeout=10)

    assert received["count"] == 0
    assert dead.json()["messages"] == [{"reason": "client_id: VALUE_REQUIRED"}]
    assert "someone@example.com" not in dead.text  # bodies carry personal data: not shown
    assert len(relay.fakes["ga4"].received) == 0


def test_handler_modules_are_the_repositorys_files(relay: LocalRelay):
    for name, module in relay.handlers.items():
        assert Path(module.__file__) == PROJECT_ROOT / "functions" / name / "app.py"
        assert module.__name__ == f"relay_fn_{name}"
