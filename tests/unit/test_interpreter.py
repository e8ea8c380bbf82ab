"""Which state machine definitions the offline interpreter may parse once for every run."""

from __future__ import annotations

from deltaload.local import interpreter


def test_definitions_with_per_run_state_are_parsed_for_each_execution():
    assert interpreter._reusable('{"StartAt": "A", "States": {"A": {"Type": "Wait"}}}')
    nested = '{"States": {"M": {"Type": "Map", "ItemProcessor": {"States": {}}}}}'
    assert not interpreter._reusable(nested)
    parallel = '{"States": {"P": {"Type": "Parallel", "Branches": []}}}'
    assert not interpreter._reusable(parallel)
