"""The declared settings as the configuration reference (docs/configuration.md) lists them,
one row per key.

Read from the same ``setting()`` fields that ``exporter.config.settings`` reads a file
against, so the table cannot drift from what the exporter accepts; ``python -m
exporter.reference`` writes it::

    | `poll.interval` | duration | `5m` | time between poll cycles |
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import MISSING, dataclass
from typing import Any

from exporter.config.settings import join, settings_of

NO_DEFAULT = "—"


@dataclass(frozen=True)
class Documented:
    """One key as the configuration reference shows it."""

    path: str
    type: str
    default: str
    doc: str


def _literal(value: Any) -> str:
    """A default as YAML writes it: ``true``, ``""``, ``[]``, ``2``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value or '""'
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple | frozenset | list) and not value:
        return "[]"
    if isinstance(value, Mapping) and not value:
        return "{}"
    return str(value)


def document(cls: type, prefix: str = "") -> Iterator[Documented]:
    """Every key of ``cls`` and its nested sections, in declaration order."""
    for f, key, declared in settings_of(cls):
        path = join(prefix, key)
        kind = declared.kind
        if kind.section is not None:
            yield from document(kind.section, path)
            continue
        show = kind.show or _literal
        if f.default is not MISSING:
            default = show(f.default)
        elif f.default_factory is not MISSING:
            default = show(f.default_factory())
        else:
            default = NO_DEFAULT
        yield Documented(path, kind.name, default, declared.doc)
        if declared.from_file:
            doc = f"a file holding `{key}` instead (whitespace trimmed); set exactly one"
            yield Documented(f"{path}_file", "file name", NO_DEFAULT, doc)
