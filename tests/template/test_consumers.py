"""SQS consumers as SAM deploys them: visibility vs timeout, partial batch responses, redrive, scaling.

cfn-lint >= 1.54 does not check what SAM generates, so these rules are asserted on the transformed
template; the mutation cases show each rule reports the resource and what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tools.template_model import check_consumers, consumers


def _resources(t: dict[str, Any]) -> dict[str, Any]:
    return t["Resources"]


def _sqs_event(t: dict[str, Any], prefix: str) -> dict[str, Any]:
    return _resources(t)[f"{prefix}Function"]["Properties"]["Events"]["Queue"]["Properties"]


def test_the_template_satisfies_every_consumer_rule(cfn):
    assert check_consumers(cfn) == []


def test_one_consumer_with_its_own_queue_and_dead_letter_queue_per_destination(cfn, destinations):
    found = {c.destination: (c.function, c.queue, c.dead_letter_queue) for c in consumers(cfn)}
    assert found == {
        name: (f"{prefix}Function", f"{prefix}Queue", f"{prefix}DeadLetterQueue")
        for name, prefix in destinations.items()
    }


def test_defaults_fill_batches_where_the_destination_accepts_batches(cfn):
    settings = {c.destination: c for c in consumers(cfn)}
    # Meta takes up to 1,000 events a request, GA4 25, AppsFlyer one: batch sizes follow.
    assert settings["meta"].batch_size > settings["ga4"].batch_size > settings["appsflyer"].batch_size
    for consumer in settings.values():
        assert consumer.visibility_timeout >= 6 * consumer.function_timeout
        assert consumer.max_receive_count == 5
        assert consumer.dead_letter_retention == 1_209_600 > consumer.queue_retention == 345_600
        assert consumer.function_response_types == ("ReportBatchItemFailures",)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation that sets Resources/Parameters at a slash-separated path."""

    def mutate(template: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node = template
        for key in parents:
            node = node[key]
        node[last] = value

    return mutate


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(template: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node = template
        for key in parents:
            node = node[key]
        del node[last]

    return mutate


def _second_consumer_on_ga4_queue(template: dict[str, Any]) -> None:
    events = _resources(template)["MetaFunction"]["Properties"]["Events"]
    events["Ga4Too"] = {"Type": "SQS", "Properties": dict(_sqs_event(template, "Ga4"))}


def _extra_queue(template: dict[str, Any]) -> None:
    _resources(template)["TiktokQueue"] = {
        "Type": "AWS::SQS::Queue",
        "Properties": {"VisibilityTimeout": 180},
    }


def _consume_the_dlq(template: dict[str, Any]) -> None:
    _sqs_event(template, "Ga4")["Queue"] = {"Fn::GetAtt": ["Ga4DeadLetterQueue", "Arn"]}


MUTATIONS = [
    (
        "visibility-5",
        _set("Resources/Ga4Queue/Properties/VisibilityTimeout", 5),
        "VisibilityTimeout can be 5 s",
    ),
    (
        "visibility-179",
        _set("Resources/MetaQueue/Properties/VisibilityTimeout", 179),
        "less than 6 x MetaFunction",
    ),
    ("timeout-31", _set("Resources/AppsflyerFunction/Properties/Timeout", 31), "Timeout (31 s)"),
    (
        "response-type-typo",
        _set(
            "Resources/Ga4Function/Properties/Events/Queue/Properties/FunctionResponseTypes",
            ["ReportBatchItemFailure"],
        ),
        "FunctionResponseTypes",
    ),
    (
        "no-response-types",
        _delete("Resources/MetaFunction/Properties/Events/Queue/Properties/FunctionResponseTypes"),
        "FunctionResponseTypes is None",
    ),
    (
        "shared-dlq",
        _set(
            "Resources/MetaQueue/Properties/RedrivePolicy/deadLetterTargetArn",
            {"Fn::GetAtt": ["Ga4DeadLetterQueue", "Arn"]},
        ),
        "Ga4DeadLetterQueue is shared by ['Ga4Queue', 'MetaQueue']",
    ),
    (
        "no-redrive",
        _delete("Resources/AppsflyerQueue/Properties/RedrivePolicy"),
        "AppsflyerQueue has no RedrivePolicy",
    ),
    (
        "literal-max-receive",
        _set("Resources/Ga4Queue/Properties/RedrivePolicy/maxReceiveCount", 5),
        "expected !Ref MaxReceiveCount",
    ),
    (
        "max-receive-unbounded",
        _delete("Parameters/MaxReceiveCount/MaxValue"),
        "MaxReceiveCount can be 1..inf",
    ),
    (
        "short-dlq-retention",
        _set("Resources/MetaDeadLetterQueue/Properties/MessageRetentionPeriod", 345600),
        "MetaDeadLetterQueue MessageRetentionPeriod",
    ),
    ("window-may-be-0", _set("Parameters/MetaBatchingWindowSeconds/MinValue", 0), "requires a window >= 1 s"),
    (
        "concurrency-1",
        _set("Parameters/Ga4MaximumConcurrency/MinValue", 1),
        "MaximumConcurrency can be 1..1000",
    ),
    (
        "no-scaling-config",
        _delete("Resources/AppsflyerFunction/Properties/Events/Queue/Properties/ScalingConfig"),
        "MaximumConcurrency is not set",
    ),
    (
        "queue-consumed-twice",
        _second_consumer_on_ga4_queue,
        "Ga4Queue is consumed by 2 event source mappings",
    ),
    ("orphan-queue", _extra_queue, "TiktokQueue is neither consumed"),
    ("dlq-consumed", _consume_the_dlq, "Ga4DeadLetterQueue is consumed by an event source mapping"),
]


@pytest.mark.parametrize(("mutate", "expected"), [m[1:] for m in MUTATIONS], ids=[m[0] for m in MUTATIONS])
def test_the_checker_reports_a_broken_consumer(transformed_with, mutate, expected):
    problems = check_consumers(transformed_with(mutate))
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize(("visibility", "ok"), [(179, False), (180, True), (181, True)])
def test_visibility_boundary_is_six_times_the_timeout(transformed_with, visibility, ok):
    problems = check_consumers(
        transformed_with(_set("Resources/Ga4Queue/Properties/VisibilityTimeout", visibility))
    )
    assert (problems == []) is ok, problems
