from __future__ import annotations

import pytest

from conversion_relay import config
from conversion_relay.config import ConfigError, Settings


@pytest.fixture(autouse=True)
def fresh_mapping(monkeypatch):
    monkeypatch.delenv("MAPPING_OVERRIDES", raising=False)
    config.mapping.cache_clear()
    yield
    config.mapping.cache_clear()


@pytest.mark.parametrize(
    ("destination", "canonical", "expected"),
    [
        ("ga4", "purchase", "purchase"),
        ("ga4", "refund", "refund"),
        ("ga4", "subscription_renewal", "purchase"),
        ("meta", "purchase", "Purchase"),
        ("meta", "refund", None),
        ("meta", "subscription_start", "Subscribe"),
        ("appsflyer", "refund", "af_refund"),
        ("appsflyer", "subscription_renewal", "af_subscribe"),
        ("meta", "lead_won", "lead_won"),  # custom names pass through
    ],
)
def test_default_event_names(destination, canonical, expected):
    assert config.destination_event_name(destination, canonical) == expected


def test_overrides_merge_key_by_key(monkeypatch):
    monkeypatch.setenv(
        "MAPPING_OVERRIDES",
        '{"event_names": {"meta": {"refund": "Refund"}}, "metadata_keys": {"ga_client_id": "gaCid"}}',
    )
    config.mapping.cache_clear()
    assert config.destination_event_name("meta", "refund") == "Refund"
    assert config.destination_event_name("meta", "purchase") == "Purchase"  # untouched default
    assert config.metadata_key("ga_client_id") == "gaCid"
    assert config.metadata_key("fbp") == "fbp"


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]"])
def test_bad_overrides_are_a_clear_config_error(monkeypatch, raw):
    monkeypatch.setenv("MAPPING_OVERRIDES", raw)
    with pytest.raises(ConfigError, match="MAPPING_OVERRIDES"):
        config.mapping()


def test_settings_require_a_queue_per_enabled_destination(monkeypatch):
    monkeypatch.setenv("ENABLED_DESTINATIONS", "ga4, meta")
    monkeypatch.setenv("GA4_QUEUE_URL", "https://q/ga4")
    monkeypatch.delenv("META_QUEUE_URL", raising=False)
    with pytest.raises(ConfigError, match="META_QUEUE_URL"):
        Settings.from_env()
    monkeypatch.setenv("META_QUEUE_URL", "https://q/meta")
    assert Settings.from_env().enabled_destinations == ("ga4", "meta")


def test_unknown_destination_is_refused(monkeypatch):
    monkeypatch.setenv("ENABLED_DESTINATIONS", "ga4,tiktok")
    with pytest.raises(ConfigError, match="tiktok"):
        Settings.from_env()
