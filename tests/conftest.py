"""Test-wide environment: never reach a real AWS account, and name the service in log lines."""

from __future__ import annotations

import os

os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "conversion-relay-test")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "ConversionRelayTest")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
# Dummy credentials: a test that forgets its moto endpoint fails to sign-in instead of touching an account.
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ.pop("AWS_PROFILE", None)
