"""JSON 1.1 wire format of the DMS API: decode a prepared request, encode a response."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from botocore.awsrequest import AWSResponse

from deltaload.local.account import REGION

from .errors import DmsFault

TARGET_PREFIX = "AmazonDMSv20160101."


class _RawBody:
    """The minimal ``raw`` object botocore reads an AWSResponse body from."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        """Yield the whole body once (botocore joins the chunks)."""
        yield self._body


def parse_request(request: Any, url: str) -> tuple[str, dict[str, Any], str]:
    """Return (operation, params, region) of a botocore AWSPreparedRequest sent to ``url``."""
    target = request.headers.get("X-Amz-Target", "")
    if isinstance(target, bytes):
        target = target.decode()
    operation = target.removeprefix(TARGET_PREFIX)
    body = request.body or b"{}"
    if hasattr(body, "read"):
        body = body.read()
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    params = json.loads(body or "{}")
    return operation, params, _region_of(url)


def _region_of(url: str) -> str:
    """The region in a DMS endpoint URL such as https://dms.eu-west-1.amazonaws.com/."""
    host = urlsplit(url).hostname or ""
    parts = host.split(".")
    if len(parts) >= 3 and parts[0] == "dms":
        return parts[1]
    return REGION


def to_wire(value: Any) -> Any:
    """Drop None members and turn datetimes into epoch seconds, as the JSON protocol does."""
    if isinstance(value, Mapping):
        return {k: to_wire(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [to_wire(v) for v in value]
    if isinstance(value, datetime):
        return value.timestamp()
    return value


def _response(url: str, status: int, payload: Mapping[str, Any]) -> AWSResponse:
    body = json.dumps(to_wire(payload)).encode("utf-8")
    headers = {
        "Content-Type": "application/x-amz-json-1.1",
        "Content-Length": str(len(body)),
        "x-amzn-RequestId": str(uuid.uuid4()),
    }
    return AWSResponse(url, status, headers, _RawBody(body))


def ok_response(url: str, payload: Mapping[str, Any]) -> AWSResponse:
    """A 200 response with ``payload`` as the JSON body."""
    return _response(url, 200, payload)


def error_response(url: str, fault: DmsFault) -> AWSResponse:
    """A 4xx response botocore turns into a ClientError with the fault's code and message."""
    return _response(url, fault.status, {"__type": fault.code, "message": fault.message})
