"""Read the deployed shape out of the transformed (CloudFormation) template, and check its invariants.

One source of truth for queue and consumer settings: tests/template asserts the rules below on
what SAM generates, and the local stack can read the same numbers with `consumers()` instead of
copying them.

    from tools.sam2cfn import transform_template
    from tools.template_model import check_consumers, consumers
    cfn = transform_template("template.yaml")
    assert check_consumers(cfn) == []
    settings = {c.destination: c for c in consumers(cfn)}   # "ga4", "meta", "appsflyer"

Values that come from a template Parameter are checked over the parameter's whole allowed range
(MinValue..MaxValue), so a rule holds for every value someone can deploy, not only the default.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

VISIBILITY_FACTOR = 6  # Lambda: queue visibility timeout >= 6 x function timeout
DLQ_RETENTION_SECONDS = 1_209_600  # 14 days, the SQS maximum
MAX_RECEIVE_COUNT_PARAMETER = "MaxReceiveCount"
NO_BATCHING_WINDOW_MAX_BATCH = 10  # above this, Lambda requires MaximumBatchingWindowInSeconds >= 1
MAXIMUM_CONCURRENCY_RANGE = (2, 1000)  # ScalingConfig.MaximumConcurrency

# CloudFormation / Lambda defaults for properties a template may leave out.
_SQS_DEFAULT_VISIBILITY = 30
_SQS_DEFAULT_RETENTION = 345_600
_LAMBDA_DEFAULT_TIMEOUT = 3
_ESM_DEFAULT_BATCH_SIZE = 10
_ESM_DEFAULT_WINDOW = 0

Range = tuple[float, float]


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    """One SQS event source mapping with its function, queue and DLQ, resolved to default values."""

    destination: str  # the function's POWERTOOLS_SERVICE_NAME, e.g. "ga4"
    mapping: str  # logical ids
    function: str
    queue: str
    dead_letter_queue: str | None
    function_timeout: int
    visibility_timeout: int
    queue_retention: int
    dead_letter_retention: int | None
    max_receive_count: int | None
    batch_size: int
    batching_window: int
    maximum_concurrency: int | None
    function_response_types: tuple[str, ...]


def resources(cfn: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in cfn.get("Resources", {}).items() if v.get("Type") == resource_type}


def _parameter(cfn: dict[str, Any], value: Any) -> tuple[str, dict[str, Any]] | None:
    if isinstance(value, dict) and set(value) == {"Ref"}:
        name = value["Ref"]
        parameter = cfn.get("Parameters", {}).get(name)
        if parameter is not None:
            return name, parameter
    return None


def _number(raw: Any) -> float | None:
    try:
        return float(raw)
    except (TypeError, ValueError):
        return None


def resolve(cfn: dict[str, Any], value: Any, overrides: dict[str, Any] | None = None) -> Any:
    """A literal as is; a Ref to a Parameter as its override or default (Number parameters as int)."""
    found = _parameter(cfn, value)
    if found is None:
        return value
    name, parameter = found
    raw = (overrides or {}).get(name, parameter.get("Default"))
    if parameter.get("Type") == "Number" and raw is not None:
        number = _number(raw)
        return int(number) if number is not None and number.is_integer() else number
    return raw


def value_range(cfn: dict[str, Any], value: Any) -> Range:
    """Every number `value` can take: a literal is itself; a Number parameter spans MinValue..MaxValue.

    A parameter without a bound is unbounded on that side (so a rule that needs the bound fails).
    """
    found = _parameter(cfn, value)
    if found is None:
        number = _number(value)
        if number is None:
            return (-math.inf, math.inf)
        return (number, number)
    _, parameter = found
    if "AllowedValues" in parameter:
        allowed = [n for n in (_number(v) for v in parameter["AllowedValues"]) if n is not None]
        return (min(allowed), max(allowed))
    low = _number(parameter.get("MinValue"))
    high = _number(parameter.get("MaxValue"))
    return (-math.inf if low is None else low, math.inf if high is None else high)


def _getatt_target(value: Any, attribute: str) -> str | None:
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"]
        if isinstance(target, str):
            target = target.split(".", 1)
        if len(target) == 2 and target[1] == attribute:
            return str(target[0])
    return None


def _ref_target(value: Any) -> str | None:
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return str(value["Ref"])
    return None


def dead_letter_target(queue: dict[str, Any]) -> str | None:
    """Logical id of the queue a queue's RedrivePolicy points at, if it points at one in the template."""
    redrive = queue.get("Properties", {}).get("RedrivePolicy")
    if not isinstance(redrive, dict):
        return None
    return _getatt_target(redrive.get("deadLetterTargetArn"), "Arn")


def _function_of(cfn: dict[str, Any], mapping: dict[str, Any]) -> str | None:
    name = mapping.get("Properties", {}).get("FunctionName")
    target = _ref_target(name) or _getatt_target(name, "Arn")
    if target in resources(cfn, "AWS::Lambda::Function"):
        return target
    return None


def _queue_of(cfn: dict[str, Any], mapping: dict[str, Any]) -> str | None:
    target = _getatt_target(mapping.get("Properties", {}).get("EventSourceArn"), "Arn")
    if target in resources(cfn, "AWS::SQS::Queue"):
        return target
    return None


def sqs_mappings(cfn: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Event source mappings whose source is an SQS queue (in this template, or an SQS ARN)."""
    found = {}
    for logical_id, mapping in resources(cfn, "AWS::Lambda::EventSourceMapping").items():
        source = mapping.get("Properties", {}).get("EventSourceArn")
        if _queue_of(cfn, mapping) is not None or (isinstance(source, str) and ":sqs:" in source):
            found[logical_id] = mapping
    return found


def consumers(cfn: dict[str, Any], overrides: dict[str, Any] | None = None) -> list[ConsumerSettings]:
    """Resolved settings of every SQS consumer whose function and queue are in the template."""
    out = []
    for logical_id, mapping in sorted(sqs_mappings(cfn).items()):
        function_id, queue_id = _function_of(cfn, mapping), _queue_of(cfn, mapping)
        if function_id is None or queue_id is None:
            continue
        function = cfn["Resources"][function_id]["Properties"]
        queue = cfn["Resources"][queue_id]["Properties"]
        dlq_id = dead_letter_target(cfn["Resources"][queue_id])
        dlq = cfn["Resources"].get(dlq_id, {}).get("Properties", {}) if dlq_id else None
        props = mapping.get("Properties", {})
        redrive = queue.get("RedrivePolicy") or {}
        concurrency = (props.get("ScalingConfig") or {}).get("MaximumConcurrency")
        env = (function.get("Environment") or {}).get("Variables", {})

        def get(value: Any, default: Any) -> Any:
            return default if value is None else resolve(cfn, value, overrides)

        out.append(
            ConsumerSettings(
                destination=str(get(env.get("POWERTOOLS_SERVICE_NAME"), function_id)),
                mapping=logical_id,
                function=function_id,
                queue=queue_id,
                dead_letter_queue=dlq_id,
                function_timeout=get(function.get("Timeout"), _LAMBDA_DEFAULT_TIMEOUT),
                visibility_timeout=get(queue.get("VisibilityTimeout"), _SQS_DEFAULT_VISIBILITY),
                queue_retention=get(queue.get("MessageRetentionPeriod"), _SQS_DEFAULT_RETENTION),
                dead_letter_retention=(
                    get(dlq.get("MessageRetentionPeriod"), _SQS_DEFAULT_RETENTION)
                    if dlq is not None
                    else None
                ),
                max_receive_count=get(redrive.get("maxReceiveCount"), None),
                batch_size=get(props.get("BatchSize"), _ESM_DEFAULT_BATCH_SIZE),
                batching_window=get(props.get("MaximumBatchingWindowInSeconds"), _ESM_DEFAULT_WINDOW),
                maximum_concurrency=get(concurrency, None),
                function_response_types=tuple(props.get("FunctionResponseTypes") or ()),
            )
        )
    return out


def _check_mapping(cfn: dict[str, Any], logical_id: str, mapping: dict[str, Any]) -> Iterator[str]:
    where = f"EventSourceMapping {logical_id}"
    props = mapping.get("Properties", {})
    function_id, queue_id = _function_of(cfn, mapping), _queue_of(cfn, mapping)
    if function_id is None:
        yield f"{where}: FunctionName is not a Ref/GetAtt to a function in this template"
    if queue_id is None:
        yield f"{where}: EventSourceArn is not !GetAtt <queue>.Arn of a queue in this template"
        return

    if props.get("FunctionResponseTypes") != ["ReportBatchItemFailures"]:
        yield (
            f"{where}: FunctionResponseTypes is {props.get('FunctionResponseTypes')!r}, expected "
            "['ReportBatchItemFailures'] (without it one failed record retries the whole batch)"
        )

    queue = cfn["Resources"][queue_id].get("Properties", {})
    if function_id is not None:
        function = cfn["Resources"][function_id].get("Properties", {})
        _, timeout_high = value_range(cfn, function.get("Timeout", _LAMBDA_DEFAULT_TIMEOUT))
        visibility_low, _ = value_range(cfn, queue.get("VisibilityTimeout", _SQS_DEFAULT_VISIBILITY))
        if visibility_low < VISIBILITY_FACTOR * timeout_high:
            yield (
                f"{where}: queue {queue_id} VisibilityTimeout can be {visibility_low:g} s, less than "
                f"{VISIBILITY_FACTOR} x {function_id} Timeout ({timeout_high:g} s)"
            )

    batch_low, batch_high = value_range(cfn, props.get("BatchSize", _ESM_DEFAULT_BATCH_SIZE))
    window_low, window_high = value_range(
        cfn, props.get("MaximumBatchingWindowInSeconds", _ESM_DEFAULT_WINDOW)
    )
    if batch_low < 1 or batch_high > 10_000:
        yield f"{where}: BatchSize can be {batch_low:g}..{batch_high:g}, outside 1..10000"
    if batch_high > NO_BATCHING_WINDOW_MAX_BATCH and window_low < 1:
        yield (
            f"{where}: BatchSize can be {batch_high:g} (> {NO_BATCHING_WINDOW_MAX_BATCH}) while "
            f"MaximumBatchingWindowInSeconds can be {window_low:g}; Lambda requires a window >= 1 s then"
        )
    if window_low < 0 or window_high > 300:
        yield f"{where}: MaximumBatchingWindowInSeconds can be {window_low:g}..{window_high:g}, not 0..300"

    concurrency = (props.get("ScalingConfig") or {}).get("MaximumConcurrency")
    low, high = MAXIMUM_CONCURRENCY_RANGE
    if concurrency is None:
        yield f"{where}: ScalingConfig.MaximumConcurrency is not set (caps the load on the destination)"
    else:
        c_low, c_high = value_range(cfn, concurrency)
        if c_low < low or c_high > high:
            yield f"{where}: MaximumConcurrency can be {c_low:g}..{c_high:g}, outside {low}..{high}"

    redrive = queue.get("RedrivePolicy")
    dlq_id = dead_letter_target(cfn["Resources"][queue_id])
    if not isinstance(redrive, dict) or dlq_id is None:
        yield f"{where}: queue {queue_id} has no RedrivePolicy to a dead-letter queue in this template"
        return
    if dlq_id == queue_id:
        yield f"{where}: queue {queue_id} redrives to itself"
    if redrive.get("maxReceiveCount") != {"Ref": MAX_RECEIVE_COUNT_PARAMETER}:
        yield (
            f"{where}: queue {queue_id} RedrivePolicy.maxReceiveCount is {redrive.get('maxReceiveCount')!r}, "
            f"expected !Ref {MAX_RECEIVE_COUNT_PARAMETER}"
        )
    else:
        r_low, r_high = value_range(cfn, redrive["maxReceiveCount"])
        if r_low < 1 or r_high > 1000:
            yield f"{where}: {MAX_RECEIVE_COUNT_PARAMETER} can be {r_low:g}..{r_high:g}, outside 1..1000"
    dlq = cfn["Resources"][dlq_id].get("Properties", {})
    if dlq.get("MessageRetentionPeriod") != DLQ_RETENTION_SECONDS:
        yield (
            f"{where}: dead-letter queue {dlq_id} MessageRetentionPeriod is "
            f"{dlq.get('MessageRetentionPeriod')!r}, expected {DLQ_RETENTION_SECONDS} (14 days)"
        )


def check_consumers(cfn: dict[str, Any]) -> list[str]:
    """Problems with the SQS consumers, as sentences naming the resource and rule; [] when sound."""
    problems: list[str] = []
    mappings = sqs_mappings(cfn)
    for logical_id, mapping in sorted(mappings.items()):
        problems.extend(_check_mapping(cfn, logical_id, mapping))

    queues = resources(cfn, "AWS::SQS::Queue")
    consumed = Counter(q for m in mappings.values() if (q := _queue_of(cfn, m)) is not None)
    for queue_id, count in sorted(consumed.items()):
        if count > 1:
            problems.append(
                f"queue {queue_id} is consumed by {count} event source mappings; SQS consumers compete, "
                "so each message would reach only one of them"
            )
    dlq_users: dict[str, list[str]] = {}
    for queue_id, queue in queues.items():
        target = dead_letter_target(queue)
        if target is not None:
            dlq_users.setdefault(target, []).append(queue_id)
    for dlq_id, users in sorted(dlq_users.items()):
        if len(users) > 1:
            problems.append(
                f"dead-letter queue {dlq_id} is shared by {sorted(users)}; give each queue its own"
            )
        if dlq_id in consumed:
            problems.append(f"dead-letter queue {dlq_id} is consumed by an event source mapping")
    for queue_id in sorted(set(queues) - set(dlq_users) - set(consumed)):
        problems.append(f"queue {queue_id} is neither consumed by a function nor a dead-letter queue")
    return problems


def role_statements(cfn: dict[str, Any], function_id: str) -> list[dict[str, Any]]:
    """Inline IAM statements of a function's execution role (managed policy ARNs are not expanded)."""
    role_id = _getatt_target(cfn["Resources"][function_id]["Properties"].get("Role"), "Arn")
    if role_id is None:
        return []
    role = cfn["Resources"][role_id].get("Properties", {})
    statements: list[dict[str, Any]] = []
    for policy in role.get("Policies", []):
        document_statements = policy.get("PolicyDocument", {}).get("Statement", [])
        statements.extend(
            [document_statements] if isinstance(document_statements, dict) else document_statements
        )
    return statements


def actions(statement: dict[str, Any]) -> list[str]:
    raw = statement.get("Action", [])
    return [raw] if isinstance(raw, str) else list(raw)


def referenced_names(value: Any) -> set[str]:
    """Every name a value refers to: Ref targets, GetAtt resources and ${Name} in Fn::Sub strings."""
    names: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                names.add(inner)
            elif key == "Fn::GetAtt":
                target = inner.split(".", 1)[0] if isinstance(inner, str) else inner[0]
                names.add(str(target))
            elif key == "Fn::Sub":
                text, variables = (inner, {}) if isinstance(inner, str) else (inner[0], inner[1])
                names.update(_sub_names(text) - set(variables))
                names.update(referenced_names(variables))
            else:
                names.update(referenced_names(inner))
    elif isinstance(value, list):
        for inner in value:
            names.update(referenced_names(inner))
    return names


def _sub_names(text: str) -> set[str]:
    names = set()
    for part in text.split("${")[1:]:
        name = part.split("}", 1)[0]
        if not name.startswith("!"):
            names.add(name.split(".", 1)[0])
    return names
