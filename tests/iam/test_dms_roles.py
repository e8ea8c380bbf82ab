"""The roles DMS assumes, against the policies the DMS user guide documents for them.

DMS, not our code, makes these calls, so no recording can show them: each role of
the translated template must allow at least what the documentation says DMS needs,
on the resources our endpoints hand DMS.
"""

from __future__ import annotations

from typing import Any

import pytest

from deltaload.local.account import ACCOUNT, REGION
from deltaload.local.template import Template
from tests.iam.evaluator import evaluate
from tests.iam.roles import ROOT, roles

SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:deltaload/source-AbCdEf"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
BUCKET = "deltaload-local-datalakebucket"
EXISTING_BUCKET = "company-lake"

# DMS user guide, "Prerequisites for using Amazon S3 as a target"
# (https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Target.S3.html#CHAP_Target.S3.Prerequisites):
# the role of the S3 target endpoint needs this policy (bucket name substituted).
DOCUMENTED_S3_TARGET_POLICY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:DeleteObject", "s3:PutObjectTagging"],
            "Resource": ["arn:aws:s3:::{bucket}/*"],
        },
        {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": ["arn:aws:s3:::{bucket}"]},
    ],
}

# DMS user guide, "Using secrets to access AWS Database Migration Service endpoints"
# (https://docs.aws.amazon.com/dms/latest/userguide/security_iam_secretsmanager.html):
# the role named by SecretsManagerAccessRoleArn is trusted by the Regional DMS principal
# and may read the secret, and decrypt it when a customer managed key encrypts it.
DOCUMENTED_SECRET_ACCESS_POLICY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "{secret}"},
        {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "{key}"},
    ],
}


def _template(**parameters: str) -> Template:
    return Template.load(ROOT, {"SourceSecretArn": SECRET, **parameters})


def _documented_requests(
    policy: dict[str, Any], objects: str, **values: str
) -> list[tuple[str, str]]:
    """Each documented (action, resource), object wildcards narrowed to ``objects``."""
    requests: list[tuple[str, str]] = []
    for statement in policy["Statement"]:
        actions = statement["Action"]
        resources = statement["Resource"]
        for action in actions if isinstance(actions, list) else [actions]:
            for resource in resources if isinstance(resources, list) else [resources]:
                arn = resource.format(**values)
                requests.append((action, arn.replace("/*", f"/{objects}")))
    return requests


@pytest.mark.parametrize("existing_bucket", ["", EXISTING_BUCKET])
def test_the_s3_target_role_grants_the_documented_policy(existing_bucket: str) -> None:
    template = _template(ExistingBucketName=existing_bucket)
    bucket = existing_bucket or BUCKET
    role = roles(template)["DmsS3AccessRole"]
    staging = template.parameters["StagingPrefix"]
    # The run's target endpoint sets BucketFolder to <staging>/<table>/<run>; DMS writes
    # its LOAD files below it, and lists the bucket itself with no prefix we control.
    written = f"{staging}orders/orders-20260101T000100Z/dwh/orders/LOAD00000001.parquet"
    missing = [
        f"{action} on {resource}"
        for action, resource in _documented_requests(
            DOCUMENTED_S3_TARGET_POLICY, written, bucket=bucket
        )
        if not evaluate(role["statements"], action, resource, {}).allowed
    ]
    assert not missing, f"DmsS3AccessRole lacks the documented {missing}"
    assert _principals(role) == ["dms.amazonaws.com"]


def test_the_s3_target_role_cannot_touch_published_data() -> None:
    """Least privilege beyond the documented policy: DMS writes only under the staging prefix."""
    role = roles(_template())["DmsS3AccessRole"]
    published = f"arn:aws:s3:::{BUCKET}/lake/dwh/orders/run=orders-1/part-0.parquet"
    for action in ("s3:PutObject", "s3:DeleteObject", "s3:PutObjectTagging"):
        assert not evaluate(role["statements"], action, published, {}).allowed, action


@pytest.mark.parametrize("kms_key", ["", KEY])
def test_the_secret_access_role_grants_the_documented_policy(kms_key: str) -> None:
    role = roles(_template(SourceSecretKmsKeyArn=kms_key))["DmsSecretsAccessRole"]
    statements = role["statements"]
    assert evaluate(statements, "secretsmanager:GetSecretValue", SECRET, {}).allowed
    other = SECRET.replace("deltaload/source", "someone-else")
    assert not evaluate(statements, "secretsmanager:GetSecretValue", other, {}).allowed
    via = {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"}
    assert evaluate(statements, "kms:Decrypt", KEY, via).allowed is bool(kms_key)
    # The Regional service principal, as the page documents for this role.
    assert _principals(role) == [f"dms.{REGION}.amazonaws.com"]


@pytest.mark.parametrize(
    ("logical_id", "name", "managed"),
    [
        ("DmsVpcRole", "dms-vpc-role", "AmazonDMSVPCManagementRole"),
        ("DmsCloudWatchLogsRole", "dms-cloudwatch-logs-role", "AmazonDMSCloudWatchLogsRole"),
    ],
)
def test_the_account_roles_dms_looks_up_by_name(logical_id: str, name: str, managed: str) -> None:
    """DMS user guide, "Creating the IAM roles to use with AWS DMS"
    (https://docs.aws.amazon.com/dms/latest/userguide/security-iam.html#CHAP_Security.APIRole):
    dms-vpc-role with AmazonDMSVPCManagementRole and dms-cloudwatch-logs-role with
    AmazonDMSCloudWatchLogsRole, trusted by dms.amazonaws.com. They are account-wide, so the
    stack creates them only when asked (CreateDmsVpcRole, CreateDmsCloudWatchLogsRole)."""
    created = roles(_template())[logical_id]
    assert created["name"] == name
    assert created["managed"] == [f"arn:aws:iam::aws:policy/service-role/{managed}"]
    assert _principals(created) == ["dms.amazonaws.com"]
    switch = {"DmsVpcRole": "CreateDmsVpcRole"}.get(logical_id, "CreateDmsCloudWatchLogsRole")
    assert logical_id not in roles(_template(**{switch: "false"}))


def _principals(role: dict[str, Any]) -> list[str]:
    services: list[str] = []
    for statement in role["trust"]["Statement"]:
        assert statement["Effect"] == "Allow" and statement["Action"] in (
            "sts:AssumeRole",
            ["sts:AssumeRole"],
        )
        service = statement["Principal"]["Service"]
        services += service if isinstance(service, list) else [service]
    return services
