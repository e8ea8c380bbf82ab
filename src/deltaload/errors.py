"""One error hierarchy for deltaload; every message says which table and which field.

Every error the package raises on purpose is defined here, grouped by the module that
raises it (the offline runtime's are in ``deltaload.local.errors``, the local DMS
engine's in ``deltaload.local.dms.errors``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class DeltaloadError(Exception):
    """Base class of every error deltaload raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a controller item: the attribute, what was found, what is allowed."""

    attribute: str
    found: str
    allowed: str

    def __str__(self) -> str:
        return f"{self.attribute}: found {self.found}; {self.allowed}"


class InvalidItemError(DeltaloadError):
    """A controller item failed validation; lists every problem at once."""

    def __init__(self, table: str, problems: list[Problem]) -> None:
        self.table = table
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        noun = "problem" if len(self.problems) == 1 else "problems"
        super().__init__(
            f"controller item for table {table!r} is invalid "
            f"({len(self.problems)} {noun}):\n{lines}"
        )


# -- deltaload.window ------------------------------------------------------------------------------


class PlanningError(DeltaloadError, ValueError):
    """A window cannot be planned, or its watermark resolved, from what was given.

    A ValueError too: what was given is a value the planner cannot take.
    """


# -- deltaload.settings ----------------------------------------------------------------------------


class SettingsError(DeltaloadError):
    """An environment variable is missing or malformed; the message names it."""


# -- deltaload.aws ---------------------------------------------------------------------------------


class TransientError(DeltaloadError):
    """AWS kept throttling or failing transiently after the SDK's retries; retry the step."""


# -- deltaload.store -------------------------------------------------------------------------------


class ItemNotFoundError(DeltaloadError):
    """There is no controller item for the table a run was started for."""


class LockLostError(DeltaloadError):
    """The run no longer holds the table's lock (it expired and another run took it)."""


class WatermarkConflictError(DeltaloadError):
    """The watermark moved since the run planned its window; the run must not commit."""


class LockHeldError(DeltaloadError):
    """A run holds the table's lock: the command must wait until it has finished."""


class OnboardRefusedError(DeltaloadError):
    """onboard refused: ``refusals`` names each table and why; ``written`` what was already
    committed by earlier transactions (empty unless more than 100 items were given)."""

    def __init__(self, refusals: list[str], written: list[str] | None = None) -> None:
        self.refusals = list(refusals)
        self.written = list(written or [])
        done = f"; already written: {', '.join(self.written)}" if self.written else ""
        super().__init__("; ".join(self.refusals) + done)


# -- deltaload.replication -------------------------------------------------------------------------


class ResourceError(DeltaloadError):
    """A DMS resource could not be created or did not become usable."""


class LoadFailedError(DeltaloadError):
    """The DMS full load did not finish cleanly."""


# -- deltaload.workflow ----------------------------------------------------------------------------


class WaitTimeoutError(DeltaloadError):
    """A wait loop passed its deadline (used as the error name of a timed-out poll)."""


# -- deltaload.publish -----------------------------------------------------------------------------


class VerificationError(DeltaloadError):
    """The staged files do not match what DMS says it loaded; nothing is published."""


# -- deltaload.parquet_footer ----------------------------------------------------------------------


class FooterError(ValueError):
    """The footer bytes are not the Thrift compact encoding of a FileMetaData."""


# -- deltaload.starter -----------------------------------------------------------------------------


class StartFailedError(DeltaloadError):
    """Tables could not be started for a reason other than throttling or a cap."""

    def __init__(self, message: str, summary: dict[str, Any]) -> None:
        super().__init__(message)
        self.summary = summary
