"""The engine's status changes, which offline pollers sleep on instead of a fixed interval."""

from __future__ import annotations

import threading

from deltaload.local.dms import Changes

# Long enough that a wait only ends early because of a change (or never, and the
# thread is found still waiting): no assertion here depends on how fast anything is.
LONG = 600.0


def _waiter(changes: Changes, since: int, **kwargs) -> tuple[threading.Thread, list[bool]]:
    ended: list[bool] = []
    thread = threading.Thread(
        target=lambda: ended.append(changes.wait(since, LONG, **kwargs)), daemon=True
    )
    thread.start()
    return thread, ended


def test_a_change_of_an_awaited_resource_ends_the_wait():
    changes = Changes()
    thread, ended = _waiter(changes, changes.observe(), keys=frozenset({"task-a"}))
    changes.changed("TASK-A")  # identifiers compare in lower case, as DMS's instances do
    thread.join(LONG)
    assert ended == [True]


def test_a_change_of_another_resource_does_not_end_the_wait():
    changes = Changes()
    since = changes.observe()
    changes.changed("task-b")
    assert changes.wait(since, 0.05, keys=frozenset({"task-a"})) is False
    changes.changed("task-a")
    assert changes.wait(since, LONG, keys=frozenset({"task-a"})) is True


def test_a_change_between_the_look_and_the_wait_is_not_missed():
    changes = Changes()
    since = changes.observe()  # a describe answered
    changes.changed("ri-x")  # the instance becomes available before the poller sleeps
    assert changes.wait(since, LONG, keys=frozenset({"ri-x"})) is True
    assert changes.observe() == changes.count  # the next describe has seen it


def test_each_thread_remembers_what_it_saw():
    changes = Changes()
    changes.observe()
    changes.changed("a")
    seen: list[int] = []
    other = threading.Thread(target=lambda: seen.append(changes.observe()))
    other.start()
    other.join(LONG)
    assert seen == [1]
    assert changes.seen() == 0  # this thread has not looked since


def test_a_stopped_poller_stops_waiting():
    changes = Changes()
    stop = threading.Event()
    thread, ended = _waiter(changes, changes.observe(), stopped=stop.is_set)
    stop.set()
    thread.join(LONG)
    assert ended == [False]


def test_no_change_waits_the_whole_interval():
    changes = Changes()
    assert changes.wait(changes.observe(), 0) is False
