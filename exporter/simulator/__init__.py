"""A simulated Codat Platform API for the demo, the tests and the benchmarks: a seeded fleet
of companies (fleet), served over real HTTP (server), with faults a test can inject (faults)."""
