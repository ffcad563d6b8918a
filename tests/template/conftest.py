"""Fixtures: the SAM template as loaded, and the CloudFormation SAM turns it into (offline)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tools.sam2cfn import load_template, transform_dict

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"


@pytest.fixture(scope="session")
def destinations() -> dict[str, str]:
    """Destination name -> logical-id prefix (Ga4Queue, Ga4DeadLetterQueue, Ga4Function, Ga4SecretName)."""
    return {"ga4": "Ga4", "meta": "Meta", "appsflyer": "Appsflyer"}


@pytest.fixture(scope="session")
def template_path() -> Path:
    return TEMPLATE


@pytest.fixture(scope="session")
def sam() -> dict[str, Any]:
    return load_template(TEMPLATE)


@pytest.fixture(scope="session")
def cfn(sam: dict[str, Any]) -> dict[str, Any]:
    return transform_dict(sam)


@pytest.fixture
def transformed_with(sam: dict[str, Any]) -> Callable[[Callable[[dict[str, Any]], None]], dict[str, Any]]:
    """Transform a mutated copy of the SAM template: `transformed_with(lambda t: ...)`."""

    def build(mutate: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        template = copy.deepcopy(sam)
        mutate(template)
        return transform_dict(template)

    return build
