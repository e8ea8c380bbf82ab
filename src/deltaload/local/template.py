"""Read template.yaml the way CloudFormation would, with local values for the intrinsics.

The local runtime builds its resources, functions and state machine from the
real template, so a wrong handler path, a missing environment variable or a
missing DefinitionSubstitution breaks the offline run exactly as it would
break a deployment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cfn_tools.yaml_loader import construct_mapping, multi_constructor

from deltaload.local.account import ACCOUNT, REGION
from deltaload.local.errors import TemplateError

STACK = "deltaload-local"
_NO_VALUE = object()


class _CfnLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """cfn_tools' CloudFormation loader (short-form intrinsics such as ``!Ref``), on
    libyaml's parser when PyYAML has it: the pure-Python parser alone costs a few tenths
    of a second per command on our template."""


_CfnLoader.add_constructor("tag:yaml.org,2002:map", construct_mapping)
_CfnLoader.add_multi_constructor("!", multi_constructor)


def load_yaml(text: str) -> Any:
    """The template as cfn_tools.load_yaml reads it (the same values), parsed faster."""
    return yaml.load(text, Loader=_CfnLoader)


@dataclass(frozen=True)
class LocalFunction:
    """A Lambda function of the template, as the local runtime runs it."""

    logical_id: str
    name: str
    handler_file: Path
    handler_name: str
    environment: dict[str, str]
    timeout: int

    @property
    def arn(self) -> str:
        """The function's local ARN."""
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.name}"


@dataclass
class Template:
    """A parsed template with parameters and conditions resolved to local values."""

    root: Path
    body: dict[str, Any]
    parameters: dict[str, str]
    physical_ids: dict[str, str] = field(default_factory=dict)
    arns: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path, overrides: Mapping[str, str] | None = None) -> Template:
        """Parse ``root/template.yaml`` with parameter defaults and ``overrides``."""
        path = root / "template.yaml"
        try:
            body = load_yaml(path.read_text())
        except (OSError, ValueError) as error:
            raise TemplateError(f"cannot read {path}: {error}") from error
        declared = body.get("Parameters", {})
        unknown = set(overrides or {}) - set(declared)
        if unknown:
            raise TemplateError(f"template.yaml declares no parameter {sorted(unknown)}")
        parameters = {name: str(spec.get("Default", "")) for name, spec in declared.items()}
        parameters.update(overrides or {})
        template = cls(root=root, body=body, parameters=parameters)
        template._name_resources()
        return template

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        """Every resource of the template, by logical id."""
        return self.body.get("Resources", {})

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        """Resources of one type whose Condition holds, by logical id."""
        return {
            logical_id: resource
            for logical_id, resource in self.resources.items()
            if resource.get("Type") == resource_type and self.condition(resource.get("Condition"))
        }

    def properties(self, logical_id: str) -> dict[str, Any]:
        """A resource's Properties with every intrinsic function resolved."""
        resolved = self.resolve(self.resources[logical_id].get("Properties", {}))
        return resolved if isinstance(resolved, dict) else {}

    def condition(self, name: str | None) -> bool:
        """Evaluate a named condition (None holds)."""
        if name is None:
            return True
        conditions = self.body.get("Conditions", {})
        if name not in conditions:
            raise TemplateError(f"template.yaml uses condition {name!r} but does not define it")
        return bool(self.resolve(conditions[name]))

    def function(self, logical_id: str) -> LocalFunction:
        """The function ``logical_id`` with its handler file and merged environment."""
        resource = self.resources.get(logical_id)
        if resource is None or resource.get("Type") != "AWS::Serverless::Function":
            raise TemplateError(f"template.yaml has no AWS::Serverless::Function {logical_id!r}")
        globals_ = self.resolve(self.body.get("Globals", {}).get("Function", {}))
        props = {**globals_, **self.properties(logical_id)}
        code_uri, handler = props.get("CodeUri"), props.get("Handler")
        if not code_uri or not handler or "." not in handler:
            raise TemplateError(f"{logical_id}: CodeUri and Handler (module.function) are required")
        module, _, attribute = handler.rpartition(".")
        handler_file = self.root / code_uri / (module.replace(".", "/") + ".py")
        if not handler_file.is_file():
            raise TemplateError(
                f"{logical_id}: Handler {handler!r} in CodeUri {code_uri!r} needs "
                f"{handler_file.relative_to(self.root)}, which does not exist"
            )
        environment = {
            **(globals_.get("Environment", {}).get("Variables", {})),
            **(self.properties(logical_id).get("Environment", {}).get("Variables", {})),
        }
        return LocalFunction(
            logical_id=logical_id,
            name=self.physical_ids[logical_id],
            handler_file=handler_file,
            handler_name=attribute,
            environment={k: str(v) for k, v in environment.items()},
            timeout=int(props.get("Timeout", 3)),
        )

    def resolve(self, node: Any) -> Any:
        """Resolve Ref, Fn::GetAtt, Fn::Sub, Fn::If, Fn::Join and friends to local values."""
        value = self._resolve(node)
        return None if value is _NO_VALUE else value

    # -- internals ------------------------------------------------------------------------------

    def _name_resources(self) -> None:
        for logical_id, resource in self.resources.items():
            kind = resource.get("Type", "")
            name = f"{STACK}-{logical_id}"
            service = kind.split("::")[1].lower() if "::" in kind else "local"
            self.physical_ids[logical_id] = name
            self.arns[logical_id] = {
                "AWS::Serverless::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}",
                "AWS::Serverless::StateMachine": (
                    f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}"
                ),
                "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}",
                "AWS::S3::Bucket": f"arn:aws:s3:::{name.lower()}",
                "AWS::SNS::Topic": f"arn:aws:sns:{REGION}:{ACCOUNT}:{name}",
                "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT}:role/{name}",
            }.get(kind, f"arn:aws:{service}:{REGION}:{ACCOUNT}:{logical_id.lower()}:{name}")
            if kind == "AWS::S3::Bucket":
                self.physical_ids[logical_id] = name.lower()
            if kind in ("AWS::SNS::Topic", "AWS::Serverless::StateMachine"):
                self.physical_ids[logical_id] = self.arns[logical_id]  # Ref gives the ARN
        # AWS::Glue::Database: Ref gives the DatabaseInput's Name.
        # https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-glue-database.html
        for logical_id in self.of_type("AWS::Glue::Database"):
            name = str(self.properties(logical_id)["DatabaseInput"]["Name"])
            self.physical_ids[logical_id] = name
            self.arns[logical_id] = f"arn:aws:glue:{REGION}:{ACCOUNT}:database/{name}"

    def set_physical_id(self, logical_id: str, physical_id: str, arn: str | None = None) -> None:
        """Record what the local runtime actually created (e.g. a DMS endpoint's ARN)."""
        self.physical_ids[logical_id] = physical_id
        self.arns[logical_id] = arn or physical_id

    def _pseudo(self, name: str) -> str | None:
        return {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::StackName": STACK,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/local",
        }.get(name)

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        pseudo = self._pseudo(name)
        if pseudo is not None:
            return pseudo
        if name in self.parameters:
            return self.parameters[name]
        if name in self.physical_ids:
            return self.physical_ids[name]
        raise TemplateError(f"template.yaml refers to {name!r}, which it does not define")

    def _get_att(self, logical_id: str, attribute: str) -> str:
        if logical_id not in self.resources:
            raise TemplateError(f"Fn::GetAtt on {logical_id!r}, which template.yaml lacks")
        if attribute in ("Arn", "TopicArn"):
            return self.arns[logical_id]
        if attribute in ("Name", "TopicName", "StreamArn"):
            return self.physical_ids[logical_id]
        return f"{self.physical_ids[logical_id]}.{attribute}"

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        variables = {k: self._resolve(v) for k, v in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name:
                logical_id, attribute = name.split(".", 1)
                return self._get_att(logical_id, attribute)
            return str(self._ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def _resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            items = [self._resolve(n) for n in node]
            return [i for i in items if i is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, argument),) = node.items()
            if key == "Ref":
                return self._ref(argument)
            if key == "Fn::GetAtt":
                parts = argument.split(".", 1) if isinstance(argument, str) else argument
                return self._get_att(parts[0], parts[1])
            if key == "Fn::Sub":
                return self._sub(argument)
            if key == "Fn::If":
                name, when_true, when_false = argument
                return self._resolve(when_true if self.condition(name) else when_false)
            if key == "Fn::Equals":
                left, right = (self._resolve(a) for a in argument)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self._resolve(argument[0])
            if key == "Fn::And":
                return all(self._resolve(a) for a in argument)
            if key == "Fn::Or":
                return any(self._resolve(a) for a in argument)
            if key == "Condition":
                return self.condition(argument)
            if key == "Fn::Join":
                separator, values = argument
                return separator.join(str(v) for v in self._resolve(values))
            if key == "Fn::Select":
                index, values = argument
                return self._resolve(values)[int(self._resolve(index))]
            if key == "Fn::Split":
                separator, text = argument
                return str(self._resolve(text)).split(separator)
            if key == "Fn::GetAZs":
                return [f"{REGION}a", f"{REGION}b"]
        resolved = {k: self._resolve(v) for k, v in node.items()}
        return {k: v for k, v in resolved.items() if v is not _NO_VALUE}
