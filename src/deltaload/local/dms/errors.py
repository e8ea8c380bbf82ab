"""DMS error codes the local engine answers with, and the engine's own load errors."""

from __future__ import annotations


class DmsFault(Exception):
    """An error DMS returns to the caller: HTTP 400 with ``__type`` set to :attr:`code`."""

    code = "InternalFailure"
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ResourceNotFoundFault(DmsFault):
    """The named endpoint, instance, task, subnet group or config does not exist."""

    code = "ResourceNotFoundFault"


class ResourceAlreadyExistsFault(DmsFault):
    """A resource with the same identifier already exists."""

    code = "ResourceAlreadyExistsFault"


class InvalidResourceStateFault(DmsFault):
    """The resource is not in a state that allows the operation."""

    code = "InvalidResourceStateFault"


class InvalidParameterValueException(DmsFault):
    """A parameter has a value DMS (or this local engine) does not accept."""

    code = "InvalidParameterValueException"


class InvalidParameterCombinationException(DmsFault):
    """Parameters that cannot be used together, e.g. a start type not valid for the task."""

    code = "InvalidParameterCombinationException"


class ResourceQuotaExceededFault(DmsFault):
    """A create past a DMS resource quota (local/dms/quotas.py); also injected faults' default."""

    code = "ResourceQuotaExceededFault"


class ThrottlingException(DmsFault):
    """The API token bucket is empty (or an injected ``throttle``); botocore retries it."""

    code = "ThrottlingException"


class UnknownOperationException(DmsFault):
    """An operation the local engine does not implement."""

    code = "InvalidAction"


class LoadError(Exception):
    """A full load failed; the message becomes the task's LastFailureMessage."""


FAULTS_BY_CODE: dict[str, type[DmsFault]] = {
    cls.code: cls
    for cls in (
        ResourceNotFoundFault,
        ResourceAlreadyExistsFault,
        InvalidResourceStateFault,
        InvalidParameterValueException,
        InvalidParameterCombinationException,
        ResourceQuotaExceededFault,
        ThrottlingException,
    )
}


def injected(code: str, message: str) -> DmsFault:
    """A DmsFault with any DMS error code (for injected faults)."""
    cls = FAULTS_BY_CODE.get(code)
    if cls is not None:
        return cls(message)
    fault = DmsFault(message)
    fault.code = code
    return fault
