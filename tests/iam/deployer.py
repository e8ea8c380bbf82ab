"""The IAM policy the person (or CI role) deploying the stack needs, derived, not hand-kept.

CloudFormation creates, updates and deletes each resource with the deployer's
credentials (the stack has no service role), so the deployer needs every permission
the resource types' handlers list in the CloudFormation resource provider schemas
(CloudFormation user guide, "Resource type schema": handlers.<create|update|delete>.
permissions), as cfn-lint ships them, for every resource type of the translated
template. On top of those, what `sam deploy` itself does: the AWS::Serverless
transform needs cloudformation:CreateChangeSet on the transform's ARN (CloudFormation
user guide, "Controlling access with AWS Identity and Access Management",
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/using-iam-template.html),
the change set calls, and reading and writing the artifacts bucket.

Run ``python -m tests.iam.deployer > docs/deployer-policy.json`` to refresh the file
tests/iam/test_deployer.py compares with.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from deltaload.local.account import REGION
from tests.iam.roles import translate

HANDLERS = ("create", "update", "delete")
SAM_DEPLOY = [
    "cloudformation:CreateChangeSet",
    "cloudformation:DescribeChangeSet",
    "cloudformation:ExecuteChangeSet",
    "cloudformation:DeleteChangeSet",
    "cloudformation:DescribeStacks",
    "cloudformation:DescribeStackEvents",
    "cloudformation:DescribeStackResource",
    "cloudformation:GetTemplateSummary",
    "cloudformation:DeleteStack",
]
ARTIFACTS = ["s3:GetObject", "s3:PutObject", "s3:ListBucket", "s3:GetBucketLocation"]


@cache
def _schemas() -> dict[str, Any]:
    base = resources.files("cfnlint") / "data" / "schemas"
    providers = json.loads((base / "providers" / f"{REGION}.json").read_text())
    return {t: base / "resources" / f"{name}.json" for t, name in providers.items()}


def handler_permissions(resource_type: str) -> set[str]:
    """What CloudFormation's handlers of one resource type call, by its provider schema."""
    path = _schemas().get(resource_type)
    if path is None:
        raise KeyError(f"cfn-lint ships no provider schema for {resource_type}")
    schema = json.loads(path.read_text())
    return {
        permission
        for handler in HANDLERS
        for permission in schema.get("handlers", {}).get(handler, {}).get("permissions", [])
    }


def resource_types() -> list[str]:
    """Every resource type the stack can create (conditional ones included)."""
    translated = translate({"SourceSecretArn": "arn:aws:secretsmanager:::secret:x"})
    return sorted({r["Type"] for r in translated["Resources"].values()})


def deployer_policy() -> dict[str, Any]:
    """An identity policy that lets `sam deploy` create, update and delete the stack."""
    handlers = sorted(set().union(*(handler_permissions(t) for t in resource_types())))
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "SamDeployChangeSets",
                "Effect": "Allow",
                "Action": SAM_DEPLOY,
                "Resource": [
                    "arn:aws:cloudformation:*:*:stack/*",
                    "arn:aws:cloudformation:*:aws:transform/Serverless-2016-10-31",
                ],
            },
            {
                "Sid": "SamDeployArtifactsBucket",
                "Effect": "Allow",
                "Action": ARTIFACTS,
                "Resource": [
                    "arn:aws:s3:::YOUR-SAM-ARTIFACTS-BUCKET",
                    "arn:aws:s3:::YOUR-SAM-ARTIFACTS-BUCKET/*",
                ],
            },
            {
                "Sid": "CloudFormationResourceHandlers",
                "Effect": "Allow",
                "Action": handlers,
                "Resource": "*",
            },
        ],
    }


if __name__ == "__main__":
    print(json.dumps(deployer_policy(), indent=2))
