"""A small `make chaos` in `make test`: 60 webhooks with duplicates while the fakes inject faults.

It runs tools/chaos.py in a fresh interpreter: the consumers' HTTP read timeout is read when
conversion_relay.http is first imported, and this test session imported it long ago with the 10 s
default; chaos needs 0.5 s so that a held request becomes a timeout. The fixed seed makes the
fault sequence each fake draws the same on every run (which request meets which fault still
depends on thread timing).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

PROJECT_ROOT = Path(__file__).resolve().parents[2]
WEBHOOKS = 60
SEED = 7
# Typically about 20 s on a shared 2-core machine; the bound only stops a hung run.
MAX_SECONDS = 120
DESTINATIONS = ("ga4", "meta", "appsflyer")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("chaos") / "report.json"
    completed = subprocess.run(
        [
            sys.executable,
            str(PROJECT_ROOT / "tools" / "chaos.py"),
            "--webhooks",
            str(WEBHOOKS),
            "--seed",
            str(SEED),
            "--max-seconds",
            str(MAX_SECONDS),
            "--json",
            str(path),
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=MAX_SECONDS + 60,
        check=False,
    )
    assert path.exists(), f"chaos wrote no report (exit {completed.returncode}):\n{completed.stderr[-3000:]}"
    data = json.loads(path.read_text())
    data["exit_code"] = completed.returncode
    data["output"] = completed.stdout
    return data


def test_the_run_settled_and_every_check_passed(report: dict[str, Any]):
    failed = [check for check in report["checks"] if not check["ok"]]
    assert failed == [], report["output"]
    assert report["exit_code"] == 0, report["output"]


def test_every_webhook_was_posted_and_each_delivery_accepted_once(report: dict[str, Any]):
    webhooks = report["webhooks"]
    assert webhooks["posted"] == WEBHOOKS
    assert webhooks["duplicate_copies"] > 0  # the run did exercise duplicates
    assert webhooks["accepted"] == webhooks["deliveries"]
    assert webhooks["accepted_twice"] == 0
    assert webhooks["answered_duplicate"] == webhooks["duplicate_copies"]


@pytest.mark.parametrize("destination", DESTINATIONS)
def test_nothing_lost(report: dict[str, Any], destination: str):
    result = report["destinations"][destination]
    assert result["lost"] == 0, result["lost_ids"]
    assert result["expected"] == report["webhooks"]["accepted"]
    assert result["delivered"] + result["in_dlq"] - result["delivered_and_in_dlq"] == result["expected"]
    assert result["dlq_without_reason"] == 0


@pytest.mark.parametrize("destination", DESTINATIONS)
def test_nothing_sent_again_after_an_answered_delivery(report: dict[str, Any], destination: str):
    result = report["destinations"][destination]
    assert result["double_sent"] == 0, result["double_sent_ids"]


def test_faults_were_injected(report: dict[str, Any]):
    faults = {
        kind: sum(report["destinations"][name]["faults"][kind] for name in DESTINATIONS)
        for kind in ("http_5xx", "http_429", "timeout", "dropped")
    }
    # Without faults the run proves nothing; with the fixed seed each kind is drawn several times.
    assert all(count > 0 for count in faults.values()), faults
