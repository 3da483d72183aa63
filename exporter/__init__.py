"""Prometheus exporter for the freshness of Codat's cached company data."""

PROG = "codat-freshness-exporter"
"""The program's name, as it says it in ``--help``, errors and its first log line."""

__version__ = "0.1.0"
"""The one place the version is written: pyproject.toml reads it from here at build time
(``[tool.setuptools.dynamic]``), so a source tree, an editable install and the wheel in the
image all report the same. The image tags in docker-compose.yml and deploy/kubernetes/ and
CHANGELOG.md follow it; tests/deploy/test_release.py fails when they do not."""
