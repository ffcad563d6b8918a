"""enqueue() must put every message on every queue or raise, so the ingest never answers 2xx too early."""

from __future__ import annotations

import pytest

from conversion_relay import ingest
from conversion_relay.errors import EnqueueFailed


class FlakySqs:
    """Fails the entries named in `fail_ids` for the first `fail_rounds` calls per queue."""

    def __init__(self, fail_ids=(), fail_rounds=0, raise_error=False):
        self.fail_ids = set(fail_ids)
        self.fail_rounds = fail_rounds
        self.raise_error = raise_error
        self.calls: list[tuple[str, list[str]]] = []
        self.delivered: dict[str, list[str]] = {}

    def send_message_batch(self, QueueUrl, Entries):
        if self.raise_error:
            raise ConnectionError("sqs unreachable")
        self.calls.append((QueueUrl, [e["Id"] for e in Entries]))
        round_number = sum(1 for url, _ in self.calls if url == QueueUrl)
        ok, failed = [], []
        for entry in Entries:
            if entry["Id"] in self.fail_ids and round_number <= self.fail_rounds:
                failed.append({"Id": entry["Id"], "Code": "InternalError", "SenderFault": False})
            else:
                ok.append({"Id": entry["Id"]})
                self.delivered.setdefault(QueueUrl, []).append(entry["MessageBody"])
        return {"Successful": ok, "Failed": failed}


def messages(count):
    return [{"event_id": f"e{i}", "body": f'{{"n": {i}}}'} for i in range(count)]


@pytest.fixture
def sqs(monkeypatch):
    def install(fake):
        monkeypatch.setattr(ingest, "_sqs", lambda: fake)
        return fake

    return install


def test_every_message_reaches_every_queue_in_batches_of_ten(sqs):
    fake = sqs(FlakySqs())
    ingest.enqueue(messages(23), ["q1", "q2"], "stripe:evt_1")
    assert [len(ids) for _, ids in fake.calls] == [10, 10, 3, 10, 10, 3]
    assert len(fake.delivered["q1"]) == 23 and len(fake.delivered["q2"]) == 23


def test_partially_failed_entries_are_resent_alone(sqs):
    fake = sqs(FlakySqs(fail_ids={"1"}, fail_rounds=1))
    ingest.enqueue(messages(3), ["q1"], "c")
    assert fake.calls == [("q1", ["0", "1", "2"]), ("q1", ["1"])]
    assert sorted(fake.delivered["q1"]) == sorted(m["body"] for m in messages(3))


def test_entries_that_keep_failing_raise_so_the_provider_retries(sqs):
    sqs(FlakySqs(fail_ids={"0"}, fail_rounds=99))
    with pytest.raises(EnqueueFailed, match="1 message"):
        ingest.enqueue(messages(2), ["q1"], "c")


def test_an_unreachable_queue_raises(sqs):
    sqs(FlakySqs(raise_error=True))
    with pytest.raises(EnqueueFailed):
        ingest.enqueue(messages(1), ["q1"], "c")


def test_messages_carry_the_correlation_and_event_ids(sqs):
    class Capturing(FlakySqs):
        def send_message_batch(self, QueueUrl, Entries):
            self.entries = Entries
            return super().send_message_batch(QueueUrl, Entries)

    fake = sqs(Capturing())
    ingest.enqueue(messages(1), ["q1"], "stripe:evt_9")
    attributes = fake.entries[0]["MessageAttributes"]
    assert attributes["correlation_id"]["StringValue"] == "stripe:evt_9"
    assert attributes["event_id"]["StringValue"] == "e0"
