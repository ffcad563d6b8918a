"""The whole relay on 127.0.0.1: moto (SQS, Secrets Manager, DynamoDB), the real handlers, fake destinations.

    with LocalRelay(secrets=json.load(open("events/local-secrets.json"))) as relay:
        requests.post(f"{relay.api_url}/webhooks/stripe", data=body, headers={"Stripe-Signature": ...})
        relay.drain()
        relay.fakes["ga4"].events

Everything the template decides (queue attributes, redrive policy, function timeouts, batch sizes,
environment variables and their defaults) comes from template.yaml through template_settings; this
module only fills in what the template cannot know locally: resource URLs and names, the fakes'
URLs, credentials for moto, and the service name.

The handlers and the shared package keep state at module level (boto3 clients and Powertools
objects cached with functools.cache, the Powertools parameter cache, the Metrics/Logger singletons),
and os.environ is process-wide. So one LocalRelay runs at a time per process; start() clears those
caches and loads the handler modules afresh, and stop() restores os.environ and clears them again.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, Self

import boto3
import requests

from relay_local import template_settings
from relay_local.api import LocalHttpApi
from relay_local.esm import SqsEventSource
from relay_local.fakes import build_fake
from relay_local.fakes.base import FakeServer
from relay_local.lambda_context import LambdaInvoker
from relay_local.template_settings import (
    LOCAL_ACCOUNT_ID,
    LOCAL_REGION,
    LOCAL_STACK_NAME,
    ResourceRef,
    TemplateSettings,
)

log = logging.getLogger("relay_local")

DESTINATIONS = ("ga4", "meta", "appsflyer")
# Payment providers whose webhooks the ingest completes from the provider's API: a fake API is started
# for each one whose secret is given (stripe: only when its secret holds the optional "api_key"), and
# <NAME>_API_BASE_URL points the ingest at it.
PROVIDER_APIS = ("portone", "toss", "stripe")
LAYER_PATH = template_settings.PROJECT_ROOT / "layers" / "shared"
SERVICE_NAME = "conversion-relay-local"
LOCAL_ROUTE_PREFIX = "/_local"
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# Removed from the environment while the stack runs, so nothing can reach a real account.
_AWS_VARIABLES_TO_HIDE = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_DEFAULT_PROFILE")

_active_lock = threading.Lock()
_active: LocalRelay | None = None


class DrainTimeout(AssertionError):
    """drain() hit its bound with messages still queued or in flight."""


class LocalRelay:
    def __init__(
        self,
        *,
        secrets: Mapping[str, Mapping[str, Any]],
        api_port: int = 0,
        destinations: Mapping[str, str] | None = None,
        fast_retries: bool = False,
        enabled_destinations: Sequence[str] = DESTINATIONS,
        background_pollers: bool = True,
        environment: Mapping[str, str] | None = None,
        template: Path | str = template_settings.DEFAULT_TEMPLATE,
    ) -> None:
        """
        secrets: one JSON secret per top-level key ("stripe", "ga4", "meta", "appsflyer", and the
            providers "portone", "toss", "paddle", "events"; a portone or toss secret, or a stripe secret
            with "api_key", also starts a fake of that provider's API, in `provider_apis`).
        destinations: destination -> real base URL; a destination not named here gets a local fake.
        fast_retries: failed messages are visible again at once instead of after the visibility timeout.
        background_pollers: poll the queues in threads (make local); False leaves it to drain().
        environment: extra variables set last (e.g. POWERTOOLS_LOG_LEVEL, META_API_VERSION).
        """
        unknown = sorted(set(enabled_destinations) - set(DESTINATIONS))
        if unknown:
            raise ValueError(f"enabled_destinations has unknown names {unknown}; known: {DESTINATIONS}")
        real = dict(destinations or {})
        unknown = sorted(set(real) - set(DESTINATIONS))
        if unknown:
            raise ValueError(f"destinations has unknown names {unknown}; known: {DESTINATIONS}")
        missing = [name for name in enabled_destinations if name not in real and name not in secrets]
        if missing:
            raise ValueError(
                f"secrets lacks {missing}: a fake destination needs the credentials it should accept"
            )
        self.secrets = {name: dict(value) for name, value in secrets.items()}
        self.api_port = api_port
        self.real_destinations = real
        self.fast_retries = fast_retries
        self.enabled_destinations = tuple(enabled_destinations)
        self.background_pollers = background_pollers
        self.extra_environment = dict(environment or {})
        self.template_path = Path(template)

        self.settings: TemplateSettings | None = None
        self.endpoint_url = ""
        self.fakes: dict[str, FakeServer] = {}
        self.provider_apis: dict[str, Any] = {}  # "portone" -> FakePortOne, "toss" -> FakeToss
        self.queue_urls: dict[str, str] = {}
        self.dlq_urls: dict[str, str] = {}
        self.secret_names: dict[str, str] = {}
        self.table_name = ""
        self.environment: dict[str, str] = {}  # what start() put into os.environ
        self.sqs: Any = None
        self.event_sources: dict[str, SqsEventSource] = {}
        self.handlers: dict[str, ModuleType] = {}
        self._moto: Any = None
        self._api: LocalHttpApi | None = None
        self._invoker = LambdaInvoker()
        self._saved_environ: dict[str, str] | None = None
        self._saved_process_state: dict[str, Any] = {}
        self._aws_environment: dict[str, str] = {}
        self._resources: dict[str, dict[str, str]] = {}  # logical id -> {"Ref": ..., "Arn": ...}
        self._ready = False
        self._dlq_lock = threading.Lock()  # one reader at a time: each hides what it read for a moment

    # -- lifecycle ------------------------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        if self._api is None:
            raise RuntimeError("LocalRelay is not started")
        return self._api.url

    @property
    def http_api(self) -> LocalHttpApi:
        if self._api is None:
            raise RuntimeError("LocalRelay is not started")
        return self._api

    @property
    def ready(self) -> bool:
        return self._ready

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> Self:
        global _active
        with _active_lock:
            if _active is not None:
                raise RuntimeError(
                    "another LocalRelay is running in this process: os.environ and the handlers' "
                    "module-level clients are process-wide, so stop it first"
                )
            _active = self
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self._saved_environ = dict(os.environ)
        if str(LAYER_PATH) not in sys.path:
            sys.path.insert(0, str(LAYER_PATH))  # Lambda puts the layer on /opt/python
        self.settings = settings = template_settings.load(self.template_path)
        self._start_moto()
        for name in DESTINATIONS:
            if name in self.real_destinations or name not in self.secrets:
                continue
            fake = build_fake(name, self.secrets[name])
            self.fakes[name] = fake.start()
        for name in PROVIDER_APIS:
            provider_api = _provider_api(name, self.secrets[name]) if name in self.secrets else None
            if provider_api is not None:
                self.provider_apis[name] = provider_api.start()
        self._create_resources(settings)
        self.environment = self._compose_environment(settings)
        os.environ.update(self.environment)
        self._reset_process_state()
        self._load_handlers(settings)
        for name, consumer in settings.consumers.items():
            queue = self._resources[consumer.queue.logical_id]
            self.event_sources[name] = SqsEventSource(
                consumer,
                getattr(self.handlers[name], consumer.function.handler_name),
                sqs_client=self.sqs,
                queue_url=queue["Ref"],
                queue_arn=queue["Arn"],
                invoker=self._invoker,
                fast_retries=self.fast_retries,
            )
        self._api = LocalHttpApi(
            settings.ingest,
            getattr(self.handlers["ingest"], settings.ingest.handler_name),
            settings.routes,
            self._invoker,
            port=self.api_port,
            is_ready=lambda: self._ready,
            local_routes=self._local_routes(),
        )
        self._api.start()
        if self.background_pollers:
            for source in self.event_sources.values():
                source.start()
        self._ready = True

    def stop(self) -> None:
        global _active
        self._ready = False
        for source in self.event_sources.values():
            source.request_stop()  # all at once: each may be in a one-second long poll
        for source in self.event_sources.values():
            _quietly(source.stop)
        if self._api is not None:
            _quietly(self._api.stop)
        for fake in [*self.fakes.values(), *self.provider_apis.values()]:
            _quietly(fake.stop)
        if self._moto is not None:
            _quietly(self._moto.stop)
            self._moto = None
        for module_name in [name for name in sys.modules if name.startswith("relay_fn_")]:
            del sys.modules[module_name]
        if self._saved_environ is not None:
            os.environ.clear()
            os.environ.update(self._saved_environ)
            self._saved_environ = None
        _clear_module_caches()
        self._restore_process_state()
        with _active_lock:
            if _active is self:
                _active = None

    # -- test helpers ---------------------------------------------------------------------------------------
    def drain(self, timeout_seconds: float = 30, max_polls: int = 1000) -> None:
        """Poll every destination queue until all are empty with nothing in flight.

        Runs synchronously (background pollers are paused meanwhile) and ignores batching windows: a
        batch is whatever is queued when it is received. Raises DrainTimeout when the bound is hit, e.g.
        when a failed message waits out the visibility timeout (use fast_retries in tests).
        """
        self._pause_pollers()
        try:
            deadline = time.monotonic() + timeout_seconds
            polls = 0
            while True:
                received = 0
                for source in self.event_sources.values():
                    received += source.poll_once(honor_batching_window=False).received
                    polls += 1
                if received == 0:
                    depths = self.queue_depths()
                    if not any(depths.values()):
                        return
                if polls >= max_polls or time.monotonic() > deadline:
                    raise DrainTimeout(f"queues not drained after {polls} polls: {self.queue_depths()}")
                if received == 0:
                    time.sleep(0.05)  # messages in flight or delayed: let them become visible
        finally:
            for source in self.event_sources.values():
                source.resume()

    def _pause_pollers(self) -> None:
        for source in self.event_sources.values():
            source.request_pause()  # all at once: each may be in a one-second long poll
        for source in self.event_sources.values():
            source.pause()

    def queue_depths(self) -> dict[str, int]:
        """destination -> messages visible + in flight + delayed in its (source) queue."""
        depths = {}
        for name, url in self.queue_urls.items():
            attributes = self.sqs.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                ],
            )["Attributes"]
            depths[name] = sum(int(value) for value in attributes.values())
        return depths

    def dlq_messages(self, destination: str) -> list[dict[str, Any]]:
        """Every message in the destination's DLQ: {"message_id", "body", "attributes"}; left in place."""
        with self._dlq_lock:
            return self._read_dlq(self.dlq_urls[destination])

    def _read_dlq(self, url: str) -> list[dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        handles: list[str] = []
        for _ in range(100):  # bound: 1,000 messages is more than any local run holds
            # A long visibility keeps what we already read out of the next receive; reset below.
            response = self.sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=60,
                WaitTimeSeconds=0,
                MessageAttributeNames=["All"],
                AttributeNames=["All"],
            )
            messages = response.get("Messages", [])
            if not messages:
                break
            for message in messages:
                handles.append(message["ReceiptHandle"])
                found[message["MessageId"]] = {
                    "message_id": message["MessageId"],
                    "body": message.get("Body", ""),
                    "attributes": {
                        name: value.get("StringValue", value.get("BinaryValue"))
                        for name, value in (message.get("MessageAttributes") or {}).items()
                    },
                }
        for start in range(0, len(handles), 10):
            self.sqs.change_message_visibility_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                    for i, handle in enumerate(handles[start : start + 10])
                ],
            )
        return list(found.values())

    def reset(self) -> None:
        """Forget what the fakes received; empty every queue and DLQ, in-flight messages too (between tests).

        The queues are deleted and created again from the template (same names, so the same URLs):
        SQS's PurgeQueue is limited to once a minute, and cannot reach messages in flight.
        """
        if self.settings is None:
            raise RuntimeError("LocalRelay is not started")
        self._pause_pollers()
        try:
            for fake in [*self.fakes.values(), *self.provider_apis.values()]:
                fake.reset()
            for logical_id in self.settings.queues:
                self.sqs.delete_queue(QueueUrl=self._resources[logical_id]["Ref"])
            self._create_queues(self.settings)
        finally:
            for source in self.event_sources.values():
                source.resume()

    # -- start-up steps -------------------------------------------------------------------------------------
    def _start_moto(self) -> None:
        from moto.server import ThreadedMotoServer

        # werkzeug logs every request moto serves; that would drown the local stack's own output.
        werkzeug = logging.getLogger("werkzeug")
        self._saved_process_state["werkzeug_level"] = werkzeug.level
        werkzeug.setLevel(logging.ERROR)
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        # moto's backends are process-wide: a previous stack's queues and table would still be there.
        requests.post(f"{self.endpoint_url}/moto-api/reset", timeout=10).raise_for_status()
        for name in _AWS_VARIABLES_TO_HIDE:
            os.environ.pop(name, None)
        self._aws_environment = {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": LOCAL_REGION,
            "AWS_REGION": LOCAL_REGION,
            **FAKE_CREDENTIALS,
        }
        os.environ.update(self._aws_environment)
        session = boto3.session.Session(
            region_name=LOCAL_REGION,
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        self.sqs = session.client("sqs", endpoint_url=self.endpoint_url)
        self._dynamodb = session.client("dynamodb", endpoint_url=self.endpoint_url)
        self._secretsmanager = session.client("secretsmanager", endpoint_url=self.endpoint_url)

    def _create_resources(self, settings: TemplateSettings) -> None:
        self._create_queues(settings)
        self._create_table(settings)
        self._create_secrets(settings)

    def _create_queues(self, settings: TemplateSettings) -> None:
        # Dead-letter queues first: a source queue's RedrivePolicy names its DLQ's ARN.
        queues = sorted(settings.queues.values(), key=lambda queue: queue.dead_letter_queue is not None)
        for queue in queues:
            attributes = dict(queue.attributes)
            if queue.dead_letter_queue is not None:
                target = self._resources.get(queue.dead_letter_queue)
                if target is None or queue.dead_letter_queue == queue.logical_id:
                    raise template_settings.TemplateError(
                        f"{queue.logical_id} redrives to {queue.dead_letter_queue}, which itself redrives"
                    )
                attributes["RedrivePolicy"] = json.dumps(
                    {"deadLetterTargetArn": target["Arn"], "maxReceiveCount": queue.max_receive_count}
                )
            url = self.sqs.create_queue(
                QueueName=f"{LOCAL_STACK_NAME}-{queue.logical_id}", Attributes=attributes
            )["QueueUrl"]
            arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]
            self._resources[queue.logical_id] = {
                "Ref": url,
                "Arn": arn,
                "QueueUrl": url,
                "QueueName": url.rsplit("/", 1)[1],
            }
        for name, consumer in settings.consumers.items():
            self.queue_urls[name] = self._resources[consumer.queue.logical_id]["Ref"]
            self.dlq_urls[name] = self._resources[consumer.dead_letter_queue.logical_id]["Ref"]

    def _create_table(self, settings: TemplateSettings) -> None:
        table = settings.idempotency_table
        self.table_name = f"{LOCAL_STACK_NAME}-{table.logical_id}"
        self._dynamodb.create_table(
            TableName=self.table_name,
            KeySchema=[{"AttributeName": table.hash_key, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": table.hash_key, "AttributeType": table.hash_key_type}],
            BillingMode="PAY_PER_REQUEST",
        )
        if table.ttl_attribute:
            self._dynamodb.update_time_to_live(
                TableName=self.table_name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
            )
        self._resources[table.logical_id] = {
            "Ref": self.table_name,
            "Arn": f"arn:aws:dynamodb:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:table/{self.table_name}",
        }

    def _create_secrets(self, settings: TemplateSettings) -> None:
        template_secret_names = {
            name.removesuffix("_SECRET_NAME").lower(): value
            for function in settings.functions()
            for name, value in function.environment.items()
            if name.endswith("_SECRET_NAME") and isinstance(value, str)
        }
        for component, value in self.secrets.items():
            secret_name = template_secret_names.get(component, f"conversion-relay/{component}")
            self._secretsmanager.create_secret(Name=secret_name, SecretString=json.dumps(value))
            self.secret_names[component] = secret_name

    def _compose_environment(self, settings: TemplateSettings) -> dict[str, str]:
        environment: dict[str, str] = dict(self._aws_environment)
        for function in settings.functions():
            for name, value in function.environment.items():
                environment[name] = self._resolve(value, f"{function.logical_id} {name}")
        for component, secret_name in self.secret_names.items():
            environment[f"{component.upper()}_SECRET_NAME"] = secret_name
        for name in DESTINATIONS:
            if name in self.real_destinations:
                environment[f"{name.upper()}_BASE_URL"] = self.real_destinations[name]
            elif name in self.fakes:
                environment[f"{name.upper()}_BASE_URL"] = self.fakes[name].url
        for name, api in self.provider_apis.items():
            environment[f"{name.upper()}_API_BASE_URL"] = api.url
        # Each function has its own service name in the template; in one process there is one.
        environment["POWERTOOLS_SERVICE_NAME"] = SERVICE_NAME
        environment["ENABLED_DESTINATIONS"] = ",".join(self.enabled_destinations)
        if self.fast_retries:
            # The consumers' per-message backoff (delivery.RetryPolicy) would hide a retry for up to
            # 15 minutes; in fast mode every retry is immediate, as the event source makes it anyway.
            environment["RETRY_LIMIT_SECONDS"] = "0"
        environment.update(self.extra_environment)
        return environment

    def _resolve(self, value: str | ResourceRef, where: str) -> str:
        if isinstance(value, str):
            return value
        resource = self._resources.get(value.logical_id)
        if resource is None:
            raise template_settings.TemplateError(
                f"{where}: the local stack does not create {value.logical_id}; add it to relay_local.stack"
            )
        return resource[value.attribute or "Ref"]

    def _reset_process_state(self) -> None:
        """Forget clients and settings a previous stack (or a unit test) left in module-level caches."""
        _clear_module_caches()
        from conversion_relay.observability import logger, metrics

        provider = metrics.provider
        self._saved_process_state.update(
            namespace=provider.namespace, service=provider.service, log_level=logger.log_level
        )
        # Lambda sets the environment before the first import; here the shared package may have been
        # imported earlier (unit tests), so hand the singletons what Lambda would have given them.
        provider.namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", provider.namespace)
        provider.service = os.environ.get("POWERTOOLS_SERVICE_NAME", provider.service)
        provider.clear_metrics()
        logger.setLevel(os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO").upper())

    def _restore_process_state(self) -> None:
        state = self._saved_process_state
        if "werkzeug_level" in state:
            logging.getLogger("werkzeug").setLevel(state["werkzeug_level"])
        if "namespace" in state:
            from conversion_relay.observability import logger, metrics

            metrics.provider.namespace = state["namespace"]
            metrics.provider.service = state["service"]
            metrics.provider.clear_metrics()
            logger.setLevel(state["log_level"])
        state.clear()

    def _local_routes(self) -> dict[str, Any]:
        """GET /_local/received/<destination> and /_local/dlq/<destination> on the API port."""
        routes: dict[str, Any] = {}
        for name, fake in self.fakes.items():
            routes[f"{LOCAL_ROUTE_PREFIX}/received/{name}"] = functools.partial(_received_summary, name, fake)
        for name in self.dlq_urls:
            routes[f"{LOCAL_ROUTE_PREFIX}/dlq/{name}"] = functools.partial(self._dlq_summary, name)
        routes[f"{LOCAL_ROUTE_PREFIX}/stack"] = self.describe
        return routes

    def describe(self) -> dict[str, Any]:
        """Where the local resources are, like the deployed stack's outputs (for `relay --local`)."""
        return {
            "endpoint_url": self.endpoint_url,
            "region": LOCAL_REGION,
            "api_url": self.api_url,
            "queues": dict(self.queue_urls),
            "dead_letter_queues": dict(self.dlq_urls),
            "table": self.table_name,
        }

    def _dlq_summary(self, destination: str) -> dict[str, Any]:
        # Reasons and attributes only: bodies carry the customer's data.
        messages = [message["attributes"] for message in self.dlq_messages(destination)]
        return {"destination": destination, "count": len(messages), "messages": messages}

    def _load_handlers(self, settings: TemplateSettings) -> None:
        functions = {"ingest": settings.ingest} | {
            name: consumer.function for name, consumer in settings.consumers.items()
        }
        for name, function in functions.items():
            self.handlers[name] = _load_module(f"relay_fn_{name}", function.handler_file)


def _provider_api(provider: str, secret: Mapping[str, Any]) -> FakeServer | None:
    """A fake of the provider's API that accepts the credential in the provider's secret."""
    if provider == "stripe":
        # The Stripe API is optional (charge.refunded read-back): no api_key, no fake, no reads.
        if not secret.get("api_key"):
            return None
        from relay_local.fakes.stripe_api import FakeStripeApi

        return FakeStripeApi(api_key=str(secret["api_key"]).strip())
    if provider == "portone":
        from relay_local.fakes.portone import FakePortOne

        return FakePortOne(api_secret=str(secret["api_secret"]))
    from relay_local.fakes.toss import FakeToss

    return FakeToss(secret_key=str(secret["secret_key"]))


def _received_summary(destination: str, fake: FakeServer) -> dict[str, Any]:
    events = fake.summary()
    return {"destination": destination, "fake": fake.url, "count": len(events), "events": events}


def _load_module(module_name: str, path: Path) -> ModuleType:
    """Import a handler file by path under a unique name: every function's module is called app.py."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _clear_module_caches() -> None:
    """cache_clear() every functools.cache in conversion_relay.*, and Powertools' parameter providers.

    These hold boto3 clients bound to one moto endpoint, the idempotency persistence layer and its
    table name, and the mapping read from MAPPING_OVERRIDES.
    """
    for module_name, module in list(sys.modules.items()):
        if module is None or not (
            module_name == "conversion_relay" or module_name.startswith("conversion_relay.")
        ):
            continue
        for value in list(vars(module).values()):
            if (
                isinstance(value, functools._lru_cache_wrapper)
                and getattr(value, "__module__", None) == module_name
            ):
                value.cache_clear()
    if "aws_lambda_powertools.utilities.parameters" in sys.modules:
        from aws_lambda_powertools.utilities import parameters

        parameters.clear_caches()  # also drops the providers, and with them their boto3 clients


def _quietly(action: Any) -> None:
    try:
        action()
    except Exception:
        log.exception("error while stopping the local stack")
