"""Codat's contract, carried inside the project so its tests need nothing outside it.

``codat-platform-schemas.json`` is the part of Codat's Platform API 3.0.0 description the
tests check responses against, as JSON Schema 2020-12: ``$defs/<Name>`` is
``#/components/schemas/<Name>``. Where it comes from and how to regenerate it:
PROVENANCE.md (it is written by ``extract.py``; nothing here reads ../shared).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker, ValidationError
from jsonschema.validators import extend

SCHEMAS = Path(__file__).with_name("codat-platform-schemas.json")
DATETIME = "#/$defs/DateTime"

# The format checks jsonschema can do with the standard library alone, so the result does
# not depend on which optional packages happen to be installed. ("uri" would need rfc3987.)
_FORMATS = FormatChecker(formats=("uuid",))


def load_schemas() -> dict[str, Any]:
    """The vendored document (a fresh copy each time, so callers may change theirs)."""
    document: dict[str, Any] = json.loads(SCHEMAS.read_text(encoding="utf-8"))
    return document


class Contract:
    """Checks a value against one of the vendored schemas, by name.

    Every value the schema types as ``DateTime`` that a check passes over is remembered in
    ``datetimes`` (the contract gives DateTime no format, so validation alone says nothing
    about whether it can be read).
    """

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.datetimes: list[str] = []
        self._validator_class = extend(Draft202012Validator, validators={"$ref": self._ref})
        self._validators: dict[str, Any] = {}

    def errors(self, name: str, instance: Any) -> list[str]:
        """Every way ``instance`` breaks schema ``name``, one line each; [] when it conforms."""
        if name not in self._validators:
            schema = {**self.document, "$ref": f"#/$defs/{name}"}
            self._validators[name] = self._validator_class(schema, format_checker=_FORMATS)
        found = self._validators[name].iter_errors(instance)
        return [_describe(error) for error in sorted(found, key=lambda e: list(e.path))]

    def _ref(
        self, validator: Any, ref: str, instance: Any, schema: dict[str, Any]
    ) -> Iterator[ValidationError]:
        if ref == DATETIME and isinstance(instance, str):
            self.datetimes.append(instance)
        yield from Draft202012Validator.VALIDATORS["$ref"](validator, ref, instance, schema)


def _describe(error: ValidationError) -> str:
    line = f"{error.json_path}: {error.message}"
    if error.context:  # anyOf: say why each alternative failed
        line += " (" + "; ".join(sorted({e.message for e in error.context})) + ")"
    return line


class ManualClock:
    """A clock (exporter.core.clock.Clock) that moves only when told to; sleeping advances it."""

    def __init__(self, start: float) -> None:
        self._now = start
        self._lock = threading.Lock()

    def time(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now

    def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
