"""The deployer's permissions: docs/deployer-policy.json is what the provider schemas derive,
and every permission README names is part of it."""

from __future__ import annotations

import json
import re

from tests.iam.deployer import deployer_policy, handler_permissions
from tests.iam.roles import ROOT


def test_the_documented_deployer_policy_is_the_derived_one() -> None:
    documented = json.loads((ROOT / "docs" / "deployer-policy.json").read_text())
    assert documented == deployer_policy(), (
        "docs/deployer-policy.json is stale; refresh it with "
        "python -m tests.iam.deployer > docs/deployer-policy.json"
    )


def test_creating_the_source_endpoint_needs_what_the_readme_names() -> None:
    # The DMS endpoint's create handler reads the secret's metadata and the access role.
    assert {"secretsmanager:DescribeSecret", "iam:GetRole", "iam:PassRole"} <= handler_permissions(
        "AWS::DMS::Endpoint"
    )


def test_every_permission_the_readme_names_is_in_the_policy() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("**Deployer permissions.**", 1)[1].split("\n\n", 1)[0]
    named = set(re.findall(r"`([a-z0-9-]+:[A-Za-z*]+)`", section))
    granted = {a for s in deployer_policy()["Statement"] for a in s["Action"]}
    assert named, "README names no deployer permission"
    assert named <= granted, sorted(named - granted)
