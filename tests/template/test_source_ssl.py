"""The source endpoint's SSL mode per engine follows DMS's table, and the template refuses the rest.

"Using SSL with AWS DMS" (https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Security.SSL.html)
lists which SSL modes each engine supports; verify-ca and verify-full check the server
against a CA certificate imported into DMS. The template is resolved the way CloudFormation
would (the local runtime's resolver) for every engine, SourceSslMode and certificate, and
its Rules are evaluated as CloudFormation evaluates them before creating anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deltaload.local.account import ACCOUNT, REGION
from deltaload.local.template import Template

ROOT = Path(__file__).resolve().parents[2]
SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:source-AbCdEf"
CERT = f"arn:aws:dms:{REGION}:{ACCOUNT}:cert:ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# The per-engine table of the DMS page (the SSL modes each engine supports).
_MYSQL = {"none", "verify-ca", "verify-full"}
SUPPORTED = {
    "postgres": {"none", "require", "verify-ca", "verify-full"},
    "aurora-postgresql": {"none", "require", "verify-ca", "verify-full"},
    "mysql": _MYSQL,
    "mariadb": _MYSQL,
    "aurora": _MYSQL,
    "sqlserver": {"none", "require", "verify-full"},
    "oracle": {"none", "verify-ca"},
}
MODES = ["none", "require", "verify-ca", "verify-full"]


def _template(engine: str, mode: str, cert: str) -> Template:
    database = "" if engine in ("mysql", "mariadb", "aurora") else "sales"
    return Template.load(
        ROOT,
        {
            "SourceEngine": engine,
            "SourceSslMode": mode,
            "SourceCertificateArn": cert,
            "SourceSecretArn": SECRET,
            "SourceDatabaseName": database,
        },
    )


def _evaluate(template: Template, node: Any) -> Any:
    """A rule expression: Fn::Contains here, everything else the template resolver's."""
    if isinstance(node, dict) and len(node) == 1:
        ((key, argument),) = node.items()
        if key == "Fn::Contains":
            values, value = (_evaluate(template, a) for a in argument)
            return value in values
        if key == "Fn::Not":
            return not _evaluate(template, argument[0])
        if key == "Fn::Equals":
            left, right = (_evaluate(template, a) for a in argument)
            return str(left) == str(right)
    return template.resolve(node)


def _broken_rules(template: Template) -> list[str]:
    """The Rules whose condition holds and one of whose assertions fails."""
    broken = []
    for name, rule in template.body.get("Rules", {}).items():
        if "RuleCondition" in rule and not _evaluate(template, rule["RuleCondition"]):
            continue
        if not all(_evaluate(template, a["Assert"]) for a in rule["Assertions"]):
            broken.append(name)
    return broken


def _endpoint(template: Template) -> dict[str, Any]:
    return template.properties("SourceEndpoint")


@pytest.mark.parametrize("engine", sorted(SUPPORTED))
@pytest.mark.parametrize("cert", ["", CERT], ids=["no-cert", "cert"])
def test_engine_default_is_the_strongest_supported_mode(engine: str, cert: str) -> None:
    template = _template(engine, "engine-default", cert)
    endpoint = _endpoint(template)
    mode = endpoint["SslMode"]
    assert mode in SUPPORTED[engine]
    assert _broken_rules(template) == []
    if cert:
        assert mode == ("verify-ca" if engine == "oracle" else "verify-full")
        assert endpoint["CertificateArn"] == CERT
    else:
        # Without a certificate only require encrypts, and MySQL family and Oracle lack it.
        assert mode == ("require" if "require" in SUPPORTED[engine] else "none")
        assert "CertificateArn" not in endpoint


def test_the_default_of_the_parameter_is_engine_default() -> None:
    spec = Template.load(ROOT, {"SourceSecretArn": SECRET}).body["Parameters"]["SourceSslMode"]
    assert spec["Default"] == "engine-default"


@pytest.mark.parametrize("engine", sorted(SUPPORTED))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cert", ["", CERT], ids=["no-cert", "cert"])
def test_a_mode_is_accepted_exactly_when_dms_supports_it(engine: str, mode: str, cert: str) -> None:
    template = _template(engine, mode, cert)
    works = mode in SUPPORTED[engine] and (cert or not mode.startswith("verify"))
    broken = _broken_rules(template)
    assert (broken == []) == bool(works), (engine, mode, cert, broken)
    if works:
        assert _endpoint(template)["SslMode"] == mode


def test_require_on_mariadb_is_refused_with_the_reason() -> None:
    template = _template("mariadb", "require", "")
    assert _broken_rules(template) == ["SslRequireNotForMySqlOrOracle"]
    rule = template.body["Rules"]["SslRequireNotForMySqlOrOracle"]
    assert "does not support SourceSslMode require" in rule["Assertions"][0]["AssertDescription"]
