"""One botocore data loader for every session of an offline process.

Each botocore session builds its own data loader, and each loader parses the endpoint
catalogue (``endpoints.json``, 1.2 MB) and every service model it is asked for again. An
offline process opens many sessions: one per runtime (the tests open hundreds), and moto
opens more to list regions for each emulated service. The data is the same files read
the same way, so one loader per search path serves them all.
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Any

import botocore.session
from botocore.loaders import Loader

_loaders: dict[str | None, Loader] = {}
_lock = threading.Lock()


class _SearchPaths(list[str]):
    """A loader's search paths: boto3 appends its own for every session; keep one copy."""

    def append(self, path: str) -> None:
        if path not in self:
            super().append(path)


def shared_loader(search_path_string: str | None = None) -> Loader:
    """What ``botocore.loaders.create_loader`` returns, one per search path per process."""
    with _lock:
        loader = _loaders.get(search_path_string)
        if loader is None:
            extra: list[str] = []
            if search_path_string is not None:
                extra = [
                    os.path.expanduser(os.path.expandvars(path))
                    for path in search_path_string.split(os.pathsep)
                ]
            loader = Loader(extra_search_paths=_SearchPaths(extra))
            _loaders[search_path_string] = loader
        return loader


def share_botocore_data() -> None:
    """Make every botocore session created from now on use the shared loader, and moto's
    service models come from one loader of moto's own."""
    session_module: Any = botocore.session
    session_module.create_loader = shared_loader
    # moto reads each service's model (with its own additions, hence its own Loader class)
    # through a new loader per read, and a new loader lists every service folder of
    # botocore's data before it finds the file: 20-30 ms per emulated service.
    import moto.core.utils

    moto_utils: Any = moto.core.utils
    moto_utils.create_loader = _moto_loader


@functools.cache
def _moto_loader() -> Loader:
    """moto's own loader (botocore's data plus moto's additions), one per process."""
    from moto.core.loaders import create_loader

    return create_loader()
