"""The source probe's role: least privilege, and the ENI permissions a function in a VPC needs.

The contract test (tests/iam/test_contract.py) checks the calls the probe makes offline;
the decryption happens inside Secrets Manager (kms:ViaService) and Lambda creates the
network interfaces, so neither shows in a recording: they are checked here.
"""

from __future__ import annotations

from deltaload.local.account import ACCOUNT, REGION
from deltaload.local.template import Template
from tests.iam.evaluator import evaluate
from tests.iam.roles import ROOT, roles

SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:deltaload/source-AbCdEf"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
VIA_SECRETS = {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"}
# Lambda developer guide, "Giving Lambda functions access to resources in an Amazon VPC":
# the execution role needs the ENI actions of the AWS managed policy below.
VPC_ACCESS = "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"


def _role(**parameters: str) -> dict:
    template = Template.load(ROOT, {"SourceSecretArn": SECRET, **parameters})
    return roles(template, parameters)["ProbeSourceFunctionRole"]


def test_the_probe_reads_only_the_source_secret_and_the_controller_item() -> None:
    statements = _role()["statements"]
    assert evaluate(statements, "secretsmanager:GetSecretValue", SECRET, {}).allowed
    other = SECRET.replace("deltaload/source", "someone-else")
    assert not evaluate(statements, "secretsmanager:GetSecretValue", other, {}).allowed
    granted = {
        action
        for action in ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
        for statement in statements
        if action in str(statement.get("Action"))
    }
    assert granted == {"dynamodb:GetItem"}
    assert not evaluate(statements, "kms:Decrypt", KEY, VIA_SECRETS).allowed
    assert not evaluate(statements, "dms:CreateReplicationInstance", "*", {}).allowed
    assert not evaluate(statements, "s3:GetObject", "arn:aws:s3:::any/key", {}).allowed


def test_a_customer_managed_key_is_decrypted_only_through_secrets_manager() -> None:
    statements = _role(SourceSecretKmsKeyArn=KEY)["statements"]
    assert evaluate(statements, "kms:Decrypt", KEY, VIA_SECRETS).allowed
    assert not evaluate(statements, "kms:Decrypt", KEY, {}).allowed


def test_the_probe_in_the_vpc_has_the_eni_permissions() -> None:
    assert VPC_ACCESS in _role()["managed"]
