"""What users and the other parts rely on in template.yaml (see docs/architecture.md).

The template is read with cfn-flip's loader, so intrinsic functions appear in their
long form ({"Ref": ...}, {"Fn::GetAtt": [...]}, {"Fn::If": [...]}).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from cfn_tools import load_yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"
STATE_MACHINE_PATH = ROOT / "statemachine" / "load_table.asl.json"

# docs/architecture.md: function folder -> logical id.
FUNCTIONS = {
    "starter": "StarterFunction",
    "acquire_lock": "AcquireLockFunction",
    "probe_source": "ProbeSourceFunction",
    "plan_run": "PlanRunFunction",
    "create_resources": "CreateResourcesFunction",
    "check_resources": "CheckResourcesFunction",
    "start_load": "StartLoadFunction",
    "check_load": "CheckLoadFunction",
    "verify_publish": "VerifyPublishFunction",
    "record_success": "RecordSuccessFunction",
    "record_failure": "RecordFailureFunction",
    "teardown": "TeardownFunction",
}
WORKFLOW_FUNCTIONS = {folder: lid for folder, lid in FUNCTIONS.items() if folder != "starter"}

OTHER_RESOURCES = {
    "ControllerTable": "AWS::DynamoDB::Table",
    "RunHistoryTable": "AWS::DynamoDB::Table",
    "DataLakeBucket": "AWS::S3::Bucket",
    "DataLakeBucketPolicy": "AWS::S3::BucketPolicy",
    "NotificationTopic": "AWS::SNS::Topic",
    "DmsVpcRole": "AWS::IAM::Role",
    "DmsS3AccessRole": "AWS::IAM::Role",
    "DmsSecretsAccessRole": "AWS::IAM::Role",
    "ReplicationSubnetGroup": "AWS::DMS::ReplicationSubnetGroup",
    "SourceEndpoint": "AWS::DMS::Endpoint",
    "DeltaloadLayer": "AWS::Serverless::LayerVersion",
    "LoadStateMachine": "AWS::Serverless::StateMachine",
    "FailedExecutionsAlarm": "AWS::CloudWatch::Alarm",
}

PARAMETERS = [
    "NotificationEmail",
    "Subnet1",
    "Subnet2",
    "ReplicationInstanceSecurityGroup",
    "SourceEngine",
    "SourceServerName",
    "SourcePort",
    "SourceDatabaseName",
    "SourceUsername",
    "SourceSecretArn",
    "ScheduleExpression",
    "ScheduleEnabled",
    "ReplicationMode",
    "ReplicationInstanceClass",
    "ExistingReplicationInstanceArn",
    "ExistingBucketName",
    "StagingPrefix",
    "SafetyLagSeconds",
    "LockTimeoutSeconds",
    "MaxConcurrentRuns",
    "NotifyOnSuccess",
    "CreateDmsVpcRole",
]

SOURCE_ENGINES = {
    "postgres",
    "mysql",
    "mariadb",
    "aurora",
    "aurora-postgresql",
    "oracle",
    "sqlserver",
}

# docs/architecture.md, "Environment (Globals ...)"; STATE_MACHINE_ARN is the starter's own.
GLOBAL_ENV = {
    "CONTROLLER_TABLE",
    "HISTORY_TABLE",
    "DATA_BUCKET",
    "STAGING_PREFIX",
    "TOPIC_ARN",
    "NOTIFY_ON_SUCCESS",
    "SOURCE_ENDPOINT_ARN",
    "DMS_S3_ROLE_ARN",
    "REPLICATION_MODE",
    "REPLICATION_INSTANCE_CLASS",
    "EXISTING_INSTANCE_ARN",
    "REPLICATION_SUBNET_GROUP",
    "SECURITY_GROUP_IDS",
    "POLL_INITIAL_SECONDS",
    "POLL_MAX_SECONDS",
    "LOCK_TIMEOUT_SECONDS",
    "SAFETY_LAG_SECONDS",
    "MAX_CONCURRENT_RUNS",
    "GLUE_DATABASE",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "LOG_LEVEL",
}

# Actions the Service Authorization Reference lists with no resource type, so a
# statement granting them can only say Resource "*". Anything else must name ARNs.
STAR_ONLY_ACTIONS = {
    "dms:CreateEndpoint": "no resource type; scoped by the aws:RequestTag condition instead",
    "dms:CreateReplicationInstance": "no resource type; scoped by aws:RequestTag instead",
    "dms:DescribeEndpoints": "list/describe action without resource type",
    "dms:DescribeReplicationInstances": "list/describe action without resource type",
    "dms:DescribeReplicationTasks": "list/describe action without resource type",
    "dms:DescribeReplicationConfigs": "list/describe action without resource type",
    "dms:DescribeReplications": "list/describe action without resource type",
    "logs:CreateLogDelivery": "Step Functions log delivery; no resource type",
    "logs:GetLogDelivery": "Step Functions log delivery; no resource type",
    "logs:UpdateLogDelivery": "Step Functions log delivery; no resource type",
    "logs:DeleteLogDelivery": "Step Functions log delivery; no resource type",
    "logs:ListLogDeliveries": "Step Functions log delivery; no resource type",
    "logs:PutResourcePolicy": "Step Functions log delivery; no resource type",
    "logs:DescribeResourcePolicies": "Step Functions log delivery; no resource type",
    "logs:DescribeLogGroups": "Step Functions log delivery; no resource type",
}
# The star-only actions above that must also carry a Condition narrowing them.
STAR_ACTIONS_NEEDING_CONDITION = {
    "dms:CreateEndpoint",
    "dms:CreateReplicationInstance",
}

# The tag every DMS resource a run creates carries (value: the controller table name);
# IAM only lets the functions create, start, stop and delete DMS resources with it.
DMS_STACK_TAG = "deltaload:controller-table"
NO_VALUE = {"Ref": "AWS::NoValue"}


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def template() -> Mapping[str, Any]:
    return load_yaml(TEMPLATE_PATH.read_text())


@pytest.fixture(scope="module")
def resources(template: Mapping[str, Any]) -> Mapping[str, Any]:
    return template["Resources"]


def as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def without_if(value: Any) -> Iterator[Any]:
    """Every concrete value an Fn::If may produce (both branches), NoValue dropped."""
    if isinstance(value, Mapping) and set(value) == {"Fn::If"}:
        _, when_true, when_false = value["Fn::If"]
        yield from without_if(when_true)
        yield from without_if(when_false)
    elif value != NO_VALUE:
        yield value


def evaluate(condition: Any, conditions: Mapping[str, Any], params: Mapping[str, str]) -> Any:
    """Evaluate a CloudFormation condition expression for given parameter values."""
    if isinstance(condition, str):
        return condition
    ((name, arg),) = condition.items()
    if name == "Ref":
        return params[arg]
    if name == "Condition":
        return evaluate(conditions[arg], conditions, params)
    if name == "Fn::Equals":
        left, right = (evaluate(a, conditions, params) for a in arg)
        return left == right
    if name == "Fn::Not":
        return not evaluate(arg[0], conditions, params)
    if name == "Fn::Or":
        return any(evaluate(a, conditions, params) for a in arg)
    if name == "Fn::And":
        return all(evaluate(a, conditions, params) for a in arg)
    raise AssertionError(f"unexpected condition function {name}")


def policy_documents(resources: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(logical id, policy document) of every identity policy the template defines."""
    for lid, resource in resources.items():
        props = resource.get("Properties", {})
        kind = resource["Type"]
        if kind == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                yield lid, policy["PolicyDocument"]
        elif kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            yield lid, props["PolicyDocument"]
        elif kind in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine"):
            for policy in as_list(props.get("Policies", [])):
                if isinstance(policy, Mapping) and "Statement" in policy:
                    yield lid, policy


def statements(resources: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for lid, document in policy_documents(resources):
        for entry in as_list(document["Statement"]):
            for statement in without_if(entry):
                yield lid, statement


def function_statements(resources: Mapping[str, Any], lid: str) -> list[Mapping[str, Any]]:
    return [s for owner, s in statements(resources) if owner == lid]


def actions_of(statement: Mapping[str, Any]) -> list[str]:
    assert "NotAction" not in statement, "NotAction grants too much"
    return as_list(statement["Action"])


def granted(resources: Mapping[str, Any], lid: str) -> set[str]:
    return {a for s in function_statements(resources, lid) for a in actions_of(s)}


def effective_function_property(template: Mapping[str, Any], lid: str, name: str) -> Any:
    props = template["Resources"][lid]["Properties"]
    if name in props:
        return props[name]
    return template.get("Globals", {}).get("Function", {}).get(name)


# ------------------------------------------------------------------------ the tests


def test_is_a_sam_template(template: Mapping[str, Any]) -> None:
    assert template["Transform"] == "AWS::Serverless-2016-10-31"


def test_every_documented_parameter_exists(template: Mapping[str, Any]) -> None:
    params = template["Parameters"]
    missing = [name for name in PARAMETERS if name not in params]
    assert not missing, f"parameters missing: {missing}"
    assert params["Subnet1"]["Type"] == "AWS::EC2::Subnet::Id"
    assert params["Subnet2"]["Type"] == "AWS::EC2::Subnet::Id"
    assert params["ReplicationInstanceSecurityGroup"]["Type"] == "AWS::EC2::SecurityGroup::Id"
    assert set(params["SourceEngine"]["AllowedValues"]) == SOURCE_ENGINES
    assert set(params["ReplicationMode"]["AllowedValues"]) == {"instance", "existing", "serverless"}
    assert params["ScheduleExpression"]["Default"] == "rate(1 hour)"
    assert params["ReplicationInstanceClass"]["Default"] == "dms.t3.medium"
    assert params["StagingPrefix"]["Default"] == "_staging/"
    assert params["ExistingBucketName"]["Default"] == ""
    for switch in ("ScheduleEnabled", "NotifyOnSuccess", "CreateDmsVpcRole"):
        assert set(params[switch]["AllowedValues"]) == {"true", "false"}, switch
    assert params["CreateDmsVpcRole"]["Default"] == "true"


def test_no_password_is_ever_a_parameter_or_property(
    template: Mapping[str, Any], resources: Mapping[str, Any]
) -> None:
    assert not [p for p in template["Parameters"] if "password" in p.lower()]
    endpoint = resources["SourceEndpoint"]["Properties"]
    assert "Password" not in endpoint
    for value in endpoint.values():
        for branch in without_if(value):
            if isinstance(branch, Mapping):
                assert "Password" not in branch


def test_source_endpoint_reads_the_secret_for_every_engine(
    template: Mapping[str, Any], resources: Mapping[str, Any]
) -> None:
    endpoint = resources["SourceEndpoint"]["Properties"]
    assert endpoint["EndpointType"] == "source"
    assert endpoint["EngineName"] == {"Ref": "SourceEngine"}
    settings_keys = (
        "PostgreSqlSettings",
        "MySqlSettings",
        "OracleSettings",
        "MicrosoftSqlServerSettings",
    )
    params = {p: spec.get("Default", "") for p, spec in template["Parameters"].items()}
    for engine in sorted(SOURCE_ENGINES):
        params["SourceEngine"] = engine
        active = []
        for key in settings_keys:
            value = endpoint.get(key)
            if value is None:
                continue
            condition, when_true, when_false = value["Fn::If"]
            chosen = (
                when_true
                if evaluate({"Condition": condition}, template["Conditions"], params)
                else when_false
            )
            if chosen != NO_VALUE:
                active.append((key, chosen))
        assert len(active) == 1, f"{engine}: settings blocks in use: {[k for k, _ in active]}"
        _, chosen = active[0]
        assert chosen["SecretsManagerSecretId"] == {"Ref": "SourceSecretArn"}
        assert chosen["SecretsManagerAccessRoleArn"] == {
            "Fn::GetAtt": ["DmsSecretsAccessRole", "Arn"]
        }


def test_every_documented_resource_exists(resources: Mapping[str, Any]) -> None:
    expected = {
        **OTHER_RESOURCES,
        **{lid: "AWS::Serverless::Function" for lid in FUNCTIONS.values()},
    }
    wrong = {
        lid: resources.get(lid, {}).get("Type")
        for lid, kind in expected.items()
        if resources.get(lid, {}).get("Type") != kind
    }
    assert not wrong, f"missing or of the wrong type: {wrong}"


@pytest.mark.parametrize(("folder", "lid"), sorted(FUNCTIONS.items()))
def test_function_uses_layer_runtime_and_its_folder(
    template: Mapping[str, Any], folder: str, lid: str
) -> None:
    props = template["Resources"][lid]["Properties"]
    assert props["CodeUri"].rstrip("/") == f"functions/{folder}"
    assert effective_function_property(template, lid, "Runtime") == "python3.13"
    assert effective_function_property(template, lid, "Handler") == "app.handler"
    assert {"Ref": "DeltaloadLayer"} in effective_function_property(template, lid, "Layers")
    assert effective_function_property(template, lid, "Tracing") == "Active"


@pytest.mark.parametrize("folder", sorted(FUNCTIONS))
def test_function_handler_file_exists(folder: str) -> None:
    if not (ROOT / "functions").is_dir():
        pytest.skip("functions/ is not written yet (owned by the handler authors)")
    app = ROOT / "functions" / folder / "app.py"
    assert app.is_file(), f"{app.relative_to(ROOT)} is missing"
    assert re.search(r"^def handler\(", app.read_text(), re.MULTILINE), f"{app} has no handler()"


def test_layer_builds_src_with_python313(resources: Mapping[str, Any]) -> None:
    layer = resources["DeltaloadLayer"]
    assert layer["Properties"]["ContentUri"].rstrip("/") == "src"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Metadata"]["BuildMethod"] == "python3.13"
    assert (ROOT / "src" / "requirements.txt").is_file()


def test_environment_matches_the_contract(template: Mapping[str, Any]) -> None:
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert set(env) == GLOBAL_ENV
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "Deltaload"
    assert env["POWERTOOLS_SERVICE_NAME"]
    assert env["CONTROLLER_TABLE"] == {"Ref": "ControllerTable"}
    assert env["HISTORY_TABLE"] == {"Ref": "RunHistoryTable"}
    assert env["SOURCE_ENDPOINT_ARN"] == {"Ref": "SourceEndpoint"}
    assert env["DMS_S3_ROLE_ARN"] == {"Fn::GetAtt": ["DmsS3AccessRole", "Arn"]}
    starter_env = template["Resources"]["StarterFunction"]["Properties"]["Environment"]
    assert starter_env["Variables"]["STATE_MACHINE_ARN"] == {"Ref": "LoadStateMachine"}
    for lid in WORKFLOW_FUNCTIONS.values():
        own = template["Resources"][lid]["Properties"].get("Environment", {})
        assert "STATE_MACHINE_ARN" not in own.get("Variables", {}), lid


def test_state_machine_substitutions_and_settings(resources: Mapping[str, Any]) -> None:
    machine = resources["LoadStateMachine"]["Properties"]
    assert machine["DefinitionUri"] == "statemachine/load_table.asl.json"
    subs = machine["DefinitionSubstitutions"]
    expected = {f"{lid}Arn": {"Fn::GetAtt": [lid, "Arn"]} for lid in WORKFLOW_FUNCTIONS.values()}
    expected["NotificationTopicArn"] = {"Ref": "NotificationTopic"}
    assert dict(subs) == expected
    logging = machine["Logging"]
    assert logging["Level"] in ("ERROR", "ALL")
    assert logging["IncludeExecutionData"] is False
    assert logging["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]
    assert machine["Tracing"]["Enabled"] is True
    invoked = {
        p["LambdaInvokePolicy"]["FunctionName"]["Ref"]
        for p in machine["Policies"]
        if isinstance(p, Mapping) and "LambdaInvokePolicy" in p
    }
    assert invoked == set(WORKFLOW_FUNCTIONS.values())
    published = [
        p["SNSPublishMessagePolicy"]["TopicName"]
        for p in machine["Policies"]
        if isinstance(p, Mapping) and "SNSPublishMessagePolicy" in p
    ]
    assert published == [{"Fn::GetAtt": ["NotificationTopic", "TopicName"]}]


def test_substitutions_cover_every_placeholder_of_the_definition(
    resources: Mapping[str, Any],
) -> None:
    if not STATE_MACHINE_PATH.is_file():
        pytest.skip("statemachine/load_table.asl.json is not written yet")
    placeholders = set(re.findall(r"\$\{([^}]+)\}", STATE_MACHINE_PATH.read_text()))
    subs = set(resources["LoadStateMachine"]["Properties"]["DefinitionSubstitutions"])
    assert placeholders, "the definition uses no ${...} placeholder at all"
    assert placeholders <= subs, f"not substituted: {sorted(placeholders - subs)}"


def test_bucket_is_encrypted_private_versioned_and_tls_only(
    resources: Mapping[str, Any],
) -> None:
    bucket = resources["DataLakeBucket"]
    assert bucket["Condition"] == "CreateBucket"
    props = bucket["Properties"]
    rules = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rules[0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    block = props["PublicAccessBlockConfiguration"]
    assert all(
        block.get(k) is True
        for k in (
            "BlockPublicAcls",
            "BlockPublicPolicy",
            "IgnorePublicAcls",
            "RestrictPublicBuckets",
        )
    ), block
    assert props["VersioningConfiguration"]["Status"] == "Enabled"
    lifecycle = props["LifecycleConfiguration"]["Rules"]
    assert any("AbortIncompleteMultipartUpload" in r for r in lifecycle)
    staging = [r for r in lifecycle if r.get("Prefix") == {"Ref": "StagingPrefix"}]
    assert staging and staging[0]["ExpirationInDays"] <= 7

    policy = resources["DataLakeBucketPolicy"]["Properties"]
    assert policy["Bucket"] == {"Ref": "DataLakeBucket"}
    denies = [
        s
        for s in policy["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny"
        and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") in ("false", False)
    ]
    assert denies, "no statement denies requests without TLS"
    targets = as_list(denies[0]["Resource"])
    assert {"Fn::GetAtt": ["DataLakeBucket", "Arn"]} in targets
    assert {"Fn::Sub": "${DataLakeBucket.Arn}/*"} in targets


def test_tables_keys_billing_pitr_and_encryption(resources: Mapping[str, Any]) -> None:
    keys = {
        "ControllerTable": [("targetTableName", "HASH")],
        "RunHistoryTable": [("targetTableName", "HASH"), ("runId", "RANGE")],
    }
    for lid, schema in keys.items():
        props = resources[lid]["Properties"]
        assert [(k["AttributeName"], k["KeyType"]) for k in props["KeySchema"]] == schema
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["SSESpecification"]["SSEEnabled"] is True, lid
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True, lid


def test_failed_executions_alarm_notifies_the_topic(resources: Mapping[str, Any]) -> None:
    alarm = resources["FailedExecutionsAlarm"]["Properties"]
    assert alarm["Namespace"] == "AWS/States"
    assert alarm["MetricName"] == "ExecutionsFailed"
    assert {"Name": "StateMachineArn", "Value": {"Ref": "LoadStateMachine"}} in alarm["Dimensions"]
    assert {"Ref": "NotificationTopic"} in alarm["AlarmActions"]


def test_topic_is_encrypted_with_a_key_alarms_can_use(resources: Mapping[str, Any]) -> None:
    topic = resources["NotificationTopic"]["Properties"]
    key = topic["KmsMasterKeyId"]
    # alias/aws/sns would encrypt too, but CloudWatch alarms cannot publish with it.
    assert key == {"Ref": "NotificationKey"}
    key_policy = resources["NotificationKey"]["Properties"]["KeyPolicy"]["Statement"]
    assert any(
        s.get("Principal", {}).get("Service") == "cloudwatch.amazonaws.com" for s in key_policy
    )
    assert resources["NotificationKey"]["Properties"]["EnableKeyRotation"] is True
    subscription = resources["NotificationEmailSubscription"]["Properties"]
    assert subscription["Protocol"] == "email"
    assert subscription["Endpoint"] == {"Ref": "NotificationEmail"}


def test_no_wildcard_resource_except_documented_actions(resources: Mapping[str, Any]) -> None:
    problems = []
    for lid, statement in statements(resources):
        if statement.get("Effect") != "Allow":
            continue
        actions = actions_of(statement)
        assert all(a != "*" and not a.endswith(":*") for a in actions), (lid, actions)
        assert "NotResource" not in statement, lid
        if "*" not in as_list(statement["Resource"]):
            continue
        not_allowed = [a for a in actions if a not in STAR_ONLY_ACTIONS]
        if not_allowed:
            problems.append(f"{lid} {statement.get('Sid')}: {not_allowed} on Resource '*'")
        needing = [a for a in actions if a in STAR_ACTIONS_NEEDING_CONDITION]
        if needing and not statement.get("Condition"):
            problems.append(f"{lid} {statement.get('Sid')}: {needing} on '*' without Condition")
    assert not problems, "\n".join(problems)


def test_pass_role_only_for_the_two_dms_roles(resources: Mapping[str, Any]) -> None:
    allowed = [
        {"Fn::GetAtt": ["DmsS3AccessRole", "Arn"]},
        {"Fn::GetAtt": ["DmsSecretsAccessRole", "Arn"]},
    ]
    found = 0
    for lid, statement in statements(resources):
        if "iam:PassRole" not in actions_of(statement):
            continue
        found += 1
        assert actions_of(statement) == ["iam:PassRole"], lid
        for target in as_list(statement["Resource"]):
            assert target in allowed, f"{lid} may pass {target}"
        condition = statement["Condition"]["StringEquals"]
        assert condition["iam:PassedToService"] == "dms.amazonaws.com", lid
    assert found, "CreateResourcesFunction must be able to pass the DMS S3 role"
    assert "iam:PassRole" in granted(resources, "CreateResourcesFunction")


def test_dms_changes_are_limited_to_resources_tagged_for_this_stack(
    resources: Mapping[str, Any],
) -> None:
    mutating = re.compile(r"^dms:(Create|Delete|Start|Stop|Modify|Reload)")
    tag_keys = {f"aws:RequestTag/{DMS_STACK_TAG}", f"aws:ResourceTag/{DMS_STACK_TAG}"}
    seen = 0
    for lid, statement in statements(resources):
        if not any(mutating.match(a) for a in actions_of(statement)):
            continue
        seen += 1
        condition = statement.get("Condition", {}).get("StringEquals", {})
        used = tag_keys & set(condition)
        assert used, f"{lid} {statement.get('Sid')}: DMS change not limited by the stack tag"
        for key in used:
            assert condition[key] == {"Ref": "ControllerTable"}, (lid, key)
    assert seen >= 4


def test_dms_create_calls_tag_resources_for_this_stack() -> None:
    """The IAM above only works if the package tags what it creates with DMS_STACK_TAG."""
    package = ROOT / "src" / "deltaload"
    sources = [p for p in package.glob("*.py") if p.name in ("workflow.py", "replication.py")]
    if not sources:
        pytest.skip("src/deltaload/workflow.py and replication.py are not written yet")
    text = "\n".join(p.read_text() for p in sources)
    assert DMS_STACK_TAG in text, (
        f"DMS resources must be created with the tag {DMS_STACK_TAG} = CONTROLLER_TABLE "
        "(template.yaml only allows tagged creates and deletes)"
    )


def test_dynamodb_access_is_per_function_and_table_scoped(resources: Mapping[str, Any]) -> None:
    tables = {"Fn::GetAtt": ["ControllerTable", "Arn"]}, {"Fn::GetAtt": ["RunHistoryTable", "Arn"]}
    for lid, statement in statements(resources):
        if any(a.startswith("dynamodb:") for a in actions_of(statement)):
            assert all(r in tables for r in as_list(statement["Resource"])), lid
    starter = {a for a in granted(resources, "StarterFunction") if a.startswith("dynamodb:")}
    assert starter == {"dynamodb:Scan", "dynamodb:GetItem"}
    for lid in WORKFLOW_FUNCTIONS.values():
        assert "dynamodb:Scan" not in granted(resources, lid), lid
        assert "dynamodb:DeleteItem" not in granted(resources, lid), lid


def test_starter_can_start_only_the_load_state_machine(resources: Mapping[str, Any]) -> None:
    starts = [
        s
        for s in function_statements(resources, "StarterFunction")
        if "states:StartExecution" in actions_of(s)
    ]
    assert len(starts) == 1
    assert as_list(starts[0]["Resource"]) == [{"Ref": "LoadStateMachine"}]
    for lid in WORKFLOW_FUNCTIONS.values():
        assert not any(a.startswith("states:") for a in granted(resources, lid)), lid


def test_metrics_need_no_cloudwatch_grant(resources: Mapping[str, Any]) -> None:
    # Powertools Metrics writes the Embedded Metric Format to standard output, the log
    # CloudWatch turns into metrics (Powertools docs, "Metrics"): no PutMetricData call.
    for lid, statement in statements(resources):
        assert not any(a.startswith("cloudwatch:") for a in actions_of(statement)), lid


def test_s3_access_stays_inside_the_data_bucket(resources: Mapping[str, Any]) -> None:
    def rendered(resource: Any) -> str:
        if isinstance(resource, Mapping) and "Fn::Sub" in resource:
            sub = resource["Fn::Sub"]
            return sub[0] if isinstance(sub, list) else sub
        return str(resource)

    for lid, statement in statements(resources):
        if not any(a.startswith("s3:") for a in actions_of(statement)):
            continue
        for resource in as_list(statement["Resource"]):
            text = rendered(resource)
            assert text.startswith("arn:${AWS::Partition}:s3:::${Bucket}"), (lid, text)
            if statement.get("Action") != "s3:ListBucket":
                assert text != "arn:${AWS::Partition}:s3:::${Bucket}/*", (lid, "whole bucket")

    dms_role = resources["DmsS3AccessRole"]["Properties"]["Policies"]
    for statement in dms_role[0]["PolicyDocument"]["Statement"]:
        text = rendered(statement["Resource"])
        if "s3:ListBucket" in actions_of(statement):
            # As the DMS S3 target prerequisites document it: the bucket, no prefix condition
            # (tests/iam/test_dms_roles.py checks the whole documented policy).
            assert text == "arn:${AWS::Partition}:s3:::${Bucket}", text
        else:
            assert text.endswith("/${StagingPrefix}*"), text


def test_schedule_has_an_enable_switch(template: Mapping[str, Any]) -> None:
    events = template["Resources"]["StarterFunction"]["Properties"]["Events"]
    schedules = [e for e in events.values() if e["Type"] in ("Schedule", "ScheduleV2")]
    assert len(schedules) == 1
    props = schedules[0]["Properties"]
    assert props["Schedule" if "Schedule" in props else "ScheduleExpression"] == {
        "Ref": "ScheduleExpression"
    }
    condition, on, off = props["State"]["Fn::If"]
    assert (on, off) == ("ENABLED", "DISABLED")
    params = {p: spec.get("Default", "") for p, spec in template["Parameters"].items()}
    for value, expected in (("true", True), ("false", False)):
        params["ScheduleEnabled"] = value
        assert evaluate({"Condition": condition}, template["Conditions"], params) is expected


def test_dms_vpc_role_is_optional_and_precedes_the_subnet_group(
    template: Mapping[str, Any], resources: Mapping[str, Any]
) -> None:
    role = resources["DmsVpcRole"]
    params = {p: spec.get("Default", "") for p, spec in template["Parameters"].items()}
    for value, expected in (("true", True), ("false", False)):
        params["CreateDmsVpcRole"] = value
        assert (
            evaluate({"Condition": role["Condition"]}, template["Conditions"], params) is expected
        )
    assert role["Properties"]["RoleName"] == "dms-vpc-role"
    assert role["Properties"]["ManagedPolicyArns"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonDMSVPCManagementRole"}
    ]
    group = resources["ReplicationSubnetGroup"]
    assert group["Properties"]["SubnetIds"] == [{"Ref": "Subnet1"}, {"Ref": "Subnet2"}]
    refs_role = "DmsVpcRole" in as_list(group.get("DependsOn", [])) or "DmsVpcRole" in str(
        group["Properties"].get("Tags")
    )
    assert refs_role, "the subnet group must wait for dms-vpc-role when the stack creates it"


def test_secrets_role_reads_only_the_source_secret(resources: Mapping[str, Any]) -> None:
    props = resources["DmsSecretsAccessRole"]["Properties"]
    trust = props["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Principal"]["Service"] == {"Fn::Sub": "dms.${AWS::Region}.amazonaws.com"}
    granted_here = [s for s in statements({"R": resources["DmsSecretsAccessRole"]})]
    reads = [s for _, s in granted_here if "secretsmanager:GetSecretValue" in actions_of(s)]
    assert len(reads) == 1
    assert reads[0]["Resource"] == {"Ref": "SourceSecretArn"}


def test_outputs(template: Mapping[str, Any]) -> None:
    expected = {
        "ControllerTableName",
        "RunHistoryTableName",
        "DataBucketName",
        "StateMachineArn",
        "StarterFunctionName",
        "TopicArn",
    }
    assert expected <= set(template["Outputs"])


def test_layer_requirements_in_step_with_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {
        canonicalize_name(r.name): r
        for r in (Requirement(line) for line in project["dependencies"])
    }
    lines = (ROOT / "src" / "requirements.txt").read_text().splitlines()
    layer = {
        canonicalize_name(r.name): r
        for r in (Requirement(line.split("#")[0]) for line in lines if line.split("#")[0].strip())
    }
    assert set(layer) == set(declared)
    for name, requirement in declared.items():
        # The layer may add an upper cap (pyarrow: wheels the Lambda runtime can load),
        # but must keep every bound pyproject declares.
        missing = {str(s) for s in requirement.specifier} - {str(s) for s in layer[name].specifier}
        assert not missing, f"{name}: src/requirements.txt lacks {missing}"


def test_samconfig_has_default_and_prod() -> None:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    assert config["version"] == 0.1
    for env in ("default", "prod"):
        deploy = config[env]["deploy"]["parameters"]
        assert set(deploy["capabilities"].split()) == {"CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"}
        assert deploy["resolve_s3"] is True
        assert config[env]["global"]["parameters"]["stack_name"]
    overrides = config["prod"]["deploy"]["parameters"]["parameter_overrides"]
    assert not [o for o in overrides if "password" in o.lower()]


def test_the_stack_owns_a_glue_database_named_by_a_parameter() -> None:
    """AWS::Glue::Database: GlueDatabaseName, or <stack name>_lake with - as _ (Athena's
    names are lower-case letters, digits and _); the functions and an output name it."""
    from deltaload.local.template import Template

    secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:s-AbCdEf"
    default = Template.load(ROOT, {"SourceSecretArn": secret})
    [logical_id] = default.of_type("AWS::Glue::Database")
    name = default.properties(logical_id)["DatabaseInput"]["Name"]
    assert name == "deltaload_local_lake"  # the local stack is deltaload-local
    named = Template.load(ROOT, {"SourceSecretArn": secret, "GlueDatabaseName": "sales_lake"})
    assert named.properties(logical_id)["DatabaseInput"]["Name"] == "sales_lake"
    body = load_yaml(TEMPLATE_PATH.read_text())
    assert body["Parameters"]["GlueDatabaseName"]["AllowedPattern"] == "^$|^[a-z0-9_]{1,255}$"
    env = body["Globals"]["Function"]["Environment"]["Variables"]
    assert env["GLUE_DATABASE"] == {"Ref": logical_id}
    assert body["Outputs"]["GlueDatabaseName"]["Value"] == {"Ref": logical_id}


def test_probe_requirements_in_step_with_the_probe_extra() -> None:
    """The probe function's own package (sam build installs functions/probe_source/
    requirements.txt there, not in the layer) holds the [probe] extra, bound for bound."""
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["probe"]
    declared = {canonicalize_name(r.name): str(r) for r in map(Requirement, extra)}
    lines = (ROOT / "functions" / "probe_source" / "requirements.txt").read_text().splitlines()
    function = {
        canonicalize_name(r.name): str(r)
        for r in (Requirement(line.split("#")[0]) for line in lines if line.split("#")[0].strip())
    }
    assert function == declared
    assert "sqlalchemy" not in (ROOT / "src" / "requirements.txt").read_text().lower()
