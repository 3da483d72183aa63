from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from exporter.simulator.fleet import Fleet
from exporter.simulator.server import SimulatedCodat
from tests.harness import API_KEY, FakeClock, Harness, make_config


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fleet(clock: FakeClock) -> Fleet:
    return Fleet.generate(clock, companies=8, seed=7)


@pytest.fixture
def codat(fleet: Fleet) -> Iterator[SimulatedCodat]:
    server = SimulatedCodat(fleet, API_KEY).start()
    yield server
    server.stop()


@pytest.fixture
def make_harness(clock: FakeClock, codat: SimulatedCodat) -> Iterator[Callable[..., Harness]]:
    """``make_harness(poll={"interval": "1m"}, ...)``: the exporter against the simulator."""
    made: list[Harness] = []

    def make(*, spread: bool = False, **sections: Any) -> Harness:
        harness = Harness(make_config(codat, **sections), clock, codat, spread)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.close()


@pytest.fixture
def harness(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness()


@pytest.fixture
def fleet_ids(fleet: Fleet) -> list[str]:
    return sorted(fleet.companies)
