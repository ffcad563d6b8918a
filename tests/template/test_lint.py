"""cfn-lint on the SAM template and on its transformed CloudFormation (errors and warnings).

cfn-lint >= 1.54 validates AWS::Serverless::* only against SAM's schema, so the SAM file alone passes
even with a queue visibility shorter than the function timeout; the transformed template is where
rules such as E3505 (visibility vs timeout) and E3034 (ESM ranges) run.
"""

from __future__ import annotations

import json
from typing import Any

from cfnlint.api import ManualArgs, lint, lint_file

# Rule ids we accept, each with the reason. Empty: the template lints clean on errors and warnings.
IGNORED_RULES: dict[str, str] = {}
CONFIG = ManualArgs(regions=["us-east-1"], ignore_checks=sorted(IGNORED_RULES))


def _report(matches: list[Any]) -> list[str]:
    return [f"{m.rule.id} {m.message} (line {m.linenumber})" for m in matches]


def _lint_cfn(cfn: dict[str, Any]) -> list[str]:
    return _report(lint(json.dumps(cfn, indent=1), config=CONFIG))


def test_sam_template_lints_clean(template_path):
    assert _report(lint_file(template_path, config=CONFIG)) == []


def test_transformed_template_lints_clean(cfn):
    assert _lint_cfn(cfn) == []


BROKEN_CONSUMERS = [
    ("Resources/Ga4Queue/Properties/VisibilityTimeout", 5, "E3505"),
    (
        "Resources/MetaFunction/Properties/Events/Queue/Properties/FunctionResponseTypes",
        ["ReportBatchItemFailure"],
        "E3030",
    ),
    (
        "Resources/AppsflyerFunction/Properties/Events/Queue/Properties/ScalingConfig/MaximumConcurrency",
        1,
        "E3034",
    ),
]


def test_lint_on_the_transformed_template_catches_broken_consumers(transformed_with):
    # One template with all three faults: each lint run costs seconds.
    def mutate(template: dict[str, Any]) -> None:
        for path, value, _ in BROKEN_CONSUMERS:
            *parents, last = path.split("/")
            node = template
            for key in parents:
                node = node[key]
            node[last] = value

    found = {line.split(" ", 1)[0] for line in _lint_cfn(transformed_with(mutate))}
    assert {rule for _, _, rule in BROKEN_CONSUMERS} <= found
