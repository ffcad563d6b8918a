"""`relay` without AWS: its help, the progress counter, `plan` and `send-test`."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from relay_cli.main import PROJECT_ROOT, build_parser, main
from relay_cli.progress import Progress

SAMPLES = PROJECT_ROOT / "events" / "stripe"
SECRETS = PROJECT_ROOT / "events" / "local-secrets.json"


def run(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(args), out=out), out.getvalue()


def test_help_explains_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for word in ("dlq", "replay", "plan", "send-test", "--stack-name", "--local", "Examples"):
        assert word in text


@pytest.mark.parametrize(
    "argv", [["replay", "--help"], ["dlq", "show", "--help"], ["plan", "--help"], ["send-test", "--help"]]
)
def test_each_command_has_its_own_help(argv, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    assert "usage: relay" in capsys.readouterr().out


def test_commands_that_need_a_stack_say_how_to_name_one(capsys):
    code, _ = run("dlq", "list")
    assert code == 2
    assert "--stack-name" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("done", "total", "line"),
    [(0, 4, "x: [" + "." * 30 + "] 0/4"), (2, 4, "x: [" + "#" * 15 + "." * 15 + "] 2/4"), (3, None, "x: 3")],
)
def test_progress_line(done, total, line):
    progress = Progress("x", total=total, stream=io.StringIO())
    progress.advance(done)
    assert progress.line() == line


def test_progress_redraws_in_place_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    progress = Progress("moving", total=2, stream=stream)
    progress.advance()
    progress.advance()
    progress.finish()
    assert stream.getvalue().count("\r") >= 2 and stream.getvalue().endswith("2/2\n")


def test_plan_of_a_checkout_shows_each_destination_payload():
    code, text = run("plan", str(SAMPLES / "checkout_session_completed_krw.json"), "--secrets", str(SECRETS))
    assert code == 0
    assert "checkout.session.completed -> 1 canonical event(s)" in text
    for name in ("ga4", "meta", "appsflyer"):
        assert f"  {name}: " in text
    assert '"event_name": "Purchase"' in text


def test_plan_of_an_ignored_event_says_nothing_would_be_sent():
    code, text = run("plan", str(SAMPLES / "customer_created_ignored.json"))
    assert code == 0
    assert "nothing to send" in text


def test_plan_of_a_canonical_event_explains_drops(tmp_path: Path):
    event = {
        "event_id": "x1",
        "name": "purchase",
        "occurred_at": "2020-01-01T00:00:00Z",
        "source": {"provider": "stripe", "event_id": "evt", "event_type": "t", "object_id": "cs"},
        "value": "10",
        "currency": "USD",
    }
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    code, text = run("plan", str(path))
    assert code == 0
    assert "canonical event x1" in text
    assert text.count("dropped") >= 2  # too old for Meta, no client id for GA4, ...


def test_send_test_signs_the_sample_with_the_configured_secret():
    received: list[tuple[str, bytes, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers["Content-Length"])
            received.append((self.path, self.rfile.read(length), self.headers["Stripe-Signature"]))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"status":"accepted"}')

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/webhooks/stripe"
        code, text = run("send-test", "stripe", "checkout_session_completed_usd", "--url", url)
    finally:
        server.shutdown()
    assert code == 0 and "-> 200" in text
    path, body, signature = received[0]
    timestamp, v1 = (part.split("=", 1)[1] for part in signature.split(","))
    secret = json.loads(SECRETS.read_text())["stripe"]["webhook_secrets"][0]
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert path == "/webhooks/stripe" and v1 == expected
    assert json.loads(body)["id"].startswith("evt_relaytest_")  # fresh id: not a duplicate of the sample


# --- send-test for every provider -------------------------------------------------------------------

ALL_SECRETS = json.loads(SECRETS.read_text("utf-8"))


def verify_as_the_relay(provider: str, headers: dict[str, str], body: bytes) -> None:
    """The relay's own verification of `provider`; raises SignatureError when it would refuse."""
    from conversion_relay.providers import first_party, paddle, portone, stripe, toss

    if provider == "stripe":
        stripe.verify(headers, body, stripe.webhook_secrets(ALL_SECRETS["stripe"]))
    elif provider == "portone":
        portone.verify(headers, body, portone.webhook_secrets(ALL_SECRETS["portone"]))
    elif provider == "paddle":
        paddle.verify(headers, body, paddle.webhook_secrets(ALL_SECRETS["paddle"]), tolerance_seconds=300)
    elif provider == "events":
        first_party.verify(headers, body, first_party.signing_secrets(ALL_SECRETS["events"]))
        first_party.parse(body)  # and the body is a valid events document
    else:  # Toss signs nothing; the relay verifies by reading the payment back
        toss.PROVIDER.verify_request(headers, body, ALL_SECRETS["toss"], 300)
        toss.parse(body)


def delivery_key(provider: str, request) -> str:
    """What the relay dedupes this request on."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    if provider == "stripe":
        return json.loads(request.body)["id"]
    if provider == "paddle":
        return json.loads(request.body)["notification_id"]
    if provider == "toss":
        return headers["tosspayments-webhook-transmission-id"]
    return headers["webhook-id"]


SEND_CASES = [
    ("stripe", "checkout_session_completed_krw", "/webhooks/stripe"),
    ("portone", "transaction_paid", "/webhooks/portone"),
    ("paddle", "transaction_completed_recurring_usd", "/webhooks/paddle"),
    ("events", "offline_and_renewal", "/events"),
    ("toss", "payment_status_changed_done", "/webhooks/toss"),
]


SAMPLE_OF = {provider: sample for provider, sample, _ in SEND_CASES}


@pytest.fixture
def capture():
    """A local HTTP server recording (path, lower-cased headers, body) of every POST; answers 200."""
    received: list[tuple[str, dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers["Content-Length"])
            headers = {name.lower(): value for name, value in self.headers.items()}
            received.append((self.path, headers, self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"status":"accepted"}')

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", received
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("provider", "sample", "path"), SEND_CASES, ids=[c[0] for c in SEND_CASES])
def test_send_test_posts_what_the_relay_verifies(capture, provider, sample, path):
    base, received = capture
    code, text = run("--local-url", base, "send-test", provider, sample)
    assert code == 0 and f"POST {base}{path} -> 200" in text
    (got_path, headers, body), *rest = received
    assert got_path == path and not rest
    verify_as_the_relay(provider, headers, body)
    assert ("re-fetches payment 'tgen_20260102000000ABCD1'" in text) is (provider == "toss")


@pytest.mark.parametrize("provider", ["stripe", "portone", "paddle", "events"])
def test_send_test_signatures_fail_for_another_body(provider):
    from conversion_relay.signatures import SignatureError
    from relay_cli.main import build_test_request, sample_path

    sample = SAMPLE_OF[provider]
    document = json.loads(sample_path(provider, sample).read_text("utf-8"))
    request = build_test_request(provider, document, ALL_SECRETS)
    verify_as_the_relay(provider, request.headers, request.body)
    with pytest.raises(SignatureError):
        verify_as_the_relay(provider, request.headers, request.body.replace(b"{", b"{ ", 1))


@pytest.mark.parametrize("provider", [c[0] for c in SEND_CASES])
def test_send_test_ids_are_fresh_unless_kept(provider):
    from relay_cli.main import build_test_request, sample_path

    document = json.loads(sample_path(provider, SAMPLE_OF[provider]).read_text("utf-8"))

    def key(keep_id: bool) -> str:
        return delivery_key(provider, build_test_request(provider, document, ALL_SECRETS, keep_id=keep_id))

    assert key(False) != key(False)
    assert key(True) == key(True)


def test_send_test_explains_a_missing_secret(tmp_path: Path, capsys):
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"stripe": ALL_SECRETS["stripe"]}))
    code, _ = run("send-test", "portone", "transaction_paid", "--secrets", str(secrets), "--url", "http://x")
    assert code == 2 and "has no 'portone' secret" in capsys.readouterr().err


def test_send_test_lists_the_samples_it_knows(capsys):
    code, _ = run("send-test", "events", "nope")
    err = capsys.readouterr().err
    assert code == 2 and "events/first_party/" in err and "offline_and_renewal" in err
    code, _ = run("send-test", "square", "x")
    assert code == 2 and "portone" in capsys.readouterr().err
