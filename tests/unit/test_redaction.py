"""The redaction layer: what it must hide, what it must leave alone, and that every log path uses it."""

from __future__ import annotations

import io
import json
import logging

import pytest

from conversion_relay import redaction


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("mail minsu.kim@example.com now", "minsu.kim@example.com"),
        ("call +821012345678", "+821012345678"),
        ("call +82 10-1234-5678", "+82 10-1234-5678"),
        ("call 010-1234-5678", "010-1234-5678"),
        ("from 203.0.113.10", "203.0.113.10"),
        ("from 2001:db8::1", "2001:db8::1"),
        ("Authorization: Bearer abcdefghijkl123", "abcdefghijkl123"),
        ("token EAABsbCS1iHgBAKZexample", "EAABsbCS1iHgBAKZexample"),
        ("secret whsec_abcdef123456", "whsec_abcdef123456"),
        ("key sk_live_abcdef123456", "sk_live_abcdef123456"),
        ("GET /mp/collect?measurement_id=G-1&api_secret=s3cr3tvalue&x=1", "s3cr3tvalue"),
        ('{"access_token": "qwertyuiop"}', "qwertyuiop"),
        (r"{\"web_dev_key\": \"devkey12345\"}", "devkey12345"),
        ('{"person":{"first_name":"Minsu","last_name":"Kim"}}', "Minsu"),
        (r"b\'{\"first_name\":\"Minsu\"}\'", "Minsu"),
        ("{'email': 'someone at example'}", "someone at example"),
    ],
)
def test_shapes_and_personal_fields_are_redacted(text, hidden):
    assert hidden not in redaction.redact(text)
    assert "[REDACTED:" in redaction.redact(text)


@pytest.mark.parametrize(
    "text",
    [
        "event_id stripe:purchase:cs_test_a1b2c3 at 2026-11-28T12:30:45Z",
        "ga client 1786543210.1792626900 af 0d7f3c2e-5b7a-4c1e-9a51-3f0b2d6e8c41",
        "HTTP 503 after 1.5 s; retry in 120 s; attempt 3 of 5",
        "events[0].params.currency: VALUE_INVALID",
        '{"name":"purchase","value":"59000","currency":"KRW"}',
        "acceptance window closed at 2026-12-05T00:00:00Z (7 days after the event time)",
    ],
)
def test_operational_text_is_left_alone(text):
    assert redaction.redact(text) == text


def test_known_values_are_redacted_only_while_known():
    with redaction.known_values(["김민수", "Minsu", None, "ab"]):
        assert (
            redaction.redact("name 김민수 / MINSU / ab")
            == "name [REDACTED:personal] / [REDACTED:personal] / ab"
        )
    assert redaction.redact("name 김민수") == "name 김민수"


def test_registered_secrets_stay_redacted():
    redaction.register_secret_values([{"api_secret": "plain-looking-value", "ids": ["another-secret"]}])
    try:
        assert (
            redaction.redact("x plain-looking-value another-secret")
            == "x [REDACTED:secret] [REDACTED:secret]"
        )
    finally:
        redaction.clear()


def test_event_values_cover_the_person_and_the_ip():
    from datetime import UTC, datetime

    from conversion_relay.model import Context, ConversionEvent, Person, Source

    event = ConversionEvent(
        event_id="e1",
        name="purchase",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        source=Source("stripe", "evt", "t", "cs"),
        person=Person(email="a@b.co", phone="+15551234567", first_name="Ann", last_name="Lee", zip="10001"),
        context=Context(client_ip="198.51.100.1"),
    )
    assert set(redaction.event_values(event)) >= {
        "a@b.co",
        "+15551234567",
        "Ann",
        "Lee",
        "Ann Lee",
        "198.51.100.1",
    }


def test_the_powertools_logger_writes_redacted_lines_extras_and_exceptions_included():
    from conversion_relay.observability import logger

    stream = io.StringIO()
    previous = logger.registered_handler.setStream(stream)
    try:
        try:
            raise ValueError("bad value a.person@example.com")
        except ValueError:
            logger.exception("failed for %s", "b.person@example.com", extra={"reason": "ip 198.51.100.9"})
    finally:
        logger.registered_handler.setStream(previous)
    line = json.loads(stream.getvalue().splitlines()[-1])
    text = json.dumps(line)
    for raw in ("a.person@example.com", "b.person@example.com", "198.51.100.9"):
        assert raw not in text
    assert line["message"] == "failed for [REDACTED:email]"


def test_records_from_other_libraries_are_redacted_by_the_filter():
    record = logging.LogRecord(
        "urllib3", logging.DEBUG, __file__, 1, "GET %s", ("/x?api_secret=abcdef123",), None
    )
    record.payload = {"email": "c.person@example.com"}
    redaction.RedactingFilter().filter(record)
    assert record.getMessage() == "GET /x?api_secret=[REDACTED:secret]"
    assert "c.person@example.com" not in str(record.payload)
