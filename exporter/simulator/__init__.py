"""A simulated Codat Platform API for the demo, the tests and the benchmarks."""

from exporter.simulator.fleet import Fault, Fleet
from exporter.simulator.server import SimulatedCodat

__all__ = ["Fault", "Fleet", "SimulatedCodat"]
