"""The template's AppsFlyer defaults agree with the code, and the rate budget stays under 60,000 a minute."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conversion_relay.destinations import appsflyer, appsflyer_mobile
from tools.sam2cfn import load_template

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


@pytest.fixture(scope="module")
def parameters() -> dict[str, Any]:
    return load_template(TEMPLATE)["Parameters"]


def test_default_concurrency_times_rate_stays_under_appsflyers_limit(parameters):
    containers = int(parameters["AppsflyerMaximumConcurrency"]["Default"])
    per_second = float(parameters["AppsflyerMaxRequestsPerSecond"]["Default"])
    assert containers * per_second * 60 < appsflyer.MAX_POSTS_PER_MINUTE == 60_000


def test_one_container_alone_cannot_exceed_the_limit(parameters):
    assert (
        float(parameters["AppsflyerMaxRequestsPerSecond"]["MaxValue"]) * 60 <= appsflyer.MAX_POSTS_PER_MINUTE
    )


@pytest.mark.parametrize(
    ("parameter", "code_default"),
    [
        ("AppsflyerBaseUrl", appsflyer.DEFAULT_BASE_URL),
        ("AppsflyerMobileBaseUrl", appsflyer_mobile.DEFAULT_MOBILE_BASE_URL),
        ("AppsflyerTarget", appsflyer.Target.WEB.value),
        ("AppsflyerLateEventPolicy", appsflyer.LatePolicy.SEND.value),
        ("AppsflyerAmbiguousPolicy", appsflyer.Settings().ambiguous_policy.value),
        ("AppsflyerMaxRequestsPerSecond", appsflyer.DEFAULT_MAX_REQUESTS_PER_SECOND),
    ],
)
def test_template_defaults_match_the_code(parameters, parameter: str, code_default: Any):
    default = parameters[parameter]["Default"]
    assert (float(default) if isinstance(code_default, float) else default) == code_default


@pytest.mark.parametrize(
    ("parameter", "enum"),
    [
        ("AppsflyerTarget", appsflyer.Target),
        ("AppsflyerLateEventPolicy", appsflyer.LatePolicy),
        ("AppsflyerAmbiguousPolicy", appsflyer.AmbiguousPolicy),
    ],
)
def test_allowed_values_are_what_the_code_accepts(parameters, parameter: str, enum: Any):
    assert sorted(parameters[parameter]["AllowedValues"]) == sorted(member.value for member in enum)
