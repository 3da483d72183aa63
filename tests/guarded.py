"""A poll cycle under a generous real-time guard, for faults that hold requests forever.

The simulator's ``hang``, ``stall`` and ``trickle`` faults never finish by themselves, so a
test of the client's timeouts cannot pass by luck on a fast machine, nor fail on a slow
one. If the client did not bound a request, the cycle would never end: the guard fails the
test instead, and clears the faults so that the held requests, and the cycle, end.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from exporter.poll.poller import CycleResult
from tests.harness import Harness

CYCLE_GUARD = 30.0
"""Real seconds a cycle may take: each of those it guards ends in a few."""


def guarded_poll(
    harness: Harness, meanwhile: Callable[[], Any] = lambda: None
) -> tuple[CycleResult, Any]:
    """Run a cycle in the background and ``meanwhile()`` at once; both their results."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cycle") as pool:
        cycle = pool.submit(harness.poll)
        try:
            during = meanwhile()
            result = cycle.result(timeout=CYCLE_GUARD)
        except TimeoutError:
            harness.fleet.clear_faults()
            pytest.fail("a cycle did not end: a request was not bounded by codat.timeout")
        except BaseException:
            harness.fleet.clear_faults()
            raise
    return result, during
