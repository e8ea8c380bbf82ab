"""The typed settings object, read once from the environment (see docs/architecture.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from deltaload.errors import SettingsError

REPLICATION_MODES = ("instance", "existing", "serverless")


@dataclass(frozen=True)
class Settings:
    """Everything the handlers read from the environment, typed and checked."""

    controller_table: str
    history_table: str
    data_bucket: str
    staging_prefix: str = "staging"
    state_machine_arn: str = ""
    topic_arn: str = ""
    notify_on_success: bool = False
    source_endpoint_arn: str = ""
    dms_s3_role_arn: str = ""
    replication_mode: str = "instance"
    replication_instance_class: str = "dms.t3.medium"
    replication_allocated_storage: int = 50
    existing_instance_arn: str = ""
    replication_subnet_group: str = ""
    security_group_ids: tuple[str, ...] = ()
    serverless_max_capacity_units: int = 4
    poll_initial_seconds: int = 30
    poll_max_seconds: int = 300
    resource_timeout_seconds: int = 3600
    load_timeout_seconds: int = 6 * 3600
    teardown_timeout_seconds: int = 3600
    lock_timeout_seconds: int = 12 * 3600
    safety_lag_seconds: int = 300
    max_concurrent_runs: int = 0
    # Below DMS's quotas of 60 replication instances per account and, on one instance, 200
    # tasks and 100 endpoints (each run adds a target endpoint); 0 = no cap.
    max_replication_instances: int = 50
    max_tasks_per_shared_instance: int = 90
    max_file_size_kb: int = 1_048_576
    # The Glue database the stack keeps a table per controller item in; empty: no catalog.
    glue_database: str = ""
    # The source probe (ProbeSource): off unless the stack switches it on (ProbeSource=true).
    probe_enabled: bool = False
    probe_timeout_seconds: int = 60
    source_secret_arn: str = ""
    source_engine: str = ""
    source_database: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from an environment mapping; SettingsError names what is wrong."""
        values: dict[str, Any] = {}
        for spec in fields(cls):
            variable = spec.name.upper()
            raw = environ.get(variable, "").strip()
            if not raw:
                if spec.name in _REQUIRED:
                    raise SettingsError(f"environment variable {variable} is required but not set")
                continue
            values[spec.name] = _convert(variable, raw, spec.type)
        settings = cls(**values)
        if settings.replication_mode not in REPLICATION_MODES:
            raise SettingsError(
                f"environment variable REPLICATION_MODE is {settings.replication_mode!r}; "
                f"expected one of {', '.join(REPLICATION_MODES)}"
            )
        if settings.poll_initial_seconds > settings.poll_max_seconds:
            raise SettingsError(
                "POLL_INITIAL_SECONDS must not exceed POLL_MAX_SECONDS "
                f"({settings.poll_initial_seconds} > {settings.poll_max_seconds})"
            )
        return settings

    def require(self, name: str) -> str:
        """The value of an optional string setting a step cannot do without."""
        value = getattr(self, name)
        if not value:
            raise SettingsError(
                f"environment variable {name.upper()} is required for this step but not set"
            )
        return value


_REQUIRED = {"controller_table", "history_table", "data_bucket"}


def _convert(variable: str, raw: str, kind: Any) -> Any:
    kind = str(kind)
    if kind == "bool":
        if raw.lower() in ("true", "1", "yes"):
            return True
        if raw.lower() in ("false", "0", "no"):
            return False
        raise SettingsError(f"environment variable {variable} is {raw!r}; expected true or false")
    if kind == "int":
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(
                f"environment variable {variable} is {raw!r}; expected a whole number"
            ) from None
        if value < 0:
            raise SettingsError(f"environment variable {variable} is {raw!r}; expected >= 0")
        return value
    if kind.startswith("tuple"):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw
