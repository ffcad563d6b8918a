"""Where the queues are: a deployed stack (CloudFormation outputs) or `make local` (GET /_local/stack)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
import requests

DESTINATIONS = ("ga4", "meta", "appsflyer")
OUTPUT_PREFIX = {"ga4": "Ga4", "meta": "Meta", "appsflyer": "Appsflyer"}
DEFAULT_LOCAL_URL = "http://127.0.0.1:3000"
LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class TargetError(RuntimeError):
    """The stack or the local relay could not be found; the message says what to check."""


@dataclass
class Target:
    sqs: Any
    queues: dict[str, str]
    dead_letter_queues: dict[str, str]
    api_url: str = ""
    description: str = ""

    def queue(self, destination: str) -> str:
        return _pick(self.queues, destination, "queue")

    def dead_letter_queue(self, destination: str) -> str:
        return _pick(self.dead_letter_queues, destination, "dead-letter queue")


def _pick(urls: dict[str, str], destination: str, kind: str) -> str:
    if destination not in urls:
        raise TargetError(f"no {kind} for destination {destination!r}; known: {sorted(urls)}")
    return urls[destination]


def from_stack(stack_name: str, region: str | None = None, endpoint_url: str | None = None) -> Target:
    """Queue URLs from the stack's Outputs (<Prefix>QueueUrl, <Prefix>DeadLetterQueueUrl, WebhookUrl)."""
    session = boto3.session.Session(region_name=region)
    cloudformation = session.client("cloudformation", endpoint_url=endpoint_url)
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except Exception as error:
        raise TargetError(f"cannot read stack {stack_name!r}: {error}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    queues, dead = {}, {}
    for name, prefix in OUTPUT_PREFIX.items():
        if f"{prefix}QueueUrl" in outputs:
            queues[name] = outputs[f"{prefix}QueueUrl"]
        if f"{prefix}DeadLetterQueueUrl" in outputs:
            dead[name] = outputs[f"{prefix}DeadLetterQueueUrl"]
    if not queues:
        raise TargetError(
            f"stack {stack_name!r} has no <Destination>QueueUrl outputs; is it a conversion-relay stack?"
        )
    api_url = outputs.get("ApiBaseUrl", "")
    return Target(
        session.client("sqs", endpoint_url=endpoint_url), queues, dead, api_url, f"stack {stack_name}"
    )


def from_local(url: str = DEFAULT_LOCAL_URL) -> Target:
    """The `make local` stack: its API answers GET /_local/stack with the moto endpoint and queue URLs."""
    try:
        response = requests.get(f"{url.rstrip('/')}/_local/stack", timeout=5)
        response.raise_for_status()
        described = response.json()
    except (requests.RequestException, ValueError) as error:
        raise TargetError(
            f"no local relay at {url} ({error.__class__.__name__}); start it with `make local`"
        ) from None
    sqs = boto3.client(
        "sqs", endpoint_url=described["endpoint_url"], region_name=described["region"], **LOCAL_CREDENTIALS
    )
    return Target(
        sqs,
        described["queues"],
        described["dead_letter_queues"],
        described.get("api_url", url),
        f"local {url}",
    )
