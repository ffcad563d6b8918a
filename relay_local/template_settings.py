"""Resource settings for the local stack, read from template.yaml: the one source of truth.

The local stack creates its queues, table and environment from what this module reads, so a
change to the template (a visibility timeout, maxReceiveCount, a batch size, an env var) reaches
`make local` and the integration tests without a second copy to keep in step.

Intrinsic functions are resolved as CloudFormation would with every Parameter at its Default:
`!Ref Parameter`, pseudo parameters, `!Sub`, `!Join`, `!Select`, `!Split`, `!If` and the condition
functions. A reference to a *resource* (`!Ref Ga4Queue`, `!GetAtt Ga4Queue.Arn`) cannot be
resolved from the template alone: it becomes a `ResourceRef`, which the local stack replaces with
the resource it created (queue URL, table name).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cfnlint.decode import cfn_yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TEMPLATE = PROJECT_ROOT / "template.yaml"

LOCAL_REGION = "us-east-1"
LOCAL_ACCOUNT_ID = "123456789012"
LOCAL_STACK_NAME = "conversion-relay-local"

# Logical ids fixed by the deployment contract (see the project brief).
INGEST_FUNCTION = "IngestFunction"
IDEMPOTENCY_TABLE = "IdempotencyTable"
CONSUMER_EVENT = "Queue"  # name of each consumer's SQS event

# AWS::SQS::Queue property -> SQS queue attribute, for what create_queue accepts as-is.
_QUEUE_ATTRIBUTES = {
    "VisibilityTimeout": "VisibilityTimeout",
    "MessageRetentionPeriod": "MessageRetentionPeriod",
    "DelaySeconds": "DelaySeconds",
    "MaximumMessageSize": "MaximumMessageSize",
    "ReceiveMessageWaitTimeSeconds": "ReceiveMessageWaitTimeSeconds",
    "SqsManagedSseEnabled": "SqsManagedSseEnabled",
}
# SQS's own defaults, used when the template leaves a property out.
SQS_DEFAULT_VISIBILITY_TIMEOUT = 30
SQS_DEFAULT_RETENTION = 345600
# Lambda's defaults for an SQS event source and a function.
LAMBDA_DEFAULT_TIMEOUT = 3
LAMBDA_DEFAULT_MEMORY = 128
ESM_DEFAULT_BATCH_SIZE = 10
ESM_DEFAULT_BATCHING_WINDOW = 0


class TemplateError(ValueError):
    """template.yaml lacks something the local stack needs; the message names the resource and property."""


@dataclass(frozen=True, slots=True)
class ResourceRef:
    """`!Ref X` or `!GetAtt X.Attr` on a resource: only the stack that created X can fill it in."""

    logical_id: str
    attribute: str | None = None


@dataclass(frozen=True, slots=True)
class QueueSettings:
    logical_id: str
    visibility_timeout: int
    message_retention: int
    attributes: dict[str, str]  # SQS attributes for create_queue, without the RedrivePolicy
    dead_letter_queue: str | None = None  # logical id of the redrive target
    max_receive_count: int | None = None


@dataclass(frozen=True, slots=True)
class FunctionSettings:
    logical_id: str
    code_uri: str
    handler: str  # "app.handler"
    timeout: int
    memory_size: int
    environment: dict[str, str | ResourceRef]

    @property
    def handler_file(self) -> Path:
        module, _, _ = self.handler.rpartition(".")
        return PROJECT_ROOT / self.code_uri / (module.replace(".", "/") + ".py")

    @property
    def handler_name(self) -> str:
        return self.handler.rpartition(".")[2]


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    destination: str  # ga4 | meta | appsflyer (the CodeUri's last segment)
    function: FunctionSettings
    queue: QueueSettings
    dead_letter_queue: QueueSettings
    batch_size: int
    batching_window_seconds: int
    maximum_concurrency: int | None
    function_response_types: tuple[str, ...]

    @property
    def max_receive_count(self) -> int:
        assert self.queue.max_receive_count is not None  # checked when the template is read
        return self.queue.max_receive_count


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str  # "/webhooks/{provider}"

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """Path parameters when the request matches this route, else None."""
        if method.upper() != self.method and self.method != "ANY":
            return None
        pattern = re.sub(r"\\\{([A-Za-z0-9_]+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.path))
        found = re.fullmatch(pattern, path)
        return found.groupdict() if found else None


@dataclass(frozen=True, slots=True)
class TableSettings:
    logical_id: str
    hash_key: str
    hash_key_type: str
    ttl_attribute: str | None


@dataclass(frozen=True, slots=True)
class TemplateSettings:
    path: Path
    parameters: dict[str, Any]  # parameter -> Default
    ingest: FunctionSettings
    routes: tuple[Route, ...]
    consumers: dict[str, ConsumerSettings]  # destination -> settings
    idempotency_table: TableSettings
    queues: dict[str, QueueSettings] = field(default_factory=dict)  # every AWS::SQS::Queue by logical id

    def functions(self) -> list[FunctionSettings]:
        return [self.ingest, *(consumer.function for consumer in self.consumers.values())]


def load(path: Path | str = DEFAULT_TEMPLATE) -> TemplateSettings:
    template_path = Path(path)
    if not template_path.is_file():
        raise TemplateError(f"{template_path} not found: the local stack reads its settings from it")
    return parse(cfn_yaml.load(str(template_path)), template_path)


def parse(template: Mapping[str, Any], path: Path | str = DEFAULT_TEMPLATE) -> TemplateSettings:
    resolver = _Resolver(template)
    resources: Mapping[str, Any] = template.get("Resources") or {}
    queues = {
        logical_id: _queue(logical_id, resource, resolver)
        for logical_id, resource in resources.items()
        if resource.get("Type") == "AWS::SQS::Queue"
    }
    globals_function: Mapping[str, Any] = (template.get("Globals") or {}).get("Function") or {}
    functions = {
        logical_id: _function(logical_id, resource, globals_function, resolver)
        for logical_id, resource in resources.items()
        if resource.get("Type") == "AWS::Serverless::Function"
    }
    if INGEST_FUNCTION not in functions:
        raise TemplateError(f"Resources.{INGEST_FUNCTION} (AWS::Serverless::Function) is missing")
    consumers: dict[str, ConsumerSettings] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        sqs_event = ((resource.get("Properties") or {}).get("Events") or {}).get(CONSUMER_EVENT)
        if not sqs_event or sqs_event.get("Type") != "SQS":
            continue
        consumer = _consumer(functions[logical_id], sqs_event.get("Properties") or {}, queues, resolver)
        consumers[consumer.destination] = consumer
    return TemplateSettings(
        path=Path(path),
        parameters={name: spec.get("Default") for name, spec in (template.get("Parameters") or {}).items()},
        ingest=functions[INGEST_FUNCTION],
        routes=_routes(resources[INGEST_FUNCTION], resolver),
        consumers=consumers,
        idempotency_table=_table(resources, resolver),
        queues=queues,
    )


# -- resources -----------------------------------------------------------------------------------------
def _queue(logical_id: str, resource: Mapping[str, Any], resolver: _Resolver) -> QueueSettings:
    properties = resolver.resolve(resource.get("Properties") or {})
    attributes = {
        attribute: _attribute_text(properties[prop])
        for prop, attribute in _QUEUE_ATTRIBUTES.items()
        if prop in properties
    }
    redrive = properties.get("RedrivePolicy")
    dead_letter_queue, max_receive_count = None, None
    if redrive:
        target = redrive.get("deadLetterTargetArn")
        if not isinstance(target, ResourceRef):
            raise TemplateError(f"{logical_id}.RedrivePolicy.deadLetterTargetArn must be !GetAtt <Queue>.Arn")
        dead_letter_queue = target.logical_id
        max_receive_count = _int(
            redrive.get("maxReceiveCount"), f"{logical_id}.RedrivePolicy.maxReceiveCount"
        )
    return QueueSettings(
        logical_id=logical_id,
        visibility_timeout=_int(
            properties.get("VisibilityTimeout", SQS_DEFAULT_VISIBILITY_TIMEOUT),
            f"{logical_id}.VisibilityTimeout",
        ),
        message_retention=_int(
            properties.get("MessageRetentionPeriod", SQS_DEFAULT_RETENTION),
            f"{logical_id}.MessageRetentionPeriod",
        ),
        attributes=attributes,
        dead_letter_queue=dead_letter_queue,
        max_receive_count=max_receive_count,
    )


def _function(
    logical_id: str, resource: Mapping[str, Any], globals_function: Mapping[str, Any], resolver: _Resolver
) -> FunctionSettings:
    properties = resource.get("Properties") or {}

    def pick(name: str, default: Any) -> Any:
        return resolver.resolve(properties.get(name, globals_function.get(name, default)))

    environment: dict[str, Any] = {}
    for source in (globals_function, properties):
        variables = ((source.get("Environment") or {}).get("Variables")) or {}
        environment.update(resolver.resolve(variables))
    code_uri = pick("CodeUri", None)
    if not isinstance(code_uri, str):
        raise TemplateError(f"{logical_id}.CodeUri must be a local path such as functions/ingest")
    handler = pick("Handler", None)
    if not isinstance(handler, str) or "." not in handler:
        raise TemplateError(f"{logical_id}.Handler must look like app.handler")
    for name, value in environment.items():
        if not isinstance(value, str | ResourceRef):
            environment[name] = _attribute_text(value)
    return FunctionSettings(
        logical_id=logical_id,
        code_uri=code_uri,
        handler=handler,
        timeout=_int(pick("Timeout", LAMBDA_DEFAULT_TIMEOUT), f"{logical_id}.Timeout"),
        memory_size=_int(pick("MemorySize", LAMBDA_DEFAULT_MEMORY), f"{logical_id}.MemorySize"),
        environment=environment,
    )


def _consumer(
    function: FunctionSettings,
    event_properties: Mapping[str, Any],
    queues: Mapping[str, QueueSettings],
    resolver: _Resolver,
) -> ConsumerSettings:
    where = f"{function.logical_id}.Events.{CONSUMER_EVENT}"
    properties = resolver.resolve(event_properties)
    source = properties.get("Queue")
    if not isinstance(source, ResourceRef) or source.logical_id not in queues:
        raise TemplateError(f"{where}.Queue must be !GetAtt <an AWS::SQS::Queue>.Arn")
    queue = queues[source.logical_id]
    if queue.dead_letter_queue is None or queue.dead_letter_queue not in queues:
        raise TemplateError(f"{queue.logical_id} needs a RedrivePolicy to a queue of this template")
    scaling = properties.get("ScalingConfig") or {}
    concurrency = scaling.get("MaximumConcurrency")
    return ConsumerSettings(
        destination=Path(function.code_uri).name,
        function=function,
        queue=queue,
        dead_letter_queue=queues[queue.dead_letter_queue],
        batch_size=_int(properties.get("BatchSize", ESM_DEFAULT_BATCH_SIZE), f"{where}.BatchSize"),
        batching_window_seconds=_int(
            properties.get("MaximumBatchingWindowInSeconds", ESM_DEFAULT_BATCHING_WINDOW),
            f"{where}.MaximumBatchingWindowInSeconds",
        ),
        maximum_concurrency=None if concurrency is None else _int(concurrency, f"{where}.MaximumConcurrency"),
        function_response_types=tuple(properties.get("FunctionResponseTypes") or ()),
    )


def _routes(resource: Mapping[str, Any], resolver: _Resolver) -> tuple[Route, ...]:
    events = (resource.get("Properties") or {}).get("Events") or {}
    routes = []
    for event in events.values():
        if event.get("Type") != "HttpApi":
            continue
        properties = resolver.resolve(event.get("Properties") or {})
        method = str(properties.get("Method", "ANY")).upper()
        routes.append(
            Route(
                "ANY" if method in ("ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD") else method, properties["Path"]
            )
        )
    if not routes:
        raise TemplateError(f"{INGEST_FUNCTION} has no HttpApi event: no route to serve")
    return tuple(routes)


def _table(resources: Mapping[str, Any], resolver: _Resolver) -> TableSettings:
    resource = resources.get(IDEMPOTENCY_TABLE)
    if not resource:
        raise TemplateError(f"Resources.{IDEMPOTENCY_TABLE} is missing")
    properties = resolver.resolve(resource.get("Properties") or {})
    hash_key = next(k["AttributeName"] for k in properties["KeySchema"] if k["KeyType"] == "HASH")
    key_type = next(
        a["AttributeType"] for a in properties["AttributeDefinitions"] if a["AttributeName"] == hash_key
    )
    ttl = properties.get("TimeToLiveSpecification") or {}
    return TableSettings(
        logical_id=IDEMPOTENCY_TABLE,
        hash_key=hash_key,
        hash_key_type=key_type,
        ttl_attribute=ttl.get("AttributeName") if ttl.get("Enabled", True) else None,
    )


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise TemplateError(f"{where} must be a number, got a boolean")
    try:
        return int(str(value))
    except (TypeError, ValueError):
        raise TemplateError(
            f"{where} must be a number (or !Ref to a Number parameter), got {value!r}"
        ) from None


def _attribute_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- intrinsic functions ----------------------------------------------------------------------------------
_NO_VALUE = object()


class _Resolver:
    def __init__(self, template: Mapping[str, Any]) -> None:
        self.parameters = {
            name: spec.get("Default") for name, spec in (template.get("Parameters") or {}).items()
        }
        self.resources = set((template.get("Resources") or {}).keys())
        self.conditions: Mapping[str, Any] = template.get("Conditions") or {}
        self.pseudo = {
            "AWS::Region": LOCAL_REGION,
            "AWS::AccountId": LOCAL_ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": LOCAL_STACK_NAME,
            "AWS::StackId": (
                f"arn:aws:cloudformation:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:stack/{LOCAL_STACK_NAME}/local"
            ),
            "AWS::NoValue": _NO_VALUE,
        }

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [item for item in (self.resolve(v) for v in value) if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self._ref(argument)
            if key == "Fn::GetAtt":
                logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
                return ResourceRef(logical_id, attribute)
            if key == "Fn::Sub":
                return self._sub(argument)
            if key == "Fn::Join":
                separator, items = argument
                parts = self.resolve(items)
                if any(isinstance(part, ResourceRef) for part in parts):
                    return ResourceRef(f"Fn::Join:{parts}")
                return str(separator).join(str(part) for part in parts)
            if key == "Fn::Select":
                index, items = argument
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                separator, text = argument
                resolved = self.resolve(text)
                return (
                    resolved.split(separator)
                    if isinstance(resolved, str)
                    else ResourceRef(f"Fn::Split:{text}")
                )
            if key == "Fn::If":
                condition, when_true, when_false = argument
                return self.resolve(when_true if self.condition(condition) else when_false)
            if key in ("Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or", "Condition"):
                return self._condition_function(key, argument)
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not _NO_VALUE}

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            raise TemplateError(f"Conditions.{name} is referenced but not defined")
        return bool(self.resolve(self.conditions[name]))

    def _condition_function(self, key: str, argument: Any) -> bool:
        if key == "Condition":
            return self.condition(argument)
        if key == "Fn::Equals":
            left, right = (self.resolve(item) for item in argument)
            return str(left) == str(right)
        if key == "Fn::Not":
            return not self.resolve(argument[0])
        values = [bool(self.resolve(item)) for item in argument]
        return all(values) if key == "Fn::And" else any(values)

    def _ref(self, name: str) -> Any:
        if name in self.parameters:
            return self.parameters[name]
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.resources:
            return ResourceRef(name)
        raise TemplateError(f"!Ref {name}: no such parameter or resource")

    def _sub(self, argument: Any) -> Any:
        text, variables = (argument, {}) if isinstance(argument, str) else (argument[0], argument[1])
        local = {name: self.resolve(item) for name, item in variables.items()}
        unresolved: list[str] = []

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in local:
                value = local[name]
            elif "." in name:
                value = ResourceRef(*name.split(".", 1))
            else:
                value = self._ref(name)
            if isinstance(value, ResourceRef):
                unresolved.append(name)
                return match.group(0)
            return str(value)

        result = re.sub(r"\$\{([^}]+)\}", replace, text)
        return ResourceRef(f"Fn::Sub:{text}") if unresolved else result
