"""Functions, layer, IAM, environment, API and outputs of the template: the deployment contract."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tools.template_model import actions, referenced_names, resolve, resources, role_statements

FUNCTIONS = {
    "IngestFunction": "ingest",
    "Ga4Function": "ga4",
    "MetaFunction": "meta",
    "AppsflyerFunction": "appsflyer",
}
SECRET_PARAMETER = {
    "IngestFunction": {
        "StripeSecretName",
        "PortoneSecretName",
        "TossSecretName",
        "PaddleSecretName",
        "EventsSecretName",
    },
    "Ga4Function": {"Ga4SecretName"},
    "MetaFunction": {"MetaSecretName"},
    "AppsflyerFunction": {"AppsflyerSecretName"},
}
COMMON_ENV = {
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
    "IDEMPOTENCY_TABLE",
    "MAPPING_OVERRIDES",
    "POWERTOOLS_PARAMETERS_MAX_AGE",
    "POWERTOOLS_TRACE_DISABLED",
}
CONTRACT_ENV = {
    "IngestFunction": {
        "ENABLED_DESTINATIONS",
        "GA4_QUEUE_URL",
        "META_QUEUE_URL",
        "APPSFLYER_QUEUE_URL",
        "STRIPE_SECRET_NAME",
        "PORTONE_SECRET_NAME",
        "TOSS_SECRET_NAME",
        "PADDLE_SECRET_NAME",
        "EVENTS_SECRET_NAME",
        "PORTONE_API_BASE_URL",
        "TOSS_API_BASE_URL",
        "TOSS_ALLOWED_SOURCE_IPS",
        "STRIPE_API_BASE_URL",
        "WEBHOOK_TOLERANCE_SECONDS",
        "MAX_BODY_BYTES",
    },
    "Ga4Function": {
        "GA4_SECRET_NAME",
        "GA4_DLQ_URL",
        "GA4_QUEUE_URL",
        "GA4_BASE_URL",
        "GA4_CLIENT_ID_POLICY",
        "GA4_DEBUG_MODE",
        "GA4_SHADOW_SAMPLE_RATE",
        "GA4_MAX_PARAM_VALUE_LENGTH",
        "GA4_USER_DATA",
        "MAX_RECEIVE_COUNT",
    },
    "MetaFunction": {
        "META_SECRET_NAME",
        "META_DLQ_URL",
        "META_QUEUE_URL",
        "META_BASE_URL",
        "META_API_VERSION",
        "META_MAX_EVENTS_PER_REQUEST",
        "META_TEST_EVENTS",
        "META_DEFAULT_ACTION_SOURCE",
        "META_RENEWAL_ACTION_SOURCE",
        "META_DEFAULT_PHONE_COUNTRY_CODE",
        "META_LIMITED_DATA_USE",
        "MAX_RECEIVE_COUNT",
    },
    "AppsflyerFunction": {
        "APPSFLYER_SECRET_NAME",
        "APPSFLYER_DLQ_URL",
        "APPSFLYER_QUEUE_URL",
        "APPSFLYER_BASE_URL",
        "APPSFLYER_TARGET",
        "APPSFLYER_MOBILE_BASE_URL",
        "APPSFLYER_LATE_EVENT_POLICY",
        "APPSFLYER_AMBIGUOUS_POLICY",
        "APPSFLYER_MAX_REQUESTS_PER_SECOND",
        "MAX_RECEIVE_COUNT",
    },
}
QUEUES = {"Ga4Queue", "MetaQueue", "AppsflyerQueue"}
# Credential shapes of the providers and destinations we handle; none may appear in the template.
SECRET_VALUE = re.compile(r"whsec_|[sr]k_(live|test)_|EAA[A-Za-z0-9]{20,}|-----BEGIN|AKIA[0-9A-Z]{16}")
SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|API_KEY|DEV_KEY|CREDENTIAL", re.IGNORECASE)


def _functions(cfn: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return resources(cfn, "AWS::Lambda::Function")


def _env(cfn: dict[str, Any], function_id: str) -> dict[str, Any]:
    return cfn["Resources"][function_id]["Properties"].get("Environment", {}).get("Variables", {})


def test_the_functions_are_the_contracts(cfn):
    assert set(_functions(cfn)) == set(FUNCTIONS)
    for function_id, name in FUNCTIONS.items():
        assert _env(cfn, function_id)["POWERTOOLS_SERVICE_NAME"] == name


@pytest.mark.parametrize("function_id", sorted(FUNCTIONS))
def test_every_function_runs_python313_on_arm64_with_the_shared_layer(cfn, function_id):
    (layer_id,) = resources(cfn, "AWS::Lambda::LayerVersion")
    props = cfn["Resources"][function_id]["Properties"]
    assert props["Runtime"] == "python3.13"
    assert props["Architectures"] == ["arm64"]
    assert props["Handler"] == "app.handler"
    assert props["Layers"] == [{"Ref": layer_id}]


def test_code_locations_and_layer_build(sam):
    res = sam["Resources"]
    for function_id, name in FUNCTIONS.items():
        assert res[function_id]["Properties"]["CodeUri"] == f"functions/{name}"
    layer = res["SharedLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Properties"]["ContentUri"] == "layers/shared"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    assert layer["Metadata"] == {"BuildMethod": "python3.13", "BuildArchitecture": "arm64"}


@pytest.mark.parametrize("function_id", sorted(FUNCTIONS))
def test_environment_is_the_contract(cfn, function_id):
    assert set(_env(cfn, function_id)) == COMMON_ENV | CONTRACT_ENV[function_id]


def test_environment_values_point_at_the_right_resources(cfn, destinations):
    ingest = _env(cfn, "IngestFunction")
    for name, prefix in destinations.items():
        assert ingest[f"{name.upper()}_QUEUE_URL"] == {"Ref": f"{prefix}Queue"}
        consumer = _env(cfn, f"{prefix}Function")
        assert consumer[f"{name.upper()}_DLQ_URL"] == {"Ref": f"{prefix}DeadLetterQueue"}
        assert consumer["MAX_RECEIVE_COUNT"] == {"Ref": "MaxReceiveCount"}
    for function_id in FUNCTIONS:
        assert _env(cfn, function_id)["IDEMPOTENCY_TABLE"] == {"Ref": "IdempotencyTable"}


@pytest.mark.parametrize(
    ("function_id", "variable", "default"),
    [
        ("IngestFunction", "ENABLED_DESTINATIONS", "ga4,meta,appsflyer"),
        ("IngestFunction", "WEBHOOK_TOLERANCE_SECONDS", 300),
        ("IngestFunction", "MAX_BODY_BYTES", "262144"),
        ("IngestFunction", "STRIPE_SECRET_NAME", "conversion-relay/stripe"),
        ("IngestFunction", "PORTONE_SECRET_NAME", "conversion-relay/portone"),
        ("IngestFunction", "TOSS_SECRET_NAME", "conversion-relay/toss"),
        ("IngestFunction", "PADDLE_SECRET_NAME", "conversion-relay/paddle"),
        ("IngestFunction", "EVENTS_SECRET_NAME", "conversion-relay/events"),
        ("IngestFunction", "PORTONE_API_BASE_URL", "https://api.portone.io"),
        ("IngestFunction", "TOSS_API_BASE_URL", "https://api.tosspayments.com"),
        ("IngestFunction", "TOSS_ALLOWED_SOURCE_IPS", ""),
        ("IngestFunction", "STRIPE_API_BASE_URL", "https://api.stripe.com"),
        ("IngestFunction", "MAPPING_OVERRIDES", ""),
        ("IngestFunction", "POWERTOOLS_PARAMETERS_MAX_AGE", "300"),
        ("IngestFunction", "POWERTOOLS_LOG_LEVEL", "INFO"),
        ("IngestFunction", "POWERTOOLS_METRICS_NAMESPACE", "ConversionRelay"),
        ("Ga4Function", "GA4_BASE_URL", "https://www.google-analytics.com"),
        ("Ga4Function", "GA4_SECRET_NAME", "conversion-relay/ga4"),
        ("Ga4Function", "GA4_CLIENT_ID_POLICY", "reject"),
        ("Ga4Function", "GA4_DEBUG_MODE", "none"),
        ("Ga4Function", "GA4_SHADOW_SAMPLE_RATE", "0"),
        ("Ga4Function", "GA4_MAX_PARAM_VALUE_LENGTH", "100"),
        ("Ga4Function", "GA4_USER_DATA", "disabled"),
        ("MetaFunction", "META_BASE_URL", "https://graph.facebook.com"),
        ("MetaFunction", "META_API_VERSION", "v25.0"),
        ("MetaFunction", "META_SECRET_NAME", "conversion-relay/meta"),
        ("AppsflyerFunction", "APPSFLYER_BASE_URL", "https://webs2s.appsflyer.com"),
        ("AppsflyerFunction", "APPSFLYER_SECRET_NAME", "conversion-relay/appsflyer"),
    ],
)
def test_environment_defaults_match_the_code(cfn, function_id, variable, default):
    assert resolve(cfn, _env(cfn, function_id)[variable]) == default


def secret_looking_environment(cfn: dict[str, Any]) -> list[str]:
    """Environment variables that hold, or could hold, a credential instead of a secret's name."""
    found = []
    for function_id in _functions(cfn):
        for name, value in _env(cfn, function_id).items():
            resolved = str(resolve(cfn, value))
            if SECRET_VALUE.search(resolved):
                found.append(f"{function_id}.{name}: value looks like a credential")
            is_ref_to_secret_name = isinstance(value, dict) and str(value.get("Ref", "")).endswith(
                "SecretName"
            )
            if SECRET_NAME.search(name) and not (name.endswith("_SECRET_NAME") and is_ref_to_secret_name):
                found.append(
                    f"{function_id}.{name}: a credential-like name that is not a *SecretName parameter"
                )
    return found


def test_no_credential_in_any_environment_variable(cfn):
    assert secret_looking_environment(cfn) == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STRIPE_WEBHOOK_SECRET", "whsec_abc"),
        ("META_ACCESS_TOKEN", {"Ref": "MetaSecretName"}),
        ("EXTRA", "EAABsbCS1iHgBAKZCZCkZAZBw7ZBsZCqZAZDZD"),
        ("GA4_SECRET_NAME", "whsec_pasted_by_mistake"),
    ],
)
def test_the_credential_check_can_fail(cfn, name, value):
    import copy

    broken = copy.deepcopy(cfn)
    broken["Resources"]["Ga4Function"]["Properties"]["Environment"]["Variables"][name] = value
    assert secret_looking_environment(broken)


def test_no_parameter_default_or_noecho_holds_a_credential(sam):
    for name, parameter in sam["Parameters"].items():
        assert not SECRET_VALUE.search(str(parameter.get("Default", ""))), name
        assert "NoEcho" not in parameter, f"{name}: credentials belong in Secrets Manager, not in parameters"


def secret_parameters_readable_by(cfn: dict[str, Any], function_id: str) -> set[str]:
    """The secret-name parameters a function's role can read, and '*' if it can read any secret."""
    secret_parameters = {p for p in cfn["Parameters"] if p.endswith("SecretName")}
    readable: set[str] = set()
    for statement in role_statements(cfn, function_id):
        if not any(a.lower().startswith("secretsmanager:") for a in actions(statement)):
            continue
        resource = statement.get("Resource")
        names = referenced_names(resource) & secret_parameters
        readable |= names
        if not names or "*" in str(resource).replace("-??????", ""):
            readable.add("*")
    return readable


@pytest.mark.parametrize("function_id", sorted(FUNCTIONS))
def test_each_function_reads_only_its_own_secret(cfn, function_id):
    assert secret_parameters_readable_by(cfn, function_id) == SECRET_PARAMETER[function_id]
    for statement in role_statements(cfn, function_id):
        secret_actions = [a for a in actions(statement) if a.startswith("secretsmanager:")]
        assert secret_actions in ([], ["secretsmanager:GetSecretValue"])


def test_the_secret_check_can_fail(transformed_with):
    def read_meta_secret_from_ga4(template: dict[str, Any]) -> None:
        template["Resources"]["Ga4Function"]["Properties"]["Policies"].append(
            {"AWSSecretsManagerGetSecretValuePolicy": {"SecretArn": {"Ref": "MetaSecretName"}}}
        )

    def read_any_secret(template: dict[str, Any]) -> None:
        template["Resources"]["MetaFunction"]["Properties"]["Policies"].append(
            {"Statement": [{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}
        )

    assert secret_parameters_readable_by(transformed_with(read_meta_secret_from_ga4), "Ga4Function") == {
        "Ga4SecretName",
        "MetaSecretName",
    }
    assert "*" in secret_parameters_readable_by(transformed_with(read_any_secret), "MetaFunction")


def _evaluate(value: Any, parameters: dict[str, str], conditions: dict[str, Any]) -> Any:
    """Just enough of CloudFormation's intrinsics to evaluate the secret resource expressions."""
    if isinstance(value, list):
        return [_evaluate(v, parameters, conditions) for v in value]
    if not isinstance(value, dict):
        return value
    ((key, arg),) = value.items()
    pseudo = {"AWS::Partition": "aws", "AWS::Region": "eu-west-1", "AWS::AccountId": "123456789012"}
    if key == "Ref":
        return {**pseudo, **parameters}[arg]
    if key == "Fn::Sub":
        return re.sub(r"\$\{([^}]+)\}", lambda m: {**pseudo, **parameters}[m.group(1)], arg)
    if key == "Fn::Split":
        return _evaluate(arg[1], parameters, conditions).split(arg[0])
    if key == "Fn::Select":
        return _evaluate(arg[1], parameters, conditions)[int(arg[0])]
    if key == "Fn::Equals":
        left, right = _evaluate(arg, parameters, conditions)
        return left == right
    if key == "Fn::If":
        chosen = _evaluate(conditions[arg[0]], parameters, conditions)
        return _evaluate(arg[1] if chosen else arg[2], parameters, conditions)
    raise AssertionError(f"unexpected intrinsic {key}")


ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:shop/meta-AbC123"


@pytest.mark.parametrize(
    ("value", "resource"),
    [
        (
            "conversion-relay/meta",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:conversion-relay/meta-??????",
        ),
        (ARN, ARN),
    ],
)
def test_secret_resource_is_right_for_a_name_and_for_an_arn(cfn, value, resource):
    (statement,) = [
        s for s in role_statements(cfn, "MetaFunction") if "secretsmanager:GetSecretValue" in actions(s)
    ]
    assert _evaluate(statement["Resource"], {"MetaSecretName": value}, cfn["Conditions"]) == resource


def _allowed(parameter: dict[str, Any], value: str) -> bool:
    # CloudFormation's AllowedPattern must match the whole value.
    return re.fullmatch(parameter["AllowedPattern"], value) is not None


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("conversion-relay/stripe", True),
        ("arn:aws:secretsmanager:us-east-1:123456789012:secret:conversion-relay/stripe-AbCdEf", True),
        ("arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:relay_stripe-AbCdEf", True),
        ("*", False),
        ("conversion-relay/*", False),
        ("arn:aws:secretsmanager:us-east-1:123456789012:secret:*", False),
        ("", False),
    ],
)
def test_secret_parameters_accept_names_and_arns_but_no_wildcards(sam, value, ok):
    for name in set().union(*SECRET_PARAMETER.values()):
        assert _allowed(sam["Parameters"][name], value) is ok, name


@pytest.mark.parametrize(
    ("parameter", "value", "ok"),
    [
        ("EnabledDestinations", "ga4,meta,appsflyer", True),
        ("EnabledDestinations", "meta", True),
        ("EnabledDestinations", "ga4, meta", False),
        ("EnabledDestinations", "tiktok", False),
        ("EnabledDestinations", "", False),
        ("MetaApiVersion", "v25.0", True),
        ("MetaApiVersion", "25.0", False),
        ("MetaApiVersion", "v25", False),
        ("Ga4BaseUrl", "https://region1.google-analytics.com", True),
        ("Ga4BaseUrl", "http://www.google-analytics.com", False),
        ("Ga4BaseUrl", "https://www.google-analytics.com/mp/collect", False),
        ("MetaBaseUrl", "https://graph.facebook.com", True),
        ("AppsflyerBaseUrl", "https://webs2s.appsflyer.com", True),
        ("AlarmTopicArn", "", True),
        ("AlarmTopicArn", "arn:aws:sns:us-east-1:123456789012:ops-alerts", True),
        ("AlarmTopicArn", "ops-alerts", False),
    ],
)
def test_parameter_patterns(sam, parameter, value, ok):
    assert _allowed(sam["Parameters"][parameter], value) is ok


def _sendable_queues(cfn: dict[str, Any], function_id: str) -> set[str]:
    queues = set(resources(cfn, "AWS::SQS::Queue"))
    sendable: set[str] = set()
    for statement in role_statements(cfn, function_id):
        if any(a.startswith("sqs:SendMessage") for a in actions(statement)):
            sendable |= referenced_names(statement["Resource"]) & queues
            assert "*" not in str(statement["Resource"]).replace("sqs:SendMessage*", ""), statement
    return sendable


def test_the_ingest_can_send_to_all_three_queues_and_nothing_else(cfn):
    assert _sendable_queues(cfn, "IngestFunction") == QUEUES


def test_a_consumer_can_send_only_to_its_own_dead_letter_queue(cfn, destinations):
    for prefix in destinations.values():
        assert _sendable_queues(cfn, f"{prefix}Function") == {f"{prefix}DeadLetterQueue"}


@pytest.mark.parametrize("function_id", sorted(FUNCTIONS))
def test_dynamodb_access_is_item_level_on_the_idempotency_table_only(cfn, function_id):
    allowed = {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:BatchGetItem",
        "dynamodb:BatchWriteItem",
    }
    granted = set()
    for statement in role_statements(cfn, function_id):
        dynamo = {a for a in actions(statement) if a.startswith("dynamodb:")}
        if dynamo:
            assert statement["Resource"] == {"Fn::GetAtt": ["IdempotencyTable", "Arn"]}
            granted |= dynamo
    assert {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"} <= granted
    assert granted <= allowed


def test_idempotency_table_matches_powertools_defaults(cfn):
    table = cfn["Resources"]["IdempotencyTable"]["Properties"]
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "id", "AttributeType": "S"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert table["BillingMode"] == "PAY_PER_REQUEST"


@pytest.mark.parametrize("path", ["/webhooks/{provider}", "/events"])
def test_webhook_route_goes_to_the_ingest_with_payload_v2(cfn, path):
    paths = cfn["Resources"]["HttpApi"]["Properties"]["Body"]["paths"]
    integration = paths[path]["post"]["x-amazon-apigateway-integration"]
    assert integration["payloadFormatVersion"] == "2.0"
    assert "IngestFunction" in referenced_names(integration["uri"])


def test_http_api_has_access_logs_and_throttling(cfn):
    (stage,) = resources(cfn, "AWS::ApiGatewayV2::Stage").values()
    props = stage["Properties"]
    assert props["AccessLogSettings"]["DestinationArn"] == {"Fn::GetAtt": ["HttpApiAccessLogGroup", "Arn"]}
    assert {"ThrottlingBurstLimit", "ThrottlingRateLimit"} <= set(props["DefaultRouteSettings"])
    # Access logs must not carry bodies or headers (personal data, signatures).
    assert "$context.requestBody" not in props["AccessLogSettings"]["Format"]


def test_the_ingest_answers_before_api_gateway_gives_up(cfn):
    # HTTP API waits at most 30 s for an integration; the ingest must finish (and answer 5xx) first.
    assert cfn["Resources"]["IngestFunction"]["Properties"]["Timeout"] < 30


def test_every_log_group_has_a_retention_and_every_function_its_own_group(cfn):
    groups = resources(cfn, "AWS::Logs::LogGroup")
    assert groups and all("RetentionInDays" in g["Properties"] for g in groups.values())
    used = [cfn["Resources"][f]["Properties"]["LoggingConfig"]["LogGroup"] for f in FUNCTIONS]
    assert sorted(u["Ref"] for u in used) == sorted(set(groups) - {"HttpApiAccessLogGroup"})


def test_queues_are_encrypted_and_main_queues_keep_messages_four_days(cfn):
    for queue_id, queue in resources(cfn, "AWS::SQS::Queue").items():
        assert queue["Properties"].get("SqsManagedSseEnabled") is True, queue_id
    for queue_id in QUEUES:
        assert cfn["Resources"][queue_id]["Properties"]["MessageRetentionPeriod"] == 345_600


def test_every_dead_letter_queue_has_an_alarm_on_visible_messages(cfn, destinations):
    alarmed = {
        referenced_names(alarm["Properties"]["Dimensions"]).pop()
        for alarm in resources(cfn, "AWS::CloudWatch::Alarm").values()
        if alarm["Properties"].get("MetricName") == "ApproximateNumberOfMessagesVisible"
    }
    assert alarmed == {f"{prefix}DeadLetterQueue" for prefix in destinations.values()}


def test_outputs_name_the_webhook_url_queues_and_table(cfn, destinations):
    outputs = cfn["Outputs"]
    assert outputs["WebhookUrl"]["Value"] == {
        "Fn::Sub": "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/webhooks/stripe"
    }
    assert outputs["IdempotencyTableName"]["Value"] == {"Ref": "IdempotencyTable"}
    for prefix in destinations.values():
        assert outputs[f"{prefix}QueueUrl"]["Value"] == {"Ref": f"{prefix}Queue"}
        assert outputs[f"{prefix}DeadLetterQueueUrl"]["Value"] == {"Ref": f"{prefix}DeadLetterQueue"}
