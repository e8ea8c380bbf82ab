"""Claiming a request for a local stand-in, so moto's stubber leaves it alone.

botocore offers a request to every ``before-send`` handler and takes the first response
(``botocore.endpoint.Endpoint._do_get_response``), so moto's stubber, also registered on
``before-send``, would still dispatch a request a local stand-in (the DMS engine, the
lake on disk, the in-process Lambda functions) has answered: doing the work twice, or
failing on it. Pointing the claimed request at a host no moto backend serves makes the
stubber skip it.
"""

from __future__ import annotations

from typing import Any

_ORIGINAL_URL = "_deltaload_aws_url"
_CLAIMED_URL = "https://deltaload-local.invalid/"


def claim(request: Any) -> str:
    """Take ``request`` from moto's stubber; returns the AWS URL it was sent to.

    A retry re-sends the same request object, so the URL first seen is kept on it.
    """
    url = str(getattr(request, _ORIGINAL_URL, None) or request.url)
    setattr(request, _ORIGINAL_URL, url)
    request.url = _CLAIMED_URL
    return url
