"""The config file read into a ``Config``: YAML, then ``${VAR}`` from the environment, then
every section checked (``exporter.config.sections``); any problem is one ``ConfigError``.

``${VAR}`` in any string value is replaced before validation, so a key kept in the
environment is checked like one written in the file; ``$$`` is a literal ``$``::

    codat.api_key: environment variable CODAT_API_KEY is not set
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from exporter.config.sections import Config
from exporter.config.settings import ConfigError, Reading, Where, join, read_section, read_yaml


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read, substitute and validate a config file; raise ``ConfigError`` on any problem."""
    environ = os.environ if environ is None else environ
    raw = read_yaml(path, "config file")
    return parse_config(_substitute(raw, "", environ), environ)


def parse_config(
    raw: Any, environ: Mapping[str, str] | None = None, hostname: str | None = None
) -> Config:
    """Validate an already-loaded mapping (used by ``load_config`` and by ``--demo``).

    ``environ`` and ``hostname`` only matter to ``sharding`` (env overrides, ``shard: auto``).
    """
    reading = Reading(
        os.environ if environ is None else environ,
        socket.gethostname() if hostname is None else hostname,
    )
    config = read_section(Config, raw, Where(reading))
    return replace(config, warnings=tuple(reading.warnings))


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\$")


def _substitute(value: Any, path: str, environ: Mapping[str, str]) -> Any:
    if isinstance(value, str):

        def variable(match: re.Match[str]) -> str:
            if match[0] == "$$":
                return "$"
            if match[1] not in environ:
                raise ConfigError(f"{path or '<top>'}: environment variable {match[1]} is not set")
            return environ[match[1]]

        return _VAR.sub(variable, value)
    if isinstance(value, dict):
        return {k: _substitute(v, join(path, str(k)), environ) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, f"{path}[{i}]", environ) for i, v in enumerate(value)]
    return value
