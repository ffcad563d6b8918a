"""`relay` against a moto server: stack outputs -> queue URLs, DLQ listing, redacted show, replay."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import boto3
import pytest
from moto.server import ThreadedMotoServer

from conversion_relay.model import Context, ConversionEvent, Person, Source
from relay_cli.main import main

pytestmark = pytest.mark.integration

EMAIL = "cli.canary.4410@example.org"
PREFIXES = {"ga4": "Ga4", "meta": "Meta", "appsflyer": "Appsflyer"}
TEMPLATE = {
    "Resources": {
        **{f"{p}Queue": {"Type": "AWS::SQS::Queue", "Properties": {}} for p in PREFIXES.values()},
        **{f"{p}DeadLetterQueue": {"Type": "AWS::SQS::Queue", "Properties": {}} for p in PREFIXES.values()},
    },
    "Outputs": {
        **{f"{p}QueueUrl": {"Value": {"Ref": f"{p}Queue"}} for p in PREFIXES.values()},
        **{f"{p}DeadLetterQueueUrl": {"Value": {"Ref": f"{p}DeadLetterQueue"}} for p in PREFIXES.values()},
    },
}


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(monkeypatch, moto_endpoint):
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    import requests

    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10).raise_for_status()
    cloudformation = boto3.client("cloudformation", endpoint_url=moto_endpoint)
    cloudformation.create_stack(StackName="relay-test", TemplateBody=json.dumps(TEMPLATE))
    outputs = {
        o["OutputKey"]: o["OutputValue"]
        for o in cloudformation.describe_stacks(StackName="relay-test")["Stacks"][0]["Outputs"]
    }
    return boto3.client("sqs", endpoint_url=moto_endpoint), outputs


def body(event_id: str) -> str:
    return ConversionEvent(
        event_id=event_id,
        name="purchase",
        occurred_at=datetime.now(UTC),
        source=Source("stripe", f"evt_{event_id}", "checkout.session.completed", f"cs_{event_id}"),
        value=Decimal("10"),
        currency="USD",
        transaction_id=f"pi_{event_id}",
        person=Person(email=EMAIL, first_name="Clifirst"),
        context=Context(ga_client_id="123.456", client_ip="198.51.100.44"),
    ).to_json()


def dead_letter(sqs, url: str, event_id: str, failure: str, reason: str) -> None:
    attributes = {"failure": failure, "reason": reason, "event_id": event_id, "destination": "ga4"}
    sqs.send_message(
        QueueUrl=url,
        MessageBody=body(event_id),
        MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
    )


def relay(moto_endpoint: str, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["--stack-name", "relay-test", "--endpoint-url", moto_endpoint, *args], out=out)
    return code, out.getvalue()


def count(sqs, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return sum(int(v) for v in attributes.values())


def test_dlq_list_counts_by_failure_and_reason_and_leaves_messages_in_place(aws, moto_endpoint):
    sqs, outputs = aws
    dlq = outputs["Ga4DeadLetterQueueUrl"]
    for i in range(3):
        dead_letter(sqs, dlq, f"e{i}", "expired", "acceptance window closed at X; last failure: HTTP 500")
    dead_letter(sqs, dlq, "e9", "rejected", "client_id: is required")
    code, text = relay(moto_endpoint, "dlq", "list", "--destination", "ga4")
    assert code == 0
    assert "ga4: 4 message(s)" in text
    assert "3  expired" in text and "1  rejected" in text
    assert count(sqs, dlq) == 4


def test_dlq_show_redacts_the_customer(aws, moto_endpoint):
    sqs, outputs = aws
    dead_letter(sqs, outputs["MetaDeadLetterQueueUrl"], "e1", "rejected", "user_data: nothing to match")
    code, text = relay(moto_endpoint, "dlq", "show", "--destination", "meta")
    assert code == 0
    shown = json.loads(text)
    assert shown["attributes"]["failure"] == "rejected"
    assert EMAIL not in text and "Clifirst" not in text and "198.51.100.44" not in text
    assert shown["body"]["event_id"] == "e1"


def test_replay_moves_only_matching_messages_and_deletes_after_sending(aws, moto_endpoint):
    sqs, outputs = aws
    dlq, queue = outputs["Ga4DeadLetterQueueUrl"], outputs["Ga4QueueUrl"]
    dead_letter(sqs, dlq, "e1", "expired", "acceptance window closed")
    dead_letter(sqs, dlq, "e2", "rejected", "client_id: is required")
    dead_letter(sqs, dlq, "e3", "expired", "acceptance window closed")
    code, text = relay(moto_endpoint, "replay", "--destination", "ga4", "--reason", "expired", "--limit", "1")
    assert code == 0, text
    assert "replayed 1" in text
    assert count(sqs, queue) == 1 and count(sqs, dlq) == 2
    moved = sqs.receive_message(QueueUrl=queue, MessageAttributeNames=["All"])["Messages"][0]
    assert json.loads(moved["Body"])["event_id"] in {"e1", "e3"}
    assert moved["MessageAttributes"]["event_id"]["StringValue"] == json.loads(moved["Body"])["event_id"]


def test_replay_dry_run_prints_the_payload_and_moves_nothing(aws, moto_endpoint):
    sqs, outputs = aws
    dlq, queue = outputs["Ga4DeadLetterQueueUrl"], outputs["Ga4QueueUrl"]
    dead_letter(sqs, dlq, "e1", "rejected", "HTTP 500")
    code, text = relay(moto_endpoint, "replay", "--destination", "ga4", "--dry-run")
    assert code == 0, text
    assert "would replay 1" in text
    assert '"client_id": "123.456"' in text  # the payload GA4 would receive
    assert count(sqs, dlq) == 1 and count(sqs, queue) == 0


def test_an_unknown_stack_is_explained(aws, moto_endpoint, capsys):
    code = main(["--stack-name", "nope", "--endpoint-url", moto_endpoint, "dlq", "list"], out=io.StringIO())
    assert code == 2
    assert "cannot read stack 'nope'" in capsys.readouterr().err
