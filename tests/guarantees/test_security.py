"""No password or secret value in any output of a run (design: "no passwords in parameters
or logs"). A throwaway PostgreSQL role with a distinctive password is the source login;
one run succeeds and one fails at the source (SELECT revoked, so error text flows into the
item, the history, the notification and the execution). Then every place a user or
operator can read is searched for the password: the function log file, captured stdout,
stderr and logging, the controller and history tables, notifications, every execution's
input, output and event history, every object in the bucket and every file of the state
folder.
"""

from __future__ import annotations

import json
import logging
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from deltaload.local.runtime import SOURCE_SECRET_NAME as SECRET
from deltaload.local.runtime import LocalRuntime
from tests.guarantees.conftest import OrdersTable, Ticks, old, open_runtime
from tests.integration.conftest import _orders
from tests.servers import POSTGRES_URL, server_engine

pytestmark = pytest.mark.postgres

ROLE = f"dl_secret_test_{uuid.uuid4().hex[:6]}"
PASSWORD = f"S3cr3t-Value-{secrets.token_hex(8)}"


@pytest.fixture
def secret_source() -> Iterator[tuple[OrdersTable, str]]:
    admin = server_engine(POSTGRES_URL, "PostgreSQL")
    name = f"orders_{uuid.uuid4().hex[:8]}"
    metadata = sa.MetaData()
    with admin.begin() as conn:
        conn.exec_driver_sql("CREATE SCHEMA IF NOT EXISTS dwh")
        conn.exec_driver_sql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
        conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA dwh TO {ROLE}")
    table = _orders(metadata, name, "dwh")
    metadata.create_all(admin)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"GRANT SELECT ON dwh.{name} TO {ROLE}")
    url = sa.make_url(POSTGRES_URL).set(username=ROLE, password=PASSWORD)
    try:
        yield OrdersTable("postgres", POSTGRES_URL, admin, table), url.render_as_string(False)
    finally:
        metadata.drop_all(admin)
        with admin.begin() as conn:
            conn.exec_driver_sql(f"REVOKE ALL ON SCHEMA dwh FROM {ROLE}")
            conn.exec_driver_sql(f"DROP ROLE IF EXISTS {ROLE}")
        admin.dispose()


def _everything(rt: LocalRuntime) -> dict[str, str]:
    """Every readable artefact of the runtime, as text, by where it came from."""
    found: dict[str, str] = {
        "items": json.dumps(rt.items(), default=str),
        "history": json.dumps(rt.history(), default=str),
        "notifications": json.dumps(rt.notifications(), default=str),
    }
    sfn = rt.session.client("stepfunctions")
    for execution in sfn.list_executions(stateMachineArn=rt.state_machine_arn)["executions"]:
        arn = execution["executionArn"]
        found[f"execution {arn}"] = json.dumps(
            [sfn.describe_execution(executionArn=arn), rt.execution_history(arn)], default=str
        )
    s3 = rt.session.client("s3")
    objects = rt.keys("")
    for key in objects:
        found[f"s3 {key}"] = (
            s3.get_object(Bucket=rt.bucket, Key=key)["Body"].read().decode("latin-1")
        )
    return found


def test_no_secret_in_any_output(
    secret_source: tuple[OrdersTable, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    orders, url = secret_source
    caplog.set_level(logging.DEBUG)
    orders.insert(range(1, 21), old())
    log_file = tmp_path / "functions.log"
    ticks = Ticks()
    with open_runtime(tmp_path / "state", url, log_file=log_file) as rt:
        rt.put_item(orders.item("secret_s3"))
        good = rt.tick(now=ticks())
        assert [e.status for e in good.executions] == ["SUCCEEDED"], good
        assert rt.item("secret_s3")["lastRunRows"] == 20

        # A failing run: the source refuses the read, so error text travels everywhere.
        orders.insert(range(21, 31), old())
        with orders.engine.begin() as conn:
            conn.exec_driver_sql(f"REVOKE SELECT ON dwh.{orders.name} FROM {ROLE}")
        bad = rt.tick(now=ticks())
        assert [e.status for e in bad.executions] == ["FAILED"], bad
        # The source probe reads first and is refused (before any DMS resource exists).
        error = rt.item("secret_s3")["lastRunError"]
        assert "ProbeError" in error and "permission denied" in error
        secret = rt.session.client("secretsmanager").get_secret_value(SecretId=SECRET)
        assert PASSWORD in secret["SecretString"]  # the search below would see it if it leaked
        assert rt.notifications()
        artefacts = _everything(rt)

    out, err = capsys.readouterr()
    artefacts["stdout"], artefacts["stderr"] = out, err
    # botocore's own DEBUG records echo request and response bodies, including the offline
    # runtime's CreateSecret and the local DMS engine's GetSecretValue (in AWS, DMS reads the
    # secret; no function does). Those are emulation records at a level nobody deploys with;
    # every other record, at every level, must be clean.
    botocore_debug = [
        r for r in caplog.records if r.name.startswith("botocore") and r.levelno < logging.INFO
    ]
    artefacts["logging"] = "\n".join(
        f"{r.name} {r.getMessage()}" for r in caplog.records if r not in botocore_debug
    )
    artefacts["log file"] = log_file.read_text(encoding="utf-8")
    assert "run failed" in artefacts["log file"] + out  # the logs were captured
    for path in sorted((tmp_path / "state").rglob("*")):
        if path.is_file():
            artefacts[f"state {path.relative_to(tmp_path)}"] = path.read_bytes().decode("latin-1")
    leaks = sorted(where for where, text in artefacts.items() if PASSWORD in text)
    assert not leaks, f"the source password appears in: {leaks}"
