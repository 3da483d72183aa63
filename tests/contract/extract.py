"""Regenerate ``codat-platform-schemas.json`` from Codat's OpenAPI description.

Run by hand, from the project root, with the path of ``Codat-Platform.yaml``::

    .venv/bin/python tests/contract/extract.py ../shared/codat/Codat-Platform.yaml

The tests never run this; they read the JSON it writes (see PROVENANCE.md).

What it writes: one JSON Schema (draft 2020-12) document whose ``$defs`` hold the schemas
named in ``ROOTS`` and everything they reference. A ``$ref`` into
``#/components/schemas/<Name>/...`` brings the whole of ``<Name>`` along and becomes
``#/$defs/<Name>/...`` (the same place, so the pointers stay readable). A ``$ref`` to
anywhere else (``#/paths/...``, ``#/components/parameters/...``) has its target copied to
``$defs/<last segment of the pointer>``, with the original pointer in a ``$comment``.

OpenAPI's additions to JSON Schema are translated:

- ``nullable: true`` adds ``"null"`` to ``type`` (and ``null`` to ``enum``, if any); beside a
  ``$ref`` it becomes ``anyOf: [{$ref}, {type: null}]``. (OpenAPI 3.0 would ignore anything
  beside a ``$ref``, but Codat writes ``nullable`` there to mean "this, or null", as its own
  SDK generator reads it.) ``nullable: false`` is the default and is dropped.
- ``example: v`` becomes ``examples: [v]``; ``examples`` lists are kept.
- ``x-*`` extensions are dropped.

Any other keyword it does not know stops the extraction, so nothing is lost silently.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml

ROOTS = (
    "DataStatuses", "DataStatus", "Companies", "Company", "PagingInfo", "ErrorMessage",
    "Connections", "Connection", "CompanySyncSettings", "SyncSetting",
    "ReadCompletedWebhook", "ConnectionWebhook", "PullOperation", "PullOperations",
)  # fmt: skip
OUTPUT = Path(__file__).with_name("codat-platform-schemas.json")
SCHEMAS = "#/components/schemas/"

KEPT = {
    "type", "title", "description", "required", "enum", "format", "pattern", "minLength",
    "maxLength", "minimum", "maximum", "minItems", "maxItems", "maxProperties", "default",
    "deprecated", "readOnly", "writeOnly", "examples",
}  # fmt: skip
ANNOTATIONS = {"title", "description", "examples", "deprecated"}
ONE_SCHEMA = {"items", "additionalProperties", "not", "propertyNames"}
SCHEMA_LIST = {"allOf", "anyOf", "oneOf"}
SCHEMA_MAP = {"properties", "definitions", "patternProperties"}


class _Yaml12Loader(yaml.SafeLoader):
    """OpenAPI is YAML 1.2: ``yes``/``no`` are strings and dates stay strings."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [
        (tag, pattern)
        for tag, pattern in resolvers
        if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|false)$"), list("tf")
)


def resolve(document: Any, ref: str) -> Any:
    """The node a local ``$ref`` points at (a URI fragment holding a JSON Pointer)."""
    if not ref.startswith("#/"):
        raise ValueError(f"not a local reference: {ref}")
    node = document
    for segment in unquote(ref[2:]).split("/"):
        key = segment.replace("~1", "/").replace("~0", "~")
        node = node[int(key)] if isinstance(node, list) else node[key]
    return node


class Extractor:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.sources: dict[str, str] = {}
        """$defs name -> the pointer its schema is copied from."""
        self.pending: list[str] = []

    def run(self, roots: tuple[str, ...]) -> dict[str, Any]:
        defs: dict[str, Any] = {}
        for name in roots:
            self.claim(name, SCHEMAS + name)
        while self.pending:
            name = self.pending.pop()
            ref = self.sources[name]
            schema = self.translate(resolve(self.spec, ref), ref)
            defs[name] = (
                schema if ref == SCHEMAS + name else {"$comment": f"OpenAPI {ref}", **schema}
            )
        return dict(sorted(defs.items()))

    def claim(self, name: str, ref: str) -> None:
        """Copy the schema at ``ref`` to ``$defs/<name>``, once."""
        if name not in self.sources:
            self.sources[name] = ref
            self.pending.append(name)
        if self.sources[name] != ref or not re.fullmatch(r"[A-Za-z]\w*", name):
            raise ValueError(f"cannot copy {ref} to $defs/{name}")

    def rewrite(self, ref: str) -> str:
        if ref.startswith(SCHEMAS):
            tail = ref[len(SCHEMAS) :]
            name = tail.split("/")[0]
            self.claim(name, SCHEMAS + name)
            return "#/$defs/" + tail
        # Outside components/schemas: copy the target under the pointer's last segment.
        name = [s for s in ref.split("/") if s != "schema"][-1]
        if name in self.spec["components"]["schemas"]:
            raise ValueError(f"cannot copy {ref} to $defs/{name}: a schema has that name")
        self.claim(name, ref)
        return "#/$defs/" + name

    def translate(self, schema: dict[str, Any], where: str) -> dict[str, Any]:
        """One OpenAPI Schema Object as JSON Schema 2020-12, subschemas included."""
        out: dict[str, Any] = {}
        for key, value in schema.items():
            here = f"{where}/{key}"
            if key.startswith("x-") or key == "nullable":
                continue
            if key == "$ref":
                out[key] = self.rewrite(value)
            elif key == "example":
                out["examples"] = [*schema.get("examples", []), value]
            elif key == "examples" and "example" in schema:
                continue  # merged above
            elif key in KEPT:
                out[key] = value
            elif key in ONE_SCHEMA:
                out[key] = value if isinstance(value, bool) else self.translate(value, here)
            elif key in SCHEMA_LIST:
                out[key] = [self.translate(v, f"{here}/{i}") for i, v in enumerate(value)]
            elif key in SCHEMA_MAP:
                out[key] = {k: self.translate(v, f"{here}/{k}") for k, v in value.items()}
            else:
                raise ValueError(f"{here}: keyword {key!r} is not handled")
        if schema.get("nullable") is True:
            make_nullable(out, where)
        return out


def make_nullable(schema: dict[str, Any], where: str) -> None:
    if "$ref" in schema:
        others = set(schema) - ANNOTATIONS - {"$ref"}
        if others:
            raise ValueError(f"{where}: nullable $ref beside {sorted(others)}")
        schema["anyOf"] = [{"$ref": schema.pop("$ref")}, {"type": "null"}]
    elif isinstance(schema.get("type"), str):
        schema["type"] = [schema["type"], "null"]
        if "enum" in schema:
            schema["enum"] = [*schema["enum"], None]
    else:
        raise ValueError(f"{where}: nullable without a type or a $ref")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    source = Path(argv[1]).read_bytes()
    spec = yaml.load(source, Loader=_Yaml12Loader)  # a SafeLoader subclass
    document = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": (
            f"Generated by tests/contract/extract.py from {spec['info']['title']} "
            f"{spec['info']['version']} (Codat-Platform.yaml, sha256 "
            f"{hashlib.sha256(source).hexdigest()}); see tests/contract/PROVENANCE.md."
        ),
        "$defs": Extractor(spec).run(ROOTS),
    }
    OUTPUT.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {len(document['$defs'])} schemas to {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
