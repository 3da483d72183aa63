"""Prometheus exporter for the freshness of Codat's cached company data."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("codat-freshness-exporter")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"
