"""CloudWatch alarms, the SNS e-mail option, the dashboard and tracing: what an operator relies on."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from tools.template_model import actions, referenced_names, resources, role_statements

PREFIXES = {"ga4": "Ga4", "meta": "Meta", "appsflyer": "Appsflyer"}
FUNCTIONS = ("IngestFunction", "Ga4Function", "MetaFunction", "AppsflyerFunction")
NOTIFY = {
    "Fn::If": [
        "NotifyAlarms",
        [{"Fn::If": ["HasAlarmTopic", {"Ref": "AlarmTopicArn"}, {"Ref": "AlarmTopic"}]}],
        {"Ref": "AWS::NoValue"},
    ]
}


def _alarms(cfn):
    return resources(cfn, "AWS::CloudWatch::Alarm")


def _single_metric_alarms(cfn, namespace, metric):
    return {
        logical_id: alarm["Properties"]
        for logical_id, alarm in _alarms(cfn).items()
        if alarm["Properties"].get("Namespace") == namespace
        and alarm["Properties"].get("MetricName") == metric
    }


def _math_metrics(alarm):
    return [m["MetricStat"]["Metric"] for m in alarm["Properties"].get("Metrics", []) if "MetricStat" in m]


def test_every_alarm_notifies_the_topic_or_the_email_when_one_is_configured(cfn):
    assert len(_alarms(cfn)) >= 13
    for logical_id, alarm in _alarms(cfn).items():
        assert alarm["Properties"]["AlarmActions"] == NOTIFY, logical_id
        assert alarm["Properties"]["TreatMissingData"] == "notBreaching", logical_id


def test_age_of_the_oldest_message_is_alarmed_on_every_destination_queue(cfn):
    alarmed = {
        referenced_names(p["Dimensions"]).pop()
        for p in _single_metric_alarms(cfn, "AWS/SQS", "ApproximateAgeOfOldestMessage").values()
    }
    assert alarmed == {f"{prefix}Queue" for prefix in PREFIXES.values()}


def test_errors_of_every_function_are_alarmed(cfn):
    alarmed = {
        referenced_names(p["Dimensions"]).pop()
        for p in _single_metric_alarms(cfn, "AWS/Lambda", "Errors").values()
    }
    assert alarmed == set(FUNCTIONS)


def test_throttles_of_every_function_are_alarmed(cfn):
    alarm = _alarms(cfn)["FunctionThrottlesAlarm"]
    metrics = _math_metrics(alarm)
    assert {m["MetricName"] for m in metrics} == {"Throttles"}
    assert {referenced_names(m["Dimensions"]).pop() for m in metrics} == set(FUNCTIONS)
    expression = next(m["Expression"] for m in alarm["Properties"]["Metrics"] if m.get("ReturnData"))
    for metric in alarm["Properties"]["Metrics"]:
        if "MetricStat" in metric:
            assert metric["Id"] in expression


def test_the_ingest_5xx_rate_is_a_share_of_the_http_api_requests(cfn):
    alarm = _alarms(cfn)["Ingest5xxRateAlarm"]
    metrics = {m["MetricName"]: m for m in _math_metrics(alarm)}
    assert set(metrics) == {"5xx", "Count"}
    for metric in metrics.values():
        assert metric["Namespace"] == "AWS/ApiGateway"
        assert metric["Dimensions"] == [{"Name": "ApiId", "Value": {"Ref": "HttpApi"}}]
    returned = [m for m in alarm["Properties"]["Metrics"] if m.get("ReturnData")]
    assert len(returned) == 1 and "errors, 0) / requests" in returned[0]["Expression"]


def test_meta_auth_alarm_watches_the_metric_the_delivery_routine_emits(cfn):
    """Run the routine on a meta_auth_ rejection and compare the emitted metric with the alarm."""
    from conversion_relay.delivery import DeadLetters, process_batch
    from conversion_relay.destinations.base import Outcome
    from conversion_relay.ledger import Claim, ClaimResult
    from conversion_relay.model import ConversionEvent, Source
    from conversion_relay.observability import metrics

    class Ledger:
        def claim(self, event_id):
            return Claim(ClaimResult.CLAIMED)

        def record(self, states):
            pass

    class Sqs:
        def send_message_batch(self, QueueUrl, Entries):
            return {"Successful": [{"Id": e["Id"]} for e in Entries]}

    class Meta:
        name = "meta"

        def prepare(self, event):
            from conversion_relay.destinations.base import Prepared

            return Prepared(event=event, payload={})

        def send(self, batch):
            return [outcome] * len(batch)

    event = ConversionEvent(
        event_id="e1",
        name="purchase",
        occurred_at=datetime.now(UTC),
        source=Source("stripe", "evt_1", "checkout.session.completed", "cs_1"),
    )

    alarm = _alarms(cfn)["MetaAuthErrorAlarm"]["Properties"]
    service = cfn["Resources"]["MetaFunction"]["Properties"]["Environment"]["Variables"][
        "POWERTOOLS_SERVICE_NAME"
    ]
    assert alarm["Namespace"] == {"Ref": "MetricsNamespace"}
    assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == {"service": service, "destination": "meta"}

    metrics.clear_metrics()
    outcome = Outcome.reject("Error validating access token", http_status=400, error_code="meta_auth_190")
    process_batch(
        {"Records": [{"messageId": "m1", "body": event.to_json(), "attributes": {}}]},
        destination_name="meta",
        build=Meta,
        ledger=Ledger(),
        dead_letters=DeadLetters(Sqs(), "https://dlq", "meta"),
        max_receive_count=5,
    )
    try:
        assert alarm["MetricName"] in metrics.provider.metric_set
        assert metrics.provider.dimension_set.get("destination") == "meta"
    finally:
        metrics.clear_metrics()


def test_an_email_gets_its_own_topic_unless_a_topic_is_given(sam):
    conditions = sam["Conditions"]
    assert sam["Resources"]["AlarmTopic"]["Condition"] == "CreateAlarmTopic"
    assert conditions["CreateAlarmTopic"] == {
        "Fn::And": [{"Condition": "HasAlarmEmail"}, {"Fn::Not": [{"Condition": "HasAlarmTopic"}]}]
    }
    subscription = sam["Resources"]["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}
    assert sam["Parameters"]["AlarmEmail"]["Default"] == ""


@pytest.mark.parametrize(
    ("value", "ok"), [("", True), ("ops@example.com", True), ("not an email", False), ("a@b", False)]
)
def test_alarm_email_pattern(sam, value, ok):
    assert (re.fullmatch(sam["Parameters"]["AlarmEmail"]["AllowedPattern"], value) is not None) is ok


def _dashboard(cfn):
    (dashboard,) = resources(cfn, "AWS::CloudWatch::Dashboard").values()
    return dashboard["Properties"]["DashboardBody"]["Fn::Sub"]


def test_dashboard_body_is_json_whose_substitutions_all_resolve(cfn):
    body = _dashboard(cfn)
    names = set(re.findall(r"\$\{([^}!]+)\}", body))
    known = set(cfn["Resources"]) | set(cfn["Parameters"]) | {"AWS::Region", "AWS::StackName"}
    unknown = {name for name in names if name.split(".")[0] not in known}
    assert unknown == set()
    widgets = json.loads(re.sub(r"\$\{[^}]+\}", "X", body))["widgets"]
    assert all(w["x"] + w["width"] <= 24 for w in widgets)


@pytest.mark.parametrize("destination", sorted(PREFIXES))
def test_dashboard_shows_each_destination_end_to_end(cfn, destination):
    prefix = PREFIXES[destination]
    body = _dashboard(cfn)
    for reference in (
        f"${{{prefix}Queue.QueueName}}",
        f"${{{prefix}DeadLetterQueue.QueueName}}",
        f"${{{prefix}Function}}",
    ):
        assert reference in body
    widgets = json.loads(re.sub(r"\$\{[^}]+\}", "X", body))["widgets"]
    outcome_widgets = [w for w in widgets if w["properties"].get("title", "").lower().startswith(destination)]
    metrics = {
        tuple(m[:6]) for w in outcome_widgets for m in w["properties"].get("metrics", []) if m[0] == "X"
    }
    for name in (
        "Received",
        "Delivered",
        "Retried",
        "Rejected",
        "Expired",
        "DeadLettered",
        "DeliveryLatency",
    ):
        assert ("X", name, "service", destination, "destination", destination) in metrics, name


def test_tracing_is_a_parameter_that_reaches_lambda_and_powertools(cfn, sam):
    assert sam["Parameters"]["Tracing"]["AllowedValues"] == ["Active", "PassThrough"]
    assert sam["Parameters"]["Tracing"]["Default"] == "PassThrough"
    for function_id in FUNCTIONS:
        properties = cfn["Resources"][function_id]["Properties"]
        assert properties["TracingConfig"] == {"Mode": {"Ref": "Tracing"}}
        assert properties["Environment"]["Variables"]["POWERTOOLS_TRACE_DISABLED"] == {
            "Fn::If": ["TracingActive", "false", "true"]
        }


@pytest.mark.parametrize("destination", sorted(PREFIXES))
def test_a_consumer_may_delay_retries_on_its_own_queue_only(cfn, destination):
    prefix = PREFIXES[destination]
    variables = cfn["Resources"][f"{prefix}Function"]["Properties"]["Environment"]["Variables"]
    assert variables[f"{destination.upper()}_QUEUE_URL"] == {"Ref": f"{prefix}Queue"}
    targets = set()
    for statement in role_statements(cfn, f"{prefix}Function"):
        if any(a in ("sqs:ChangeMessageVisibility", "sqs:*") for a in actions(statement)):
            targets |= referenced_names(statement["Resource"])
    assert targets == {f"{prefix}Queue"}
