"""Validation of DMS request parameters (identifiers, endpoints, types, settings)."""

from __future__ import annotations

import json
import re
from typing import Any

from . import errors as e
from .models import LoadState
from .writer import DEFAULT_MAX_FILE_KB

SOURCE_ENGINES = {
    "sqlite": "sqlite",
    "postgres": "postgres",
    "aurora-postgresql": "postgres",
    "mysql": "mysql",
    "mariadb": "mysql",
    "aurora": "mysql",
}
START_TYPES = ("start-replication", "resume-processing", "reload-target")
_IDENT = re.compile(r"^[A-Za-z](?:[A-Za-z0-9]|-(?!-)){0,254}$")


def identifier(params: dict[str, Any], key: str, what: str) -> str:
    """The identifier under ``key``, checked against DMS naming rules."""
    ident = str(params.get(key, ""))
    if not _IDENT.fullmatch(ident):
        raise e.InvalidParameterValueException(
            f"{what} identifier {ident!r} is invalid: it must be 1-255 letters, digits or hyphens, "
            "start with a letter, and not end with a hyphen or contain two consecutive hyphens"
        )
    if ident.endswith("-"):
        raise e.InvalidParameterValueException(f"{what} identifier {ident!r} ends with a hyphen")
    return ident


def check_source(ident: str, engine: str, params: dict[str, Any]) -> None:
    """Refuse a source endpoint the engine cannot read, naming what is missing."""
    if engine not in SOURCE_ENGINES:
        raise e.InvalidParameterValueException(
            f"Endpoint {ident}: source EngineName {engine!r} is not supported by the local "
            f"replication engine ({', '.join(sorted(SOURCE_ENGINES))})"
        )
    settings = params.get("PostgreSQLSettings") or params.get("MySQLSettings") or {}
    if settings.get("SecretsManagerSecretId"):
        return
    if engine == "sqlite":
        if not params.get("DatabaseName"):
            raise e.InvalidParameterValueException(
                f"Endpoint {ident}: a sqlite source needs DatabaseName (the database file path)"
            )
        return
    if not (params.get("ServerName") or settings.get("ServerName")):
        raise e.InvalidParameterValueException(
            f"Endpoint {ident}: give ServerName/Port/Username/Password or a "
            "SecretsManagerSecretId in PostgreSQLSettings/MySQLSettings"
        )


def check_target(ident: str, engine: str, params: dict[str, Any]) -> dict[str, Any]:
    """Validate an S3 Parquet target; return its S3Settings with DMS defaults."""
    if engine != "s3":
        raise e.InvalidParameterValueException(
            f"Endpoint {ident}: target EngineName {engine!r} is not supported locally (s3 only)"
        )
    s3 = dict(params.get("S3Settings") or {})
    if not s3.get("BucketName"):
        raise e.InvalidParameterValueException(
            f"Endpoint {ident}: S3Settings.BucketName is required"
        )
    data_format = str(s3.get("DataFormat") or "csv").lower()
    if data_format != "parquet":
        raise e.InvalidParameterValueException(
            f"Endpoint {ident}: S3Settings.DataFormat {data_format!r} is not supported locally; "
            "the local engine writes parquet only (DMS's default is csv, so set it explicitly)"
        )
    size = s3.get("MaxFileSize", DEFAULT_MAX_FILE_KB)
    if not isinstance(size, int) or not 1 <= size <= DEFAULT_MAX_FILE_KB:
        raise e.InvalidParameterValueException(
            f"Endpoint {ident}: S3Settings.MaxFileSize {size!r} must be 1..1048576 (KB)"
        )
    version = s3.get("ParquetVersion", "parquet-1-0")
    if version not in ("parquet-1-0", "parquet-2-0"):
        raise e.InvalidParameterValueException(
            f"Endpoint {ident}: S3Settings.ParquetVersion {version!r} (parquet-1-0/parquet-2-0)"
        )
    s3.setdefault("DataFormat", "parquet")
    s3.setdefault("MaxFileSize", DEFAULT_MAX_FILE_KB)
    s3.setdefault("ParquetVersion", "parquet-1-0")
    s3.setdefault("EnableStatistics", True)
    return s3


def check_migration_type(owner: str, value: Any, key: str) -> None:
    """Only full-load is supported locally (no transaction log to read CDC from)."""
    if value != "full-load":
        raise e.InvalidParameterValueException(
            f"{owner}: {key} {value!r} is not supported by the local replication engine; it "
            "copies a consistent snapshot (full-load) only, as change data capture would need "
            "the source's transaction log"
        )


def check_start_type(owner: str, state: LoadState, start_type: Any) -> None:
    """Enforce DMS's start-type rules for a first run and later runs."""
    if start_type not in START_TYPES:
        raise e.InvalidParameterValueException(
            f"{owner}: start type {start_type!r} must be one of {', '.join(START_TYPES)}"
        )
    if start_type == "start-replication" and state.ever_started:
        # DMS's own wording for this case.
        raise e.InvalidParameterCombinationException(
            "Start Type : START_REPLICATION, valid only for tasks running for the first time"
        )
    if start_type != "start-replication" and not state.ever_started:
        raise e.InvalidParameterCombinationException(
            f"Start Type : {str(start_type).upper().replace('-', '_')}, valid only for tasks "
            f"that have run before; {owner} has never run: use start-replication"
        )


def settings_json(owner: str, text: Any) -> str:
    """Task/replication settings: must be JSON; "{}" when not given."""
    if text in (None, ""):
        return "{}"
    try:
        json.loads(text)
    except (TypeError, json.JSONDecodeError) as exc:
        raise e.InvalidParameterValueException(
            f"{owner}: settings are not valid JSON: {exc}"
        ) from exc
    return str(text)


def attributes(text: Any) -> dict[str, str]:
    """Parse ExtraConnectionAttributes 'a=1;b=2'."""
    pairs = (part.split("=", 1) for part in str(text or "").split(";") if "=" in part)
    return {k.strip(): v.strip() for k, v in pairs}
