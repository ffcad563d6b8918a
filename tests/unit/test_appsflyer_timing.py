"""AppsFlyer's restamp rule around UTC midnight, the late-event policy, the rate cap and the settings."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import requests

from conversion_relay.config import ConfigError
from conversion_relay.destinations import appsflyer
from conversion_relay.destinations.appsflyer import (
    AppsflyerDestination,
    LatePolicy,
    Settings,
    Target,
    TimestampRule,
    TokenBucket,
)
from conversion_relay.destinations.appsflyer_mobile import AppsflyerMobileDestination
from conversion_relay.destinations.base import Outcome, Prepared, Status
from conversion_relay.model import PURCHASE, Context, ConversionEvent, Source

MONDAY_NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
TUESDAY = datetime(2026, 3, 3, tzinfo=UTC)
SPEC = appsflyer.rules()["timestamp"]
MARGIN = timedelta(seconds=SPEC["margin_seconds"])
TOLERANCE = timedelta(seconds=SPEC["future_tolerance_seconds"])
MOBILE_GRACE = timedelta(seconds=SPEC["mobile_grace_seconds"])
MS = timedelta(milliseconds=1)


def make_event(occurred_at: datetime) -> ConversionEvent:
    return ConversionEvent(
        event_id="evt-1",
        name=PURCHASE,
        occurred_at=occurred_at,
        source=Source(provider="stripe", event_id="evt_1", event_type="x", object_id="cs_1"),
        value=Decimal("10"),
        currency="USD",
        context=Context(customer_user_id="cuid-1", appsflyer_id="1700000000000-1234567890123456789"),
    )


# -- the rule ----------------------------------------------------------------------------------------
WEB = TimestampRule.for_target(Target.WEB)


@pytest.mark.parametrize(
    ("occurred_at", "now", "verdict"),
    [
        # Monday's event: kept until Tuesday 00:00 UTC minus the send margin.
        (MONDAY_NOON, TUESDAY - MARGIN - MS, None),
        (MONDAY_NOON, TUESDAY - MARGIN, "late"),
        (MONDAY_NOON, TUESDAY + timedelta(hours=5), "late"),
        # The day is the UTC day of the event, whatever its clock time.
        (TUESDAY - MS, TUESDAY - MARGIN - MS, None),
        (TUESDAY - MS, TUESDAY - MARGIN, "late"),
        (TUESDAY, TUESDAY + timedelta(hours=23), None),
        (TUESDAY, TUESDAY + timedelta(days=1) - MARGIN, "late"),
        # An event in another time zone counts by its UTC day: 08:30 in Seoul on Tuesday is Monday UTC.
        (datetime.fromisoformat("2026-03-03T08:30:00+09:00"), TUESDAY - MARGIN, "late"),
        # Future: beyond the clock-skew tolerance only.
        (MONDAY_NOON + TOLERANCE, MONDAY_NOON, None),
        (MONDAY_NOON + TOLERANCE + MS, MONDAY_NOON, "future"),
    ],
)
def test_web_restamp_rule_around_utc_midnight(occurred_at: datetime, now: datetime, verdict: str | None):
    assert WEB.check(occurred_at, now) == verdict


@pytest.mark.parametrize(
    ("now", "verdict"),
    [
        (TUESDAY + MOBILE_GRACE - MARGIN - MS, None),
        (TUESDAY + MOBILE_GRACE - MARGIN, "late"),
    ],
)
def test_mobile_cutoff_has_its_grace(now: datetime, verdict: str | None):
    rule = TimestampRule.for_target(Target.MOBILE)
    assert rule.cutoff(MONDAY_NOON) == TUESDAY + MOBILE_GRACE
    assert rule.check(MONDAY_NOON, now) == verdict


# -- the policy, through both destinations ----------------------------------------------------------
def web(policy: LatePolicy, now: datetime, counted: list[str]) -> AppsflyerDestination:
    return AppsflyerDestination(
        {"bundle_id": "b", "web_dev_key": "k"},
        requests.Session(),
        late_policy=policy,
        clock=lambda: now,
        count=counted.append,
    )


def mobile(policy: LatePolicy, now: datetime, counted: list[str]) -> AppsflyerMobileDestination:
    return AppsflyerMobileDestination(
        {"app_id": "com.example.shop", "s2s_key": "k"},
        requests.Session(),
        late_policy=policy,
        clock=lambda: now,
        count=counted.append,
    )


@pytest.mark.parametrize("build", [web, mobile])
@pytest.mark.parametrize(
    ("policy", "now", "status", "metric", "reason_start"),
    [
        (LatePolicy.SEND, MONDAY_NOON + timedelta(hours=1), None, [], None),
        (LatePolicy.SEND, TUESDAY + timedelta(hours=3), None, ["TimestampLate"], None),
        (LatePolicy.REJECT, TUESDAY + timedelta(hours=3), Status.REJECT, ["TimestampLate"], "expired:"),
        (LatePolicy.SEND, MONDAY_NOON - timedelta(hours=1), None, ["TimestampFuture"], None),
        (LatePolicy.REJECT, MONDAY_NOON - timedelta(hours=1), Status.REJECT, ["TimestampFuture"], "future:"),
    ],
)
def test_late_event_policy(build, policy, now, status, metric, reason_start):
    counted: list[str] = []
    result = build(policy, now, counted).prepare(make_event(MONDAY_NOON))
    assert counted == metric
    if status is None:
        assert isinstance(result, Prepared), result
    else:
        assert isinstance(result, Outcome)
        assert result.status is status
        assert result.reason.startswith(reason_start)
        assert result.error_code == reason_start.rstrip(":")
        assert "cuid-1" not in result.reason


def test_late_web_event_is_sent_with_its_own_timestamp_under_send():
    counted: list[str] = []
    result = web(LatePolicy.SEND, TUESDAY + timedelta(days=3), counted).prepare(make_event(MONDAY_NOON))
    assert isinstance(result, Prepared)
    assert result.payload["timestamp"] == int(MONDAY_NOON.timestamp() * 1000)


# -- settings ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, Settings(Target.WEB, LatePolicy.SEND, appsflyer.DEFAULT_MAX_REQUESTS_PER_SECOND)),
        (
            {
                "APPSFLYER_TARGET": "mobile",
                "APPSFLYER_LATE_EVENT_POLICY": "Reject",
                "APPSFLYER_MAX_REQUESTS_PER_SECOND": "12.5",
            },
            Settings(Target.MOBILE, LatePolicy.REJECT, 12.5),
        ),
    ],
)
def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, env, expected):
    for name in ("APPSFLYER_TARGET", "APPSFLYER_LATE_EVENT_POLICY", "APPSFLYER_MAX_REQUESTS_PER_SECOND"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings.from_env() == expected


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("APPSFLYER_TARGET", "app"),
        ("APPSFLYER_LATE_EVENT_POLICY", "drop"),
        ("APPSFLYER_MAX_REQUESTS_PER_SECOND", "0"),
        ("APPSFLYER_MAX_REQUESTS_PER_SECOND", "-5"),
        ("APPSFLYER_MAX_REQUESTS_PER_SECOND", "fast"),
        ("APPSFLYER_MAX_REQUESTS_PER_SECOND", "inf"),
    ],
)
def test_invalid_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        Settings.from_env()


# -- the rate cap ------------------------------------------------------------------------------------
class FakeClock:
    """A clock that only moves when someone sleeps: waits are computed, never timed."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += seconds


@pytest.mark.parametrize(("rate", "burst", "requests_made"), [(10.0, 2, 12), (150.0, 8, 400), (1.0, 1, 5)])
def test_token_bucket_never_exceeds_burst_plus_rate_times_elapsed(
    rate: float, burst: int, requests_made: int
):
    clock = FakeClock()
    bucket = TokenBucket(rate, burst, clock=clock.time, sleep=clock.sleep)
    start = clock.now
    for made in range(1, requests_made + 1):
        bucket.acquire()
        elapsed = clock.now - start
        assert made <= burst + rate * elapsed + 1e-9
    # and it does not wait more than needed: the last request goes out exactly on schedule
    assert clock.now - start == pytest.approx((requests_made - burst) / rate)


def test_token_bucket_refills_while_idle():
    clock = FakeClock()
    bucket = TokenBucket(5.0, 5, clock=clock.time, sleep=clock.sleep)
    for _ in range(5):
        assert bucket.acquire() == 0.0
    clock.now += 0.4  # two tokens back
    assert [bucket.acquire() for _ in range(2)] == [0.0, 0.0]
    assert bucket.acquire() == pytest.approx(0.2)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_token_bucket_rejects_nonsense(rate: float, burst: int):
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)


def test_every_post_takes_a_token():
    taken: list[str] = []

    class Recording(TokenBucket):
        def acquire(self) -> float:
            taken.append("token")
            return 0.0

    destination = AppsflyerDestination(
        {"bundle_id": "b", "web_dev_key": "k"},
        requests.Session(),
        "http://127.0.0.1:9",
        rate_limiter=Recording(1.0, 1),
        timeout=(0.5, 0.5),
        count=lambda name: None,
    )
    prepared = destination.prepare(make_event(datetime.now(UTC)))
    assert isinstance(prepared, Prepared)
    [outcome] = destination.send([prepared])
    assert outcome.status is Status.RETRY  # nothing listens on port 9
    assert taken == ["token"]
