"""The IAM evaluator and the Service Authorization Reference mapping, on known cases.

The expected decisions follow the IAM User Guide's policy evaluation logic and the
condition operator pages cited in tests/iam/evaluator.py.
"""

from __future__ import annotations

import pytest

from tests.iam.evaluator import ALLOW, EXPLICIT_DENY, IMPLICIT_DENY, UnsupportedPolicy, evaluate
from tests.iam.recorder import Call
from tests.iam.sar import UnmappedCall, requests_for

SM = "arn:aws:states:us-east-1:123456789012:stateMachine:load"
EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:load:run-1"
TASK = "arn:aws:dms:us-east-1:123456789012:task:ABC"


def allow(**fields: object) -> dict[str, object]:
    return {"Effect": "Allow", **fields}


@pytest.mark.parametrize(
    ("statement", "action", "resource", "expected"),
    [
        (allow(Action="states:StartExecution", Resource=SM), "states:StartExecution", SM, ALLOW),
        # Action names are case-insensitive; resources are not.
        (allow(Action="STATES:startexecution", Resource=SM), "states:StartExecution", SM, ALLOW),
        (
            allow(Action="states:Start*", Resource=SM.upper()),
            "states:StartExecution",
            SM,
            IMPLICIT_DENY,
        ),
        # The state machine ARN does not cover its executions (issue: starter's DescribeExecution).
        (
            allow(Action="states:DescribeExecution", Resource=SM),
            "states:DescribeExecution",
            EXECUTION,
            IMPLICIT_DENY,
        ),
        (
            allow(Action="states:Describe*", Resource="arn:aws:states:*:*:execution:load:*"),
            "states:DescribeExecution",
            EXECUTION,
            ALLOW,
        ),
        (
            allow(Action="states:DescribeExecutio?", Resource="*"),
            "states:DescribeExecution",
            EXECUTION,
            ALLOW,
        ),
        (
            allow(Action="states:DescribeExecutio?", Resource="*"),
            "states:DescribeExecutions",
            EXECUTION,
            IMPLICIT_DENY,
        ),
        (allow(NotAction="iam:*", Resource="*"), "states:StartExecution", SM, ALLOW),
        (allow(NotAction="states:*", Resource="*"), "states:StartExecution", SM, IMPLICIT_DENY),
        (allow(Action="*", NotResource=SM), "states:StartExecution", SM, IMPLICIT_DENY),
        (allow(Action="*", NotResource=SM), "states:StartExecution", EXECUTION, ALLOW),
        # An action that supports no resource type is requested on "*": a specific ARN
        # in the policy does not cover it.
        (
            allow(Action="dms:DescribeReplicationTasks", Resource=TASK),
            "dms:DescribeReplicationTasks",
            "*",
            IMPLICIT_DENY,
        ),
    ],
)
def test_action_and_resource_matching(
    statement: dict, action: str, resource: str, expected: str
) -> None:
    assert evaluate([statement], action, resource, {}).result == expected


def test_explicit_deny_wins_over_any_allow() -> None:
    statements = [
        allow(Sid="All", Action="*", Resource="*"),
        {"Sid": "NoDelete", "Effect": "Deny", "Action": "dms:Delete*", "Resource": "*"},
    ]
    decision = evaluate(statements, "dms:DeleteReplicationTask", TASK, {})
    assert decision.result == EXPLICIT_DENY and decision.statements == ("NoDelete",)
    assert evaluate(statements, "dms:StopReplicationTask", TASK, {}).allowed


TAGGED = allow(
    Action="dms:StopReplicationTask",
    Resource="arn:aws:dms:*:*:task:*",
    Condition={"StringEquals": {"aws:ResourceTag/deltaload:controller-table": "ctl"}},
)


@pytest.mark.parametrize(
    ("statement", "context", "expected"),
    [
        (TAGGED, {"aws:ResourceTag/deltaload:controller-table": "ctl"}, True),
        (TAGGED, {"aws:ResourceTag/deltaload:controller-table": "other"}, False),
        (TAGGED, {}, False),  # the key is absent: a positive operator is false
        # Condition key names are case-insensitive, values are not.
        (TAGGED, {"AWS:RESOURCETAG/deltaload:controller-table": "ctl"}, True),
        (TAGGED, {"aws:ResourceTag/deltaload:controller-table": "CTL"}, False),
        (allow(Action="*", Resource="*", Condition={"StringNotEquals": {"k": "a"}}), {}, True),
        (
            allow(Action="*", Resource="*", Condition={"StringNotEquals": {"k": "a"}}),
            {"k": "a"},
            False,
        ),
        (allow(Action="*", Resource="*", Condition={"StringEqualsIfExists": {"k": "a"}}), {}, True),
        (
            allow(Action="*", Resource="*", Condition={"StringEqualsIfExists": {"k": "a"}}),
            {"k": "b"},
            False,
        ),
        (
            allow(
                Action="*",
                Resource="*",
                Condition={"StringLike": {"s3:prefix": ["_staging/*", "*/run=*"]}},
            ),
            {"s3:prefix": "lake/t/run=1/"},
            True,
        ),
        (
            allow(
                Action="*", Resource="*", Condition={"StringLike": {"s3:prefix": ["_staging/*"]}}
            ),
            {"s3:prefix": "lake/"},
            False,
        ),
        (
            allow(Action="*", Resource="*", Condition={"StringLike": {"s3:prefix": "_staging/*"}}),
            {},
            False,
        ),
        (allow(Action="*", Resource="*", Condition={"Null": {"k": "true"}}), {}, True),
        (allow(Action="*", Resource="*", Condition={"Null": {"k": "false"}}), {}, False),
        (
            allow(Action="*", Resource="*", Condition={"Bool": {"aws:SecureTransport": "false"}}),
            {"aws:SecureTransport": "true"},
            False,
        ),
        (
            allow(Action="*", Resource="*", Condition={"ArnLike": {"k": "arn:aws:iam::*:role/x"}}),
            {"k": "arn:aws:iam::1:role/x"},
            True,
        ),
        # Two keys (or two operators) must both hold.
        (
            allow(Action="*", Resource="*", Condition={"StringEquals": {"a": "1", "b": "2"}}),
            {"a": "1", "b": "3"},
            False,
        ),
        (
            allow(
                Action="*",
                Resource="*",
                Condition={"StringEquals": {"a": "1"}, "StringLike": {"b": "2*"}},
            ),
            {"a": "1", "b": "22"},
            True,
        ),
        (
            allow(
                Action="*",
                Resource="*",
                Condition={"ForAllValues:StringEquals": {"aws:TagKeys": ["x", "y"]}},
            ),
            {"aws:TagKeys": ["x"]},
            True,
        ),
        (
            allow(
                Action="*",
                Resource="*",
                Condition={"ForAllValues:StringEquals": {"aws:TagKeys": ["x"]}},
            ),
            {"aws:TagKeys": ["x", "z"]},
            False,
        ),
        (
            allow(
                Action="*",
                Resource="*",
                Condition={"ForAnyValue:StringEquals": {"aws:TagKeys": ["z"]}},
            ),
            {"aws:TagKeys": ["x", "z"]},
            True,
        ),
    ],
)
def test_conditions(statement: dict, context: dict, expected: bool) -> None:
    assert evaluate([statement], "dms:StopReplicationTask", TASK, context).allowed is expected


def test_unknown_elements_and_operators_are_refused() -> None:
    with pytest.raises(UnsupportedPolicy):
        evaluate(
            [allow(Action="*", Resource="*", Condition={"DateGreaterThan": {"k": "1"}})],
            "a:b",
            "*",
            {"k": "2"},
        )
    with pytest.raises(UnsupportedPolicy):
        evaluate([allow(Action="*", Resource="*", Principal="*")], "a:b", "*", {})


def _requests(service: str, operation: str, params: dict, tags: dict | None = None) -> list[str]:
    return [str(r) for r in requests_for(Call("F", service, operation, params), tags or {})]


def test_reference_gives_the_execution_resource_of_describe_execution() -> None:
    assert _requests("stepfunctions", "DescribeExecution", {"executionArn": EXECUTION}) == [
        f"states:DescribeExecution on {EXECUTION}"
    ]


def test_reference_maps_s3_operations_to_their_actions() -> None:
    listing = _requests("s3", "ListObjectsV2", {"Bucket": "lake", "Prefix": "_staging/t/"})
    assert listing == ["s3:ListBucket on arn:aws:s3:::lake [s3:prefix=_staging/t/]"]
    copy = _requests(
        "s3", "CopyObject", {"Bucket": "lake", "Key": "a/run=1/f", "CopySource": "lake/_staging/f"}
    )
    assert copy == [
        "s3:GetObject on arn:aws:s3:::lake/_staging/f",
        "s3:PutObject on arn:aws:s3:::lake/a/run=1/f",
    ]
    delete = _requests(
        "s3",
        "DeleteObjects",
        {"Bucket": "lake", "Delete": {"Objects": [{"Key": "x"}, {"Key": "y"}]}},
    )
    assert delete == [
        "s3:DeleteObject on arn:aws:s3:::lake/x",
        "s3:DeleteObject on arn:aws:s3:::lake/y",
    ]


def test_reference_adds_dependent_pass_role_and_tag_keys() -> None:
    role = "arn:aws:iam::123456789012:role/dms-s3"
    found = _requests(
        "dms",
        "CreateEndpoint",
        {
            "EndpointIdentifier": "t",
            "S3Settings": {"ServiceAccessRoleArn": role},
            "Tags": [{"Key": "k", "Value": "v"}],
        },
    )
    assert found == [
        "dms:CreateEndpoint on * [aws:RequestTag/k=v, aws:TagKeys=['k']]",
        f"iam:PassRole on {role} [iam:PassedToService=dms.amazonaws.com]",
    ]


def test_reference_gives_resource_tags_and_every_resource_of_a_task() -> None:
    source = "arn:aws:dms:us-east-1:123456789012:endpoint:SRC"
    target = "arn:aws:dms:us-east-1:123456789012:endpoint:TGT"
    instance = "arn:aws:dms:us-east-1:123456789012:rep:RI"
    found = _requests(
        "dms",
        "CreateReplicationTask",
        {
            "SourceEndpointArn": source,
            "TargetEndpointArn": target,
            "ReplicationInstanceArn": instance,
        },
        {target: {"owner": "me"}},
    )
    assert found == [
        f"dms:CreateReplicationTask on {source}",
        f"dms:CreateReplicationTask on {target} [aws:ResourceTag/owner=me]",
        f"dms:CreateReplicationTask on {instance}",
    ]


def test_a_call_naming_none_of_its_required_resources_is_an_error() -> None:
    with pytest.raises(UnmappedCall):
        _requests("stepfunctions", "DescribeExecution", {})
    with pytest.raises(UnmappedCall):
        _requests("dms", "NoSuchOperation", {})
