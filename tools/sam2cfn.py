"""Transform the SAM template to plain CloudFormation offline, so cfn-lint and tests see what AWS deploys.

cfn-lint >= 1.54 validates AWS::Serverless::* against SAM's schema only and no longer checks the
resources SAM generates (queue visibility vs function timeout, ESM settings, ...). Linting the
transformed template brings those checks back.

    AWS_DEFAULT_REGION=us-east-1 python tools/sam2cfn.py template.yaml build/cfn.json

Needs no credentials and no network (region: AWS_DEFAULT_REGION, else us-east-1): local
CodeUri/ContentUri are rewritten to dummy s3:// URIs, and managed-policy names are not looked up in IAM.
Importable: transform_template(path) -> dict, transform_dict(loaded) -> dict, load_template(path).
"""

from __future__ import annotations

import copy
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import intrinsics_multi_constructor

DEFAULT_REGION = "us-east-1"
_DUMMY_BUCKET = "sam2cfn-offline"
# Properties SAM uploads from the local tree at package time; samtranslator only accepts s3:// URIs.
_LOCAL_URI_PROPERTIES = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
}


class _CfnYamlLoader(yaml.SafeLoader):
    """SafeLoader that turns !Ref, !Sub, !GetAtt ... into their long forms ({"Fn::Sub": ...}).

    A subclass, so registering the tags does not change yaml.SafeLoader for the rest of the process
    (samtranslator.yaml_helper.yaml_parse registers them on SafeLoader itself).
    """


_CfnYamlLoader.add_multi_constructor("!", intrinsics_multi_constructor)


class _NoManagedPolicies:
    """Stands in for samtranslator's ManagedPolicyLoader: policies named by ARN need no IAM call."""

    def load(self) -> dict[str, str]:
        return {}


def load_template(path: str | Path) -> dict[str, Any]:
    """Read a SAM/CloudFormation template (YAML with short-form tags, or JSON) into plain dicts."""
    text = Path(path).read_text(encoding="utf-8")
    template = yaml.load(text, Loader=_CfnYamlLoader)
    if not isinstance(template, dict):
        raise ValueError(f"{path}: a template must be a mapping at the top level")
    return template


def _with_s3_uris(template: dict[str, Any]) -> dict[str, Any]:
    template = copy.deepcopy(template)
    for logical_id, resource in template.get("Resources", {}).items():
        prop = _LOCAL_URI_PROPERTIES.get(resource.get("Type", ""))
        if prop is None:
            continue
        properties = resource.setdefault("Properties", {})
        uri = properties.get(prop)
        if uri is None or (isinstance(uri, str) and not uri.startswith("s3://")):
            properties[prop] = f"s3://{_DUMMY_BUCKET}/{logical_id}.zip"
    return template


def transform_dict(
    template: dict[str, Any], parameter_values: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The CloudFormation template SAM would deploy for `template` (a loaded SAM template).

    samtranslator reads the region (for AWS::Region / AWS::Partition) from the environment; without
    one, us-east-1 is set for the call only, so importing this module changes nothing else.
    """
    with _region():
        return transform(_with_s3_uris(template), dict(parameter_values or {}), _NoManagedPolicies())  # type: ignore[arg-type]


@contextmanager
def _region() -> Iterator[None]:
    if os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION"):
        yield
        return
    os.environ["AWS_DEFAULT_REGION"] = DEFAULT_REGION
    try:
        yield
    finally:
        os.environ.pop("AWS_DEFAULT_REGION", None)


def transform_template(path: str | Path, parameter_values: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load the SAM template at `path` and transform it to CloudFormation."""
    return transform_dict(load_template(path), parameter_values)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python tools/sam2cfn.py template.yaml build/cfn.json", file=sys.stderr)
        return 2
    source, target = Path(argv[0]), Path(argv[1])
    cfn = transform_template(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(cfn, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{source} -> {target}: {len(cfn.get('Resources', {}))} resources")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
