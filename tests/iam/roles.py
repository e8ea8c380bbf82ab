"""The IAM roles CloudFormation would create from template.yaml, with their policies resolved.

template.yaml is translated by the SAM translator library (aws-sam-translator, the
code behind the AWS::Serverless transform), so each function's and the state machine's
role comes out as SAM deploys it, policy templates (LambdaInvokePolicy, ...) expanded.
Its intrinsics are then resolved with the values the offline runtime created (real
ARN formats: table/..., function:..., stateMachine:...).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3
from cfn_tools import load_yaml
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

from deltaload.local.account import ACCOUNT, REGION
from deltaload.local.template import STACK, Template

ROOT = Path(__file__).resolve().parents[2]


def _no_managed_policies() -> dict[str, str]:
    """SAM asks for AWS managed policy ARNs only when Policies names one; ours names none."""
    return {}


def translate(parameters: Mapping[str, str]) -> dict[str, Any]:
    """template.yaml after the AWS::Serverless transform, for these parameter values."""
    body = load_yaml((ROOT / "template.yaml").read_text())
    for resource in body["Resources"].values():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri", "DefinitionUri"):
            if isinstance(properties.get(key), str):  # local paths: sam package uploads them
                properties[key] = f"s3://deltaload-artifacts/{key}"
    values = {
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
        "AWS::Partition": "aws",
        "AWS::StackName": STACK,
        **parameters,
    }
    # The transform's own entry point; the session only tells it the Region.
    translator = Translator(None, Parser(), boto_session=boto3.Session(region_name=REGION))
    return translator.translate(
        body, parameter_values=values, get_managed_policy_map=_no_managed_policies
    )


class _Resolver(Template):
    """The local template resolver, taught the attributes the translated template adds."""

    def _get_att(self, logical_id: str, attribute: str) -> str:
        # Ref of a topic or state machine is its ARN; the name is the ARN's last part.
        if attribute in ("TopicName", "Name") and self.arns[logical_id].startswith(
            ("arn:aws:sns:", "arn:aws:states:")
        ):
            return self.arns[logical_id].rsplit(":", 1)[-1]
        return super()._get_att(logical_id, attribute)


def roles(local: Template, parameters: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Each role's statements (inline policies of the translated template), resolved.

    Keys are the role's logical id (``StarterFunctionRole``, ``LoadStateMachineRole``,
    ``DmsS3AccessRole``, ...); values hold ``statements``, ``managed`` (AWS managed
    policy ARNs) and ``trust`` (the assume-role policy).
    """
    translated = translate({**local.parameters, **(parameters or {})})
    resolver = _Resolver(
        root=ROOT,
        body=translated,
        parameters={**local.parameters, **(parameters or {})},
        physical_ids=dict(local.physical_ids),
        arns=dict(local.arns),
    )
    for logical_id, resource in translated["Resources"].items():
        if logical_id not in resolver.physical_ids and resource["Type"] == "AWS::IAM::Role":
            name = f"{STACK}-{logical_id}"
            resolver.physical_ids[logical_id] = name
            resolver.arns[logical_id] = f"arn:aws:iam::{ACCOUNT}:role/{name}"
    found: dict[str, Any] = {}
    for logical_id, resource in translated["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role" or not resolver.condition(
            resource.get("Condition")
        ):
            continue
        properties = resolver.resolve(copy.deepcopy(resource["Properties"]))
        statements = [
            statement
            for policy in properties.get("Policies", [])
            for statement in _list(policy["PolicyDocument"]["Statement"])
        ]
        found[logical_id] = {
            "statements": statements,
            "managed": properties.get("ManagedPolicyArns", []),
            "trust": properties.get("AssumeRolePolicyDocument", {}),
            "name": properties.get("RoleName"),
        }
    return found


def role_of(logical_id: str) -> str:
    """The translated template's role of a function or state machine (SAM names it so)."""
    return f"{logical_id}Role"


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
