"""A simulated Codat Platform API for the demo, the tests and the benchmarks."""

from exporter.simulator.fleet import Fault, Fleet
from exporter.simulator.server import DEFAULT_API_KEY, SimulatedCodat

__all__ = ["DEFAULT_API_KEY", "Fault", "Fleet", "SimulatedCodat"]
