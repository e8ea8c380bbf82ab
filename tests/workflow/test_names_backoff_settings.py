"""Pure helpers: DMS identifiers, execution names, S3 keys, backoff, settings."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deltaload import backoff, names
from deltaload.settings import Settings, SettingsError

ENV = {"CONTROLLER_TABLE": "c", "HISTORY_TABLE": "h", "DATA_BUCKET": "b"}


@given(table=st.text(min_size=1, max_size=300), run_id=st.text(min_size=1, max_size=90))
def test_every_dms_identifier_is_one_dms_accepts(table: str, run_id: str) -> None:
    for identifier in names.dms_names(table, run_id).identifiers():
        assert names.is_dms_identifier(identifier), identifier
        assert len(identifier) <= 63
        assert "--" not in identifier and not identifier.endswith("-")
        assert identifier[0].isalpha()


@pytest.mark.parametrize("bad", ["1abc", "a--b", "abc-", "a_b", "a" * 64, "", "-a", "ab c"])
def test_identifier_rule_rejects_what_dms_rejects(bad: str) -> None:
    assert not names.is_dms_identifier(bad)


def test_identifiers_differ_per_run_and_per_kind() -> None:
    first = names.dms_names("ORDERS__2024", "ORDERS-20240101T0000Z")
    second = names.dms_names("ORDERS__2024", "ORDERS-20240101T0100Z")
    assert first != second
    assert len(set(first.identifiers())) == 4
    assert first.instance.startswith("dl-ri-orders-2024-")


def test_long_table_names_stay_unique_per_run() -> None:
    table = "a_very_long_table_name_" * 10
    a = names.dms_names(table, "r1").task
    b = names.dms_names(table, "r2").task
    assert a != b and len(a) == 63


@given(table=st.text(min_size=1, max_size=200))
def test_execution_names_are_valid(table: str) -> None:
    name = names.execution_name(table, "20240501T1200Z")
    assert len(name) <= 80
    assert all(c.isascii() and (c.isalnum() or c in "-_") for c in name)
    assert name.endswith("-20240501T1200Z")


def test_execution_name_keeps_plain_tables_readable_and_altered_ones_distinct() -> None:
    assert names.execution_name("orders", "20240501T1200Z") == "orders-20240501T1200Z"
    assert names.execution_name("a.b", "T") != names.execution_name("a_b", "T")


def test_tick_is_utc_to_the_second() -> None:
    # A redelivered schedule event carries the same time; two manual runs a second apart do not.
    moment = datetime(2024, 5, 1, 12, 34, 56, 999999, tzinfo=UTC)
    assert names.tick(moment) == "20240501T123456Z"


def test_prefixes_end_with_one_slash_so_orders_never_matches_orders_items() -> None:
    orders = names.run_keys("staging/", "datalake/sales/", "sales", "ORDERS", "run1")
    items = names.run_keys("staging", "datalake/sales", "sales", "ORDERS_ITEMS", "run1")
    assert orders.final_prefix == "datalake/sales/sales/ORDERS/"
    assert orders.staging_folder == "staging/ORDERS/run1"
    assert orders.staging_prefix == "staging/ORDERS/run1/"
    assert orders.run_prefix == "datalake/sales/sales/ORDERS/run=run1/"
    assert orders.manifest_key == "datalake/sales/sales/ORDERS/_manifests/run1.json"
    assert not items.final_prefix.startswith(orders.final_prefix)
    assert not items.staging_prefix.startswith(names.as_prefix("staging/ORDERS"))


def test_backoff_grows_and_is_capped() -> None:
    waits = [backoff.next_wait(n, 30, 300) for n in range(8)]
    assert waits == [30, 60, 120, 240, 300, 300, 300, 300]
    assert backoff.next_wait(10_000, 30, 300) == 300
    assert backoff.wait_within(5, 30, 300, deadline=1_000, now=990) == 10
    assert backoff.deadline_passed(1_000, 1_000)
    assert not backoff.deadline_passed(1_000, 999)


def test_settings_from_env_types_and_defaults() -> None:
    settings = Settings.from_env(
        {
            **ENV,
            "NOTIFY_ON_SUCCESS": "true",
            "SECURITY_GROUP_IDS": "sg-1, sg-2",
            "MAX_CONCURRENT_RUNS": "5",
            "REPLICATION_MODE": "serverless",
        }
    )
    assert settings.notify_on_success is True
    assert settings.security_group_ids == ("sg-1", "sg-2")
    assert settings.max_concurrent_runs == 5
    assert settings.staging_prefix == "staging"


@pytest.mark.parametrize("missing", sorted(ENV))
def test_settings_name_the_missing_variable(missing: str) -> None:
    env = {k: v for k, v in ENV.items() if k != missing}
    with pytest.raises(SettingsError, match=missing):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("POLL_MAX_SECONDS", "soon"), ("REPLICATION_MODE", "fast"), ("NOTIFY_ON_SUCCESS", "maybe")],
)
def test_settings_reject_malformed_values(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({**ENV, variable: value})


def test_require_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="SOURCE_ENDPOINT_ARN"):
        Settings.from_env(ENV).require("source_endpoint_arn")


def test_run_identifiers_hold_every_window_and_instance_a_run_may_create() -> None:
    """The offline Wait states end at a change of any of these (local/runtime.py)."""
    ids = names.run_identifiers("orders", "orders-20260101T000000Z", 50, 5)
    run = names.dms_names("orders", "orders-20260101T000000Z")
    assert set(run.identifiers()) <= ids
    for index in (1, 2, 50):
        window = names.window_names("orders", "orders-20260101T000000Z", index, 5)
        assert {window.task, window.target_endpoint, window.instance} <= ids
    assert names.instance_name("orders", "orders-20260101T000000Z", 5) in ids
    assert names.window_names("orders", "orders-20260101T000000Z", 51, 5).task not in ids
