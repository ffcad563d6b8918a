"""relay: look into and repair a conversion-relay stack from the command line.

Against a deployed stack (AWS credentials from the usual places, `--stack-name`), or against
`make local` (`--local`). Examples:

  relay --stack-name conversion-relay dlq list
  relay --stack-name conversion-relay dlq show --destination meta
  relay --stack-name conversion-relay replay --destination meta --reason expired --dry-run
  relay --local replay --destination ga4 --limit 10
  relay plan events/stripe/checkout_session_completed_krw.json
  relay --local send-test stripe checkout_session_completed_krw
  relay --local send-test events offline_and_renewal
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LAYER = PROJECT_ROOT / "layers" / "shared"
if str(LAYER) not in sys.path:  # the shared package ships in the Lambda layer, not in this project's wheel
    sys.path.insert(0, str(LAYER))

from relay_cli import target as targets  # noqa: E402
from relay_cli.progress import Progress  # noqa: E402

DEFAULT_SECRETS = PROJECT_ROOT / "events" / "local-secrets.json"
PLACEHOLDER_SECRETS: dict[str, dict[str, Any]] = {
    "ga4": {"measurement_id": "G-PLACEHOLDER", "api_secret": "placeholder"},
    "meta": {"pixel_id": "000000000000000", "access_token": "placeholder"},
    "appsflyer": {"bundle_id": "com.example.placeholder", "web_dev_key": "placeholder"},
}
_RECEIVE_LIMIT = 10
_HIDE_SECONDS = 60  # how long a message being read stays hidden from consumers and other readers


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relay",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--stack-name", help="the deployed CloudFormation stack (queue URLs from its outputs)")
    where.add_argument("--local", action="store_true", help="the stack `make local` runs on 127.0.0.1")
    parser.add_argument(
        "--local-url", default=targets.DEFAULT_LOCAL_URL, help="URL of `make local` (%(default)s)"
    )
    parser.add_argument("--region", help="AWS region of the stack (default: your AWS configuration)")
    parser.add_argument("--endpoint-url", help=argparse.SUPPRESS)  # tests: moto server
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dlq = commands.add_parser("dlq", help="what is in the dead-letter queues, and why")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="list|show")
    listing = dlq_commands.add_parser("list", help="count DLQ messages by failure and reason")
    listing.add_argument("--destination", choices=targets.DESTINATIONS, help="one destination (default: all)")
    listing.add_argument("--max", type=int, default=1000, help="read at most this many per DLQ (%(default)s)")
    show = dlq_commands.add_parser("show", help="one DLQ message in detail, personal data redacted")
    show.add_argument("--destination", choices=targets.DESTINATIONS, required=True)
    show.add_argument("--event-id", help="the message for this event id (default: the first one)")

    replay = commands.add_parser(
        "replay",
        help="move DLQ messages back to the destination queue",
        description="Move DLQ messages back to the destination queue. A message is deleted from the DLQ only "
        "after it is in the queue. Events already delivered are not sent again (delivery ledger).",
    )
    replay.add_argument("--destination", choices=targets.DESTINATIONS, required=True)
    replay.add_argument(
        "--dry-run", action="store_true", help="print what the destination would receive; move nothing"
    )
    replay.add_argument("--limit", type=int, default=None, help="replay at most N messages")
    replay.add_argument(
        "--reason",
        help="only messages whose failure is R (rejected, expired, ...) or whose reason contains R",
    )
    replay.add_argument(
        "--secrets", type=Path, help="JSON secrets file for --dry-run payloads (default: placeholders)"
    )

    plan = commands.add_parser(
        "plan",
        help="what each destination would receive for a webhook or canonical event file, sending nothing",
    )
    plan.add_argument("file", type=Path, help="a raw webhook body (JSON) or a canonical event (JSON)")
    plan.add_argument("--provider", default="stripe", help="provider of a raw webhook (%(default)s)")
    plan.add_argument("--secrets", type=Path, help="JSON secrets file (default: placeholders)")

    send = commands.add_parser(
        "send-test", help="sign a sample webhook with the configured secret and post it"
    )
    send.add_argument(
        "provider",
        help="stripe, portone, paddle, toss (unsigned; the relay re-fetches the payment) or events"
        " (the first-party API, posted to /events)",
    )
    send.add_argument(
        "event",
        help="a file, or a sample name under events/<provider>/ (events: events/first_party/),"
        " e.g. checkout_session_completed_krw",
    )
    send.add_argument(
        "--url",
        help="full URL to post to (default: /webhooks/<provider>, or /events, on the local relay"
        " or the stack's API)",
    )
    send.add_argument(
        "--secrets",
        type=Path,
        default=DEFAULT_SECRETS,
        help="secrets file with the signing secret (%(default)s)",
    )
    send.add_argument(
        "--keep-id", action="store_true", help="send the sample's own event id (a repeat is a duplicate)"
    )
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = out or sys.stdout
    try:
        if args.command == "plan":
            return plan(args.file, args.provider, _secrets(args.secrets), out)
        if args.command == "send-test":
            return send_test(args, out)
        target = _target(args)
        if args.command == "dlq" and args.dlq_command == "list":
            return dlq_list(target, args.destination, args.max, out)
        if args.command == "dlq":
            return dlq_show(target, args.destination, args.event_id, out)
        return replay(
            target, args.destination, args.dry_run, args.limit, args.reason, _secrets(args.secrets), out
        )
    except targets.TargetError as error:
        print(f"relay: {error}", file=sys.stderr)
        return 2


def _target(args: argparse.Namespace) -> targets.Target:
    if args.local:
        return targets.from_local(args.local_url)
    if args.stack_name:
        return targets.from_stack(args.stack_name, args.region, args.endpoint_url)
    raise targets.TargetError("say where: --stack-name NAME (deployed) or --local (make local)")


# ---------------------------------------------------------------- DLQ reading
def _receive(sqs: Any, url: str, limit: int) -> list[dict[str, Any]]:
    """Up to `limit` messages, hidden for a minute (so each is read once); release them with _release."""
    found: dict[str, dict[str, Any]] = {}
    while len(found) < limit:
        messages = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=min(_RECEIVE_LIMIT, limit - len(found)),
            VisibilityTimeout=_HIDE_SECONDS,
            WaitTimeSeconds=0,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            break
        for message in messages:
            found.setdefault(message["MessageId"], message)
    return list(found.values())


def _release(sqs: Any, url: str, messages: list[dict[str, Any]]) -> None:
    for start in range(0, len(messages), _RECEIVE_LIMIT):
        chunk = messages[start : start + _RECEIVE_LIMIT]
        sqs.change_message_visibility_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for i, m in enumerate(chunk)
            ],
        )


def _attributes(message: dict[str, Any]) -> dict[str, str]:
    return {k: v.get("StringValue", "") for k, v in (message.get("MessageAttributes") or {}).items()}


def _reason_key(reason: str) -> str:
    """Group reasons by their stable part (before the first ';' or ':' detail)."""
    return reason.split(";")[0][:120]


def dlq_list(target: targets.Target, destination: str | None, maximum: int, out: TextIO) -> int:
    names = [destination] if destination else sorted(target.dead_letter_queues)
    for name in names:
        url = target.dead_letter_queue(name)
        messages = _receive(target.sqs, url, maximum)
        _release(target.sqs, url, messages)
        counts = Counter(
            (_attributes(m).get("failure", "?"), _reason_key(_attributes(m).get("reason", "")))
            for m in messages
        )
        print(f"{name}: {len(messages)} message(s) in the DLQ", file=out)
        for (failure, reason), count in counts.most_common():
            print(f"  {count:6d}  {failure:18s} {reason}", file=out)
    return 0


def dlq_show(target: targets.Target, destination: str, event_id: str | None, out: TextIO) -> int:
    from conversion_relay import redaction

    url = target.dead_letter_queue(destination)
    messages = _receive(target.sqs, url, 1000 if event_id else 1)
    _release(target.sqs, url, messages)
    chosen = [m for m in messages if not event_id or _attributes(m).get("event_id") == event_id]
    if not chosen:
        print(f"{destination}: no such message in the DLQ", file=out)
        return 1
    message = chosen[0]
    body: Any = message.get("Body", "")
    with contextlib.suppress(ValueError):
        body = json.loads(body)
    with redaction.known_values(_personal_values(body)):
        shown = {
            "message_id": message["MessageId"],
            "attributes": _attributes(message),
            "body": redaction.redact_value(_mask_person(body)),
        }
    print(json.dumps(shown, indent=2, ensure_ascii=False), file=out)
    return 0


def _personal_values(body: Any) -> list[str]:
    if not isinstance(body, dict):
        return []
    person, context = body.get("person") or {}, body.get("context") or {}
    return [str(v) for v in [*person.values(), context.get("client_ip")] if v]


def _mask_person(body: Any) -> Any:
    if isinstance(body, dict) and isinstance(body.get("person"), dict):
        body = dict(body, person=dict.fromkeys(body["person"], "[REDACTED:personal]"))
    return body


# ---------------------------------------------------------------- replay
def replay(
    target: targets.Target,
    destination: str,
    dry_run: bool,
    limit: int | None,
    reason: str | None,
    secrets: dict[str, Any],
    out: TextIO,
) -> int:
    dlq_url = target.dead_letter_queue(destination)
    queue_url = target.queue(destination)
    remaining = limit if limit is not None else 1_000_000
    progress = Progress(f"{'checking' if dry_run else 'replaying'} {destination}", total=limit)
    moved = skipped = failed = 0
    held: list[dict[str, Any]] = []  # received but not moved: released at the end
    try:
        while remaining > 0:
            batch = _receive(target.sqs, dlq_url, min(_RECEIVE_LIMIT, remaining))
            if not batch:
                break
            for message in batch:
                attributes = _attributes(message)
                if (
                    reason
                    and reason != attributes.get("failure")
                    and reason not in attributes.get("reason", "")
                ):
                    held.append(message)
                    skipped += 1
                    continue
                if remaining <= 0:
                    held.append(message)
                    continue
                remaining -= 1
                if dry_run:
                    _print_plan_for_body(message.get("Body", ""), [destination], secrets, out, attributes)
                    held.append(message)
                elif _move(target.sqs, message, queue_url, dlq_url):
                    moved += 1
                else:
                    held.append(message)
                    failed += 1
                progress.advance()
    finally:
        _release(target.sqs, dlq_url, held)
    progress.finish()
    verb = "would replay" if dry_run else "replayed"
    count = progress.done if dry_run else moved
    print(f"{destination}: {verb} {count}; not matching --reason {skipped}; failed {failed}", file=out)
    return 1 if failed else 0


def _move(sqs: Any, message: dict[str, Any], queue_url: str, dlq_url: str) -> bool:
    from conversion_relay.delivery import REPLAY_ATTRIBUTE

    keep = {
        name: value
        for name, value in (message.get("MessageAttributes") or {}).items()
        if name in ("correlation_id", "event_id")
    }
    # A person chose to replay it: the consumer may resend an event left "uncertain" in its ledger.
    keep[REPLAY_ATTRIBUTE] = {"DataType": "String", "StringValue": "true"}
    try:
        sqs.send_message(QueueUrl=queue_url, MessageBody=message["Body"], MessageAttributes=keep)
    except Exception as error:  # keep it in the DLQ: nothing is lost
        print(f"relay: could not send {message['MessageId']}: {error.__class__.__name__}", file=sys.stderr)
        return False
    sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
    return True


# ---------------------------------------------------------------- plan
def _secrets(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {name: dict(values) for name, values in PLACEHOLDER_SECRETS.items()}
    return json.loads(path.read_text("utf-8"))


def build_destination(name: str, secrets: dict[str, Any]) -> Any:
    import requests

    from conversion_relay.destinations.appsflyer import AppsflyerDestination
    from conversion_relay.destinations.ga4 import Ga4Destination
    from conversion_relay.destinations.meta import MetaDestination

    classes = {"ga4": Ga4Destination, "meta": MetaDestination, "appsflyer": AppsflyerDestination}
    credentials = secrets.get(name) or PLACEHOLDER_SECRETS[name]
    return classes[name](credentials, requests.Session())


def plan(path: Path, provider_name: str, secrets: dict[str, Any], out: TextIO) -> int:
    from conversion_relay.model import ConversionEvent, InvalidEvent
    from conversion_relay.providers import get_provider

    raw = path.read_bytes()
    try:
        document = json.loads(raw)
    except ValueError:
        print(f"{path}: not JSON", file=out)
        return 1
    if isinstance(document, dict) and "event_id" in document and "source" in document:
        try:
            events = [ConversionEvent.from_dict(document)]
        except InvalidEvent as error:
            print(f"{path}: not a valid canonical event: {error}", file=out)
            return 1
        print(f"{path}: canonical event {events[0].event_id}", file=out)
    else:
        provider = get_provider(provider_name)
        payload = provider.parse(raw)
        events = provider.to_events(payload)
        print(
            f"{path}: {provider_name} {provider.event_type(payload)} -> {len(events)} canonical event(s)",
            file=out,
        )
        if not events:
            print("  nothing to send: this event type does not map to a conversion", file=out)
            return 0
    for event in events:
        _print_plan(event, list(targets.DESTINATIONS), secrets, out)
    return 0


def _print_plan_for_body(
    body: str, names: list[str], secrets: dict[str, Any], out: TextIO, attributes: dict[str, str]
) -> None:
    from conversion_relay.model import ConversionEvent, InvalidEvent

    print(
        f"-- DLQ message {attributes.get('event_id', '?')}: {attributes.get('failure', '?')}: "
        f"{attributes.get('reason', '')}",
        file=out,
    )
    try:
        event = ConversionEvent.from_json(body)
    except InvalidEvent as error:
        print(f"   not a canonical event ({error}): would be rejected again", file=out)
        return
    _print_plan(event, names, secrets, out)


def _print_plan(event: Any, names: list[str], secrets: dict[str, Any], out: TextIO) -> None:
    from conversion_relay.config import destination_event_name
    from conversion_relay.destinations.base import Outcome

    print(f"event {event.event_id} ({event.name}, {event.occurred_at.isoformat()})", file=out)
    for name in names:
        if destination_event_name(name, event.name) is None:
            print(f"  {name}: dropped: the mapping sends no {event.name!r} events to {name}", file=out)
            continue
        try:
            result = build_destination(name, secrets).prepare(event)
        except Exception as error:
            print(f"  {name}: cannot prepare: {error.__class__.__name__}: {error}", file=out)
            continue
        if isinstance(result, Outcome):
            print(f"  {name}: dropped ({result.status.value}): {result.reason}", file=out)
            continue
        print(f"  {name}: would send", file=out)
        for dropped in result.dropped_identifiers:
            print(f"    identifier left out: {dropped}", file=out)
        print(
            "    " + json.dumps(result.payload, ensure_ascii=False, indent=2).replace("\n", "\n    "),
            file=out,
        )


# ---------------------------------------------------------------- send-test
# Providers send-test can sign (the relay's webhook providers plus the first-party /events API).
SEND_TEST_PROVIDERS = ("stripe", "portone", "paddle", "toss", "events")
_SAMPLE_DIRS = {"events": "first_party"}  # events/<dir>/ where a provider's samples live
_FETCHED_OBJECT_PREFIX = "payment-"  # events/<provider>/payment-*.json: what a provider API holds


@dataclass(frozen=True)
class SendTestRequest:
    """What send-test posts: the path it goes to on the relay, the exact body bytes, the headers."""

    path: str
    body: bytes
    headers: dict[str, str]
    note: str = ""  # said to the user after the answer (e.g. what the relay will read back)


def send_test(args: argparse.Namespace, out: TextIO) -> int:
    import requests

    from conversion_relay.config import ConfigError

    if args.provider not in SEND_TEST_PROVIDERS:
        print(
            f"relay: send-test knows providers {', '.join(SEND_TEST_PROVIDERS)}, not {args.provider!r}",
            file=sys.stderr,
        )
        return 2
    path = sample_path(args.provider, args.event)
    if path is None:
        folder = _SAMPLE_DIRS.get(args.provider, args.provider)
        names = ", ".join(sample_names(args.provider)) or "none"
        print(f"relay: no sample {args.event!r} in events/{folder}/ (there: {names})", file=sys.stderr)
        return 2
    try:
        secrets = json.loads(args.secrets.read_text("utf-8"))
        request = build_test_request(
            args.provider, json.loads(path.read_text("utf-8")), secrets, keep_id=args.keep_id
        )
    except KeyError as error:
        print(f"relay: {args.secrets} has no {error.args[0]!r} secret to sign with", file=sys.stderr)
        return 2
    except (OSError, ValueError, TypeError, ConfigError) as error:
        # ConfigError names the missing field, never a value.
        print(f"relay: cannot sign the {args.provider} sample with {args.secrets}: {error}", file=sys.stderr)
        return 2
    url = args.url or _webhook_url(args, request.path)
    response = requests.post(url, data=request.body, headers=request.headers, timeout=30)
    print(f"POST {url} -> {response.status_code} {response.text}", file=out)
    if request.note:
        print(request.note, file=out)
    return 0 if response.ok else 1


def sample_path(provider: str, event: str) -> Path | None:
    """A file given as is, else the sample `event` under events/<provider>/ (".json" optional)."""
    given = Path(event)
    if given.is_file():
        return given
    folder = PROJECT_ROOT / "events" / _SAMPLE_DIRS.get(provider, provider)
    candidate = folder / (event.removesuffix(".json") + ".json")
    return candidate if candidate.is_file() else None


def sample_names(provider: str) -> list[str]:
    folder = PROJECT_ROOT / "events" / _SAMPLE_DIRS.get(provider, provider)
    return sorted(p.stem for p in folder.glob("*.json") if not p.name.startswith(_FETCHED_OBJECT_PREFIX))


def build_test_request(
    provider: str,
    sample: dict[str, Any],
    secrets: dict[str, Any],
    *,
    keep_id: bool = False,
    now: int | None = None,
) -> SendTestRequest:
    """The request a provider would send for `sample`, signed with its secret in `secrets`.

    Unless `keep_id`, the delivery id is fresh, so the relay does not answer "duplicate"; with it,
    the id is the sample's own (or derived from the body), so sending twice shows the dedupe.
    """
    from conversion_relay.providers import first_party, paddle, portone, standard_webhooks, stripe

    signed_at = int(time.time()) if now is None else now
    fresh = uuid.uuid4().hex[:16]
    sample = dict(sample)
    json_headers = {"Content-Type": "application/json"}
    if provider == "stripe":
        if not keep_id:
            sample["id"] = f"evt_relaytest_{fresh}"
            sample["created"] = signed_at
        body = _compact(sample)
        secret = stripe.webhook_secrets(secrets["stripe"])[0]
        signature = stripe_signature(body, secret, signed_at)
        return SendTestRequest("/webhooks/stripe", body, json_headers | {"Stripe-Signature": signature})
    if provider == "paddle":
        if not keep_id:
            sample["notification_id"] = f"ntf_relaytest_{fresh}"
        body = _compact(sample)
        secret = paddle.webhook_secrets(secrets["paddle"])[0]
        signature = paddle.signature_header(body, secret, signed_at)
        return SendTestRequest("/webhooks/paddle", body, json_headers | {"Paddle-Signature": signature})
    body = _compact(sample)
    # A body-derived id when keeping ids: the same sample is the same delivery (as tools/make_events.py).
    message_id = f"msg_{hashlib.sha256(body).hexdigest()[:24]}" if keep_id else f"msg_relaytest_{fresh}"
    if provider in ("portone", "events"):
        if provider == "portone":
            secret = portone.webhook_secrets(secrets["portone"])[0]
            path = "/webhooks/portone"
            payment_id = sample.get("data", {}).get("paymentId")
            note = (
                f"note: the relay reads payment {payment_id!r} back from the PortOne API"
                " (PORTONE_API_BASE_URL); locally, the fake PortOne API must hold it."
            )
        else:
            secret = first_party.signing_secrets(secrets["events"])[0]
            path, note = "/events", ""
        headers = standard_webhooks.sign_headers(secret, message_id, signed_at, body)
        return SendTestRequest(path, body, json_headers | headers, note)
    if provider == "toss":
        payment_key = sample.get("data", {}).get("paymentKey")
        headers = {
            "tosspayments-webhook-transmission-id": f"wh_{message_id.removeprefix('msg_')}",
            "tosspayments-webhook-transmission-time": time.strftime(
                "%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(signed_at)
            ),
            "tosspayments-webhook-transmission-retried-count": "0",
        }
        note = (
            "note: Toss webhooks are not signed, so this one is posted as is; the relay re-fetches"
            f" payment {payment_key!r} by paymentKey from the Toss API (TOSS_API_BASE_URL): locally,"
            " the fake Toss API must hold it (e.g. events/toss/payment-<paymentKey>.json); and if"
            " TOSS_ALLOWED_SOURCE_IPS is set, it must include this machine's address."
        )
        return SendTestRequest("/webhooks/toss", body, json_headers | headers, note)
    raise ValueError(
        f"send-test cannot sign {provider!r} requests; it signs {', '.join(SEND_TEST_PROVIDERS)}"
    )


def _compact(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _webhook_url(args: argparse.Namespace, path: str) -> str:
    if args.stack_name:
        base = targets.from_stack(args.stack_name, args.region, args.endpoint_url).api_url
    else:
        base = args.local_url
    return f"{base.rstrip('/')}{path}"


def stripe_signature(body: bytes, secret: str, timestamp: int | None = None) -> str:
    signed_at = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{signed_at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={signed_at},v1={digest}"


if __name__ == "__main__":
    sys.exit(main())
