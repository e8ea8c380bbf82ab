"""Hooks on moto's Step Functions interpreter: states entered, executions ended, Wait states.

The offline runtime executes the real state machine in moto's interpreter. Three things
it needs are not in the Step Functions API, or cost too much through it:

* which state each execution is in, for the live progress, without reading the whole
  execution history (GetExecutionHistory) again and again;
* when an execution ends, so a command waiting for it wakes then instead of polling
  DescribeExecution;
* a definition parsed once, not at every execution nor at every command: moto parses the
  definition with its ANTLR grammar when the state machine is created and again when
  each execution starts (about 1 s each). The parsed program is kept pickled, in memory,
  in the state folder's ``cache/`` and in the user's cache folder shared by every state
  folder (``shared_cache_dir``), and each execution gets its own copy (3 ms), so no
  per-run value is shared between executions;
* a Wait state that ends early when what it waits for is done. A Wait state lasts its
  ``SecondsPath`` seconds (Wait state, https://docs.aws.amazon.com/step-functions/latest/dg/amazon-states-language-wait-state.html);
  offline, every wait in the definition waits on the local DMS engine, whose emulated
  transitions take fractions of a second, so a listener may end it at the engine's next
  status change. The definition, its waits and the handlers stay as they are in AWS.

It also keeps the interpreter's import small: its AWS Batch task support imports
``moto.batch``, whose package imports moto's whole EC2 emulation (AMI and instance-type
catalogues, 1.5-4 s of JSON); the definition runs no Batch task, so that package's body
runs only if something uses it.

``install`` patches the interpreter once per process; each runtime registers a
``Listener`` while it is open. Executions of no registered listener behave exactly as
moto's do.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import pickle
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

LOG = logging.getLogger(__name__)

# Parsed programs, pickled, by definition text; and the folder that keeps them between
# commands (set by a writing runtime; None: this process only).
_parsed: dict[str, bytes] = {}
_cache_dirs: tuple[Path, ...] = ()  # use_cache


class Listener(Protocol):
    """What a runtime is told about the executions of its state machine."""

    def owns(self, execution_arn: str) -> bool:
        """True if the execution is one of this listener's."""
        ...

    def state_entered(self, execution_arn: str, state: str) -> None:
        """The execution entered ``state``."""
        ...

    # Optional: ``window_entered(execution_arn, window, state)``, a state of the Map
    # iteration of item ``window`` (1-based); without it those are ``state_entered`` too.

    def execution_ended(self, execution_arn: str) -> None:
        """The execution has ended (its status is no longer RUNNING)."""
        ...

    def wait(self, execution_arn: str, seconds: int, running: Callable[[], bool]) -> None:
        """Run a Wait state of ``seconds``; return early once the awaited thing may be done."""
        ...


_listeners: list[Listener] = []
_lock = threading.Lock()
_installed = False


def _map_index(env: Any) -> int | None:
    """The 0-based index of the Map item whose iteration ``env`` runs, or None outside a Map.

    Each iteration runs in an inner frame of its own whose context object holds ``Map.Item``
    (the Map context object: https://docs.aws.amazon.com/step-functions/latest/dg/input-output-contextobject.html#contextobject-map).
    """
    try:
        data = env.states.context_object.context_object_data.get("Map")
        return int(data["Item"]["Index"]) if data else None
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def register(listener: Listener) -> None:
    """Tell ``listener`` about its executions until ``unregister``."""
    install()
    with _lock:
        _listeners.append(listener)


def unregister(listener: Listener) -> None:
    """Stop telling ``listener``."""
    with _lock:
        if listener in _listeners:
            _listeners.remove(listener)


def _listener(execution_arn: str | None) -> Listener | None:
    if not execution_arn:
        return None
    with _lock:
        return next((x for x in reversed(_listeners) if x.owns(execution_arn)), None)


def _execution_arn(env: Any) -> str | None:
    try:
        return str(env.states.context_object.context_object_data["Execution"]["Id"])
    except (AttributeError, KeyError, TypeError):
        return None


def shared_cache_dir() -> Path | None:
    """The parse cache every state folder of this user shares, so a new state folder's
    first command does not parse the definition again (about 0.8 s): DELTALOAD_CACHE_DIR,
    else the platform's user cache folder (platformdirs: ~/.cache/deltaload on Linux);
    DELTALOAD_CACHE_DIR set empty turns it off."""
    configured = os.environ.get("DELTALOAD_CACHE_DIR")
    if configured is not None:
        return Path(configured) if configured else None
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("deltaload", appauthor=False))


def use_cache(*folders: Path) -> None:
    """Keep parsed definitions in ``folders`` between commands: each parse is written to
    every one of them, and read from the first that has it (none: in memory only)."""
    global _cache_dirs
    _cache_dirs = tuple(folders)


def _cache_files(definition: str) -> list[Path]:
    if not _cache_dirs:
        return []
    # A pickle is only good for the moto and Python that made it.
    import moto

    key = hashlib.sha256(f"{moto.__version__}\n{sys.version}\n{definition}".encode()).hexdigest()
    return [folder / f"asl-{key[:32]}.pickle" for folder in _cache_dirs]


def _trusted(path: Path) -> bool:
    """A cache file this user wrote and nobody else can change: a pickle runs code when it
    is loaded, so a file others could have written is parsed again instead."""
    try:
        status = path.stat()
    except OSError:
        return False
    owner = getattr(os, "getuid", None)
    mine = owner is None or status.st_uid == owner()
    return mine and not status.st_mode & 0o022


def _cached_blobs(definition: str) -> Iterator[tuple[str, bytes]]:
    """Pickled parses of ``definition``: the one kept in memory, then the cache folders'."""
    if definition in _parsed:
        yield "memory", _parsed[definition]
    for cache in _cache_files(definition):
        if cache.is_file() and _trusted(cache):
            try:
                yield str(cache), cache.read_bytes()
            except OSError:
                continue


def _cached_program(definition: str) -> Any | None:
    """The program of an earlier parse of ``definition``, or None."""
    for where, blob in _cached_blobs(definition):
        try:
            program = pickle.loads(blob)
        except Exception:  # a cache from another build: the next one, else parse again
            LOG.debug("offline Step Functions: ignoring unreadable parse cache %s", where)
            continue
        _parsed[definition] = blob
        return program
    return None


def parsed_program(parse: Callable[[str], tuple[Any, Any]], definition: str) -> tuple[Any, Any]:
    """``parse(definition)``, from the pickled program when this definition was parsed before.

    Returns a program of its own for each call. A program from the pickle comes without
    its ANTLR parse tree (None): moto's backend reads only the program, the tree feeds
    static analysers it does not run.
    """
    program = _cached_program(definition)
    if program is not None:
        return program, None
    program, tree = parse(definition)
    try:
        blob = pickle.dumps(program, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError, RecursionError):
        return program, tree
    _parsed[definition] = blob
    from deltaload.local.persistence import write_atomically

    for cache in _cache_files(definition):
        try:
            cache.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_atomically(cache, blob)
        except OSError as error:  # a cache is worth a parse, never a failed command
            LOG.debug("offline Step Functions: parse cache %s not written: %s", cache, error)
    return program, tree


def defer_package_body(name: str) -> None:
    """Import package ``name``'s submodules without running its ``__init__`` until needed.

    The package is registered unexecuted; the first attribute read that its submodules did
    not set runs the real ``__init__`` in place, so every user of the package sees it whole.
    """
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return
    module = importlib.util.module_from_spec(spec)

    def run_body(attribute: str) -> Any:
        del module.__getattr__  # type: ignore[attr-defined]
        assert spec.loader is not None
        spec.loader.exec_module(module)
        return getattr(module, attribute)

    module.__getattr__ = run_body  # type: ignore[attr-defined]
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:  # as the import system binds a loaded submodule to its package
        setattr(importlib.import_module(parent), child, module)


def install() -> None:
    """Patch moto's interpreter (once per process); without listeners nothing changes."""
    global _installed
    with _lock:
        if _installed:
            return
        defer_package_body("moto.batch")
        from moto.stepfunctions.parser.asl.component.state.state import CommonStateField
        from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import (
            WaitFunction,
        )
        from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
        from moto.stepfunctions.parser.backend.execution import (
            BaseExecutionWorkerCommunication,
        )

        parse = AmazonStateLanguageParser.parse
        entered = CommonStateField._eval_body
        waited = WaitFunction._wait_interval
        terminated = BaseExecutionWorkerCommunication.terminated

        def eval_body(self: Any, env: Any) -> None:
            arn = _execution_arn(env)
            listener = _listener(arn)
            if listener is not None and arn is not None:
                index = _map_index(env)
                window_entered = getattr(listener, "window_entered", None)
                if index is not None and window_entered is not None:
                    window_entered(arn, index + 1, str(self.name))
                else:
                    listener.state_entered(arn, str(self.name))
            entered(self, env)

        def wait_interval(self: Any, env: Any, wait_seconds: int) -> None:
            arn = _execution_arn(env)
            listener = _listener(arn)
            if listener is None or arn is None:
                waited(self, env, wait_seconds)
                return
            # Ends as moto's does when the execution is stopped, timed out or failed.
            listener.wait(arn, wait_seconds, env.is_running)

        def ended(self: Any) -> None:
            terminated(self)
            arn = str(getattr(getattr(self, "execution", None), "exec_arn", "") or "")
            listener = _listener(arn)
            if listener is not None:
                listener.execution_ended(arn)

        def parse_once(definition: str) -> Any:
            return parsed_program(parse, definition)

        AmazonStateLanguageParser.parse = staticmethod(parse_once)  # type: ignore[method-assign]
        CommonStateField._eval_body = eval_body  # type: ignore[method-assign]
        WaitFunction._wait_interval = wait_interval  # type: ignore[method-assign]
        BaseExecutionWorkerCommunication.terminated = ended  # type: ignore[method-assign]
        _installed = True
