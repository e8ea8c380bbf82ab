"""The offline runtime's errors: every one it raises on purpose is defined here, grouped
by the module that raises it (the local DMS engine's are in ``deltaload.local.dms.errors``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deltaload.errors import DeltaloadError

if TYPE_CHECKING:
    from deltaload.local.runtime import ExecutionResult

# -- deltaload.local.source ------------------------------------------------------------------------


class LocalRuntimeError(DeltaloadError):
    """The offline runtime could not start or could not finish a command."""


# -- deltaload.local.runtime -----------------------------------------------------------------------


class Interrupted(LocalRuntimeError):
    """The command was interrupted (SIGINT or SIGTERM); its runs went through the failure path."""

    def __init__(self, message: str, executions: list[ExecutionResult]) -> None:
        super().__init__(message)
        self.executions = executions


# -- deltaload.local.persistence -------------------------------------------------------------------


class DamagedStateError(DeltaloadError):
    """A state file cannot be read back; nothing was changed."""


class StateFolderBusyError(DeltaloadError):
    """Another process holds the state folder's writer lock."""


# -- deltaload.local.template ----------------------------------------------------------------------


class TemplateError(DeltaloadError):
    """template.yaml cannot be read or resolved for the local runtime."""


# -- deltaload.local.s3 ----------------------------------------------------------------------------


class S3Error(Exception):
    """An S3 error response: code, message, HTTP status and extra XML fields."""

    def __init__(self, code: str, message: str, status: int, **fields: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status, self.fields = code, message, status, fields
