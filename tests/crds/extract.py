"""Vendor the openAPIV3Schema of prometheus-operator's CRDs that the manifests use.

Run by hand, from the project root, with the CRD files of a prometheus-operator release
(``example/prometheus-operator-crd/`` in its repository)::

    .venv/bin/python tests/crds/extract.py \\
        monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_prometheusrules.yaml

For each CRD it writes ``tests/crds/<kind>.<version>.json`` (e.g. ``ServiceMonitor.v1.json``):
the served version's ``openAPIV3Schema`` unchanged, with a ``$comment`` naming the CRD, the
operator version and the sha256 of the file it came from. The tests never run this; they read
the JSON (see PROVENANCE.md).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent


def extract(crd_file: Path) -> list[Path]:
    raw = crd_file.read_bytes()
    crd = yaml.safe_load(raw)
    operator = crd["metadata"]["annotations"]["operator.prometheus.io/version"]
    written = []
    for version in crd["spec"]["versions"]:
        if not version.get("served"):
            continue
        schema = version["schema"]["openAPIV3Schema"]
        comment = (
            f"{crd['metadata']['name']} {version['name']} from prometheus-operator {operator}, "
            f"{crd_file.name} sha256 {hashlib.sha256(raw).hexdigest()}"
        )
        out = HERE / f"{crd['spec']['names']['kind']}.{version['name']}.json"
        out.write_text(json.dumps({"$comment": comment, **schema}, indent=1, sort_keys=True) + "\n")
        written.append(out)
    return written


if __name__ == "__main__":
    for name in sys.argv[1:]:
        for path in extract(Path(name)):
            print(f"wrote {path}")
