"""Alert rules and Grafana dashboards for the exporter, generated from ``config.yml``.

``python -m monitoring.generate`` writes ``prometheus/rules/`` and ``grafana/dashboards/``;
the test suite regenerates into a temporary directory and fails when the committed files
differ, so the selector and thresholds live in ``config.yml`` only (the stuck-sync
threshold's default is the status page's, ``exporter.exposition.assess.STUCK_AFTER``).
"""
