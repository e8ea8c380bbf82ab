"""The functions' Lambda runtime and the optional VPC endpoints of template.yaml.

See docs/aws-fidelity.md ("Lambda runtime", "Networking") for the AWS pages behind them.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from cfn_tools import load_yaml

from tests.template.test_template import FUNCTIONS, effective_function_property, evaluate

ROOT = Path(__file__).resolve().parents[2]
# Lambda runtimes (https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html):
# python3.13 runs on Amazon Linux 2023 and is supported until 2029-06-30.
RUNTIME = "python3.13"
ARCHITECTURE = "arm64"


@pytest.fixture(scope="module")
def template() -> Mapping[str, Any]:
    return load_yaml((ROOT / "template.yaml").read_text())


@pytest.mark.parametrize("lid", sorted(FUNCTIONS.values()))
def test_every_function_runs_the_layers_runtime_and_architecture(
    template: Mapping[str, Any], lid: str
) -> None:
    layer = template["Resources"]["DeltaloadLayer"]
    assert effective_function_property(template, lid, "Runtime") == RUNTIME
    assert effective_function_property(template, lid, "Architectures") == [ARCHITECTURE]
    assert layer["Metadata"]["BuildMethod"] == RUNTIME
    assert layer["Metadata"]["BuildArchitecture"] == ARCHITECTURE
    assert layer["Properties"]["CompatibleRuntimes"] == [RUNTIME]
    assert layer["Properties"]["CompatibleArchitectures"] == [ARCHITECTURE]


def test_no_resource_names_another_runtime() -> None:
    text = (ROOT / "template.yaml").read_text()
    assert set(re.findall(r"python3\.\d+", text)) == {RUNTIME}


def test_the_project_itself_still_supports_python_311() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"


def test_the_layer_no_longer_caps_pyarrow() -> None:
    """The cap below 21 existed only for the python3.11 runtime's glibc 2.26."""
    lines = (ROOT / "src" / "requirements.txt").read_text().splitlines()
    pyarrow = [line for line in lines if line.startswith("pyarrow")]
    assert pyarrow == ["pyarrow>=15"]


def _defaults(template: Mapping[str, Any]) -> dict[str, Any]:
    return {p: spec.get("Default", "") for p, spec in template["Parameters"].items()}


def test_vpc_endpoints_are_created_only_on_request(template: Mapping[str, Any]) -> None:
    resources = template["Resources"]
    endpoint_ids = ("S3GatewayEndpoint", "SecretsManagerEndpoint", "VpcEndpointSecurityGroup")
    params = _defaults(template)
    assert params["CreateVpcEndpoints"] == "false"
    for value, expected in (("true", True), ("false", False)):
        params["CreateVpcEndpoints"] = value
        for lid in endpoint_ids:
            condition = {"Condition": resources[lid]["Condition"]}
            assert evaluate(condition, template["Conditions"], params) is expected, lid


def test_vpc_endpoints_serve_s3_and_secrets_manager_to_the_replication_subnets(
    template: Mapping[str, Any],
) -> None:
    resources = template["Resources"]
    s3 = resources["S3GatewayEndpoint"]["Properties"]
    assert s3["VpcEndpointType"] == "Gateway"
    assert s3["ServiceName"] == {"Fn::Sub": "com.amazonaws.${AWS::Region}.s3"}
    assert s3["RouteTableIds"] == {"Ref": "PrivateRouteTableIds"}
    secrets = resources["SecretsManagerEndpoint"]["Properties"]
    assert secrets["VpcEndpointType"] == "Interface"
    assert secrets["ServiceName"] == {"Fn::Sub": "com.amazonaws.${AWS::Region}.secretsmanager"}
    assert secrets["SubnetIds"] == [{"Ref": "Subnet1"}, {"Ref": "Subnet2"}]
    assert secrets["PrivateDnsEnabled"] is True  # DMS calls the regional name
    group = resources["VpcEndpointSecurityGroup"]["Properties"]
    (ingress,) = group["SecurityGroupIngress"]
    assert (ingress["IpProtocol"], ingress["FromPort"], ingress["ToPort"]) == ("tcp", 443, 443)
    assert ingress["SourceSecurityGroupId"] == {"Ref": "ReplicationInstanceSecurityGroup"}


def test_asking_for_endpoints_requires_the_vpc_and_its_route_tables(
    template: Mapping[str, Any],
) -> None:
    rule = template["Rules"]["VpcEndpointsNeedTheVpc"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "CreateVpcEndpoints"}, "true"]}
    asserted = [a["Assert"] for a in rule["Assertions"]]
    assert {"Fn::Not": [{"Fn::Equals": [{"Ref": "VpcId"}, ""]}]} in asserted
    assert {"Fn::Not": [{"Fn::Contains": [{"Ref": "PrivateRouteTableIds"}, ""]}]} in asserted


def test_the_functions_run_outside_any_vpc(template: Mapping[str, Any]) -> None:
    """They reach DynamoDB, S3, Step Functions, SNS, DMS and X-Ray over Lambda's network;
    a VpcConfig would need endpoints or NAT for each (README, Deploy to AWS, Network).
    The source probe is the one exception: it connects to the source database."""
    assert "VpcConfig" not in template["Globals"]["Function"]
    for lid in [*FUNCTIONS.values(), "CleanupAbortedFunction"]:
        if lid == "ProbeSourceFunction":
            continue
        assert "VpcConfig" not in template["Resources"][lid]["Properties"], lid


def test_the_probe_runs_where_the_replication_compute_does(template: Mapping[str, Any]) -> None:
    """In Subnet1/Subnet2 with ReplicationInstanceSecurityGroup, which reach the source;
    outside any VPC when the stack switches the probe off (it then connects nowhere)."""
    config = template["Resources"]["ProbeSourceFunction"]["Properties"]["VpcConfig"]
    condition, inside, outside = config["Fn::If"]
    assert condition == "ProbeOn"
    assert template["Conditions"]["ProbeOn"] == {"Fn::Equals": [{"Ref": "ProbeSource"}, "true"]}
    assert inside == {
        "SubnetIds": [{"Ref": "Subnet1"}, {"Ref": "Subnet2"}],
        "SecurityGroupIds": [{"Ref": "ReplicationInstanceSecurityGroup"}],
    }
    assert outside == {"Ref": "AWS::NoValue"}


def test_the_endpoints_cover_what_the_probe_calls(template: Mapping[str, Any]) -> None:
    """Secrets Manager (interface, reachable from the replication security group) and
    DynamoDB (a gateway on the subnets' route tables), created with CreateVpcEndpoints."""
    resources = template["Resources"]
    dynamodb = resources["DynamoDBGatewayEndpoint"]
    assert dynamodb["Condition"] == "CreateEndpoints"
    assert dynamodb["Properties"]["VpcEndpointType"] == "Gateway"
    assert dynamodb["Properties"]["ServiceName"] == {
        "Fn::Sub": "com.amazonaws.${AWS::Region}.dynamodb"
    }
    assert dynamodb["Properties"]["RouteTableIds"] == {"Ref": "PrivateRouteTableIds"}
    ingress = resources["VpcEndpointSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert {"Ref": "ReplicationInstanceSecurityGroup"} in [
        r["SourceSecurityGroupId"] for r in ingress
    ]
