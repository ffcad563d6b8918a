"""`make local`: the whole relay on 127.0.0.1 until Ctrl-C. `python -m relay_local send FILE`: sign and post.

Environment (all optional):
  RELAY_API_PORT       port of the local HTTP API (default 3000)
  RELAY_SECRETS_FILE   JSON with one secret per key: stripe, ga4, meta, appsflyer
                       (default events/local-secrets.json, example values for the fakes)
  GA4_BASE_URL, META_BASE_URL, APPSFLYER_BASE_URL
                       send to that REAL endpoint instead of the local fake (real events leave this machine)
  META_API_VERSION     Graph API version (default: the template's MetaApiVersion)
  RELAY_FAST_RETRIES   1: failed messages come back at once instead of after the queue's visibility timeout
  POWERTOOLS_LOG_LEVEL handler log level (default WARNING here, to keep the console readable)
  POWERTOOLS_METRICS_DISABLED  default true here (EMF lines on stdout); set false to see them
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import signal
import sys
import threading
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

from relay_local.template_settings import PROJECT_ROOT

DEFAULT_PORT = 3000
DEFAULT_SECRETS_FILE = "events/local-secrets.json"
SAMPLE_EVENT = "events/stripe/checkout_session_completed_krw.json"
REAL_URL_VARIABLES = {"ga4": "GA4_BASE_URL", "meta": "META_BASE_URL", "appsflyer": "APPSFLYER_BASE_URL"}
WATCH_INTERVAL_SECONDS = 0.5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m relay_local", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the local stack (the default)")
    send = commands.add_parser("send", help="sign a Stripe event with the local secret and POST it")
    send.add_argument(
        "file", nargs="?", default=SAMPLE_EVENT, help=f"a Stripe event JSON (default {SAMPLE_EVENT})"
    )
    send.add_argument(
        "--fresh",
        action="store_true",
        help="new event/session ids and the current time, so the relay treats it as a new, recent payment",
    )
    send.add_argument("--url", help="webhook URL (default http://127.0.0.1:$RELAY_API_PORT/webhooks/stripe)")
    args = parser.parse_args(argv)
    if args.command == "send":
        return send_webhook(Path(args.file), fresh=args.fresh, url=args.url)
    return serve()


# -- serve ------------------------------------------------------------------------------------------------
def serve() -> int:
    port = int(os.environ.get("RELAY_API_PORT", str(DEFAULT_PORT)))
    secrets_file = _secrets_path()
    secrets = _read_secrets(secrets_file)
    real = {
        name: os.environ[variable]
        for name, variable in REAL_URL_VARIABLES.items()
        if os.environ.get(variable)
    }
    environment = {
        "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
        "POWERTOOLS_METRICS_DISABLED": os.environ.get("POWERTOOLS_METRICS_DISABLED", "true"),
    }
    if os.environ.get("META_API_VERSION"):
        environment["META_API_VERSION"] = os.environ["META_API_VERSION"]
    fast_retries = os.environ.get("RELAY_FAST_RETRIES", "").lower() in ("1", "true", "yes")
    # Powertools warns on every invocation that recorded no metric (a 404, an empty poll); noise here.
    warnings.filterwarnings("ignore", message="No application metrics to publish")

    from relay_local.stack import LocalRelay

    stopping = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    relay = LocalRelay(
        secrets=secrets, api_port=port, destinations=real, fast_retries=fast_retries, environment=environment
    )
    try:
        relay.start()
    except OSError as error:
        print(
            f"could not start the local stack: {error} (is port {port} in use? set RELAY_API_PORT)",
            file=sys.stderr,
        )
        return 1
    try:
        _print_banner(relay, secrets_file, real)
        watcher = _Watcher(relay)
        while not stopping.wait(WATCH_INTERVAL_SECONDS):
            watcher.report()
    finally:
        print("\nstopping the local stack ...", flush=True)
        relay.stop()
    print("stopped.")
    return 0


def _secrets_path() -> Path:
    path = Path(os.environ.get("RELAY_SECRETS_FILE", DEFAULT_SECRETS_FILE))
    return path if path.is_absolute() else PROJECT_ROOT / path


def _read_secrets(path: Path) -> dict[str, dict[str, Any]]:
    try:
        secrets = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise SystemExit(
            f"{path} not found: set RELAY_SECRETS_FILE, or run `make events` to create the example"
        ) from None
    except ValueError as error:
        raise SystemExit(
            f"{path} is not valid JSON: {error.__class__.__name__} at line {getattr(error, 'lineno', '?')}"
        ) from None
    if not isinstance(secrets, dict) or not all(isinstance(value, dict) for value in secrets.values()):
        raise SystemExit(
            f'{path} must be a JSON object of secrets, e.g. {{"stripe": {{"webhook_secrets": [...]}}}}'
        )
    return secrets


def _print_banner(relay: Any, secrets_file: Path, real: dict[str, str]) -> None:
    settings = relay.settings
    api = relay.api_url
    shown_path = (
        secrets_file.relative_to(PROJECT_ROOT) if secrets_file.is_relative_to(PROJECT_ROOT) else secrets_file
    )
    lines = [
        "",
        "conversion-relay: local stack running (moto + the real handlers). Ctrl-C to stop.",
        "",
        f"  webhook URL    {api}/webhooks/stripe",
        f"  health         {api}/health",
        f"  secrets        from {shown_path}: {', '.join(sorted(relay.secrets))} (values not shown)",
        f"  moto (AWS)     {relay.endpoint_url}  (SQS, Secrets Manager, DynamoDB; state is lost on exit)",
        "",
        "  destinations   (what each accepted, without personal data; also printed below as it happens)",
    ]
    for name in relay.queue_urls:
        if name in real:
            lines.append(f"    {name:<10} REAL endpoint {real[name]}")
        elif name in relay.fakes:
            lines.append(f"    {name:<10} fake {relay.fakes[name].url}   curl {api}/_local/received/{name}")
        else:
            lines.append(f"    {name:<10} no secret and no endpoint: events for it stay in its queue")
    lines += ["", "  dead-letter queues (reason of each undelivered event)"]
    lines += [f"    {name:<10} curl {api}/_local/dlq/{name}" for name in relay.dlq_urls]
    consumer = next(iter(settings.consumers.values()))
    retry_note = (
        "at once (RELAY_FAST_RETRIES)"
        if relay.fast_retries
        else f"after {consumer.queue.visibility_timeout} s (the template's VisibilityTimeout)"
    )
    lines += [
        "",
        f"  retries        a failed event comes back {retry_note};",
        f"                 after {consumer.max_receive_count} receives it goes to its DLQ with the reason",
        "  batching       "
        + ", ".join(
            f"{c.destination} up to {c.batch_size} events / {c.batching_window_seconds} s"
            for c in settings.consumers.values()
        ),
        "",
        "  try it         .venv/bin/python -m relay_local send --fresh " + SAMPLE_EVENT,
        "                 (signs it with the local stripe secret; more samples in events/stripe/)",
        "  more logs      POWERTOOLS_LOG_LEVEL=INFO make local",
        "",
    ]
    print("\n".join(lines), flush=True)
    if real:
        names = ", ".join(f"{name} -> {url}" for name, url in real.items())
        print(
            "!" * 100
            + f"\n!!  REAL DESTINATIONS: {names}\n"
            + "!!  Events you send here are delivered to those real endpoints with the credentials in\n"
            + f"!!  {shown_path}. Use test credentials (Meta test_event_code, a GA4 test property).\n"
            + "!" * 100,
            file=sys.stderr,
            flush=True,
        )


class _Watcher:
    """Prints one line per event a fake accepted and per message that reached a DLQ (no personal data)."""

    def __init__(self, relay: Any) -> None:
        self.relay = relay
        self.seen_events = dict.fromkeys(relay.fakes, 0)
        self.seen_dead: dict[str, set[str]] = {name: set() for name in relay.dlq_urls}

    def report(self) -> None:
        for name, fake in self.relay.fakes.items():
            events = fake.summary()
            for summary in events[self.seen_events[name] :]:
                print(
                    f"  delivered  {name:<10} {summary.get('event')!s:<14} id={summary.get('id')} "
                    f"value={summary.get('value')} {summary.get('currency') or ''}",
                    flush=True,
                )
            self.seen_events[name] = len(events)
        for name, url in self.relay.dlq_urls.items():
            depth = self.relay.sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]["ApproximateNumberOfMessages"]
            if int(depth) <= len(self.seen_dead[name]):
                continue
            for message in self.relay.dlq_messages(name):
                if message["message_id"] in self.seen_dead[name]:
                    continue
                self.seen_dead[name].add(message["message_id"])
                attributes = message["attributes"]
                print(
                    f"  DLQ        {name:<10} {attributes.get('failure')} "
                    f"event_id={attributes.get('event_id')} reason: {attributes.get('reason')}",
                    flush=True,
                )


# -- send -------------------------------------------------------------------------------------------------
def send_webhook(path: Path, *, fresh: bool, url: str | None) -> int:
    import requests

    file = path if path.is_absolute() or path.exists() else PROJECT_ROOT / path
    body = file.read_bytes()
    if fresh:
        body = _freshen(body)
    secret = _read_secrets(_secrets_path()).get("stripe", {}).get("webhook_secrets", [None])[0]
    if not secret:
        print("the secrets file has no stripe.webhook_secrets to sign with", file=sys.stderr)
        return 2
    timestamp = int(time.time())
    signature = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    target = url or f"http://127.0.0.1:{os.environ.get('RELAY_API_PORT', DEFAULT_PORT)}/webhooks/stripe"
    try:
        response = requests.post(
            target,
            data=body,
            headers={"Content-Type": "application/json", "Stripe-Signature": f"t={timestamp},v1={signature}"},
            timeout=30,
        )
    except requests.ConnectionError:
        print(f"nothing listens on {target}: start it with `make local`", file=sys.stderr)
        return 1
    print(f"POST {target} -> {response.status_code} {response.text}")
    return 0 if response.ok else 1


def _freshen(body: bytes) -> bytes:
    """New ids and the current time: an event new to the relay and recent enough for every destination."""
    event = json.loads(body)
    suffix = uuid.uuid4().hex[:12]
    now = int(time.time())
    event["id"] = f"evt_local_{suffix}"
    event["created"] = now
    obj = (event.get("data") or {}).get("object") or {}
    for key in ("id", "payment_intent", "charge", "invoice"):
        if isinstance(obj.get(key), str):
            obj[key] = f"{obj[key]}_{suffix}"
    if "created" in obj:
        obj["created"] = now
    return json.dumps(event, ensure_ascii=False).encode("utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
