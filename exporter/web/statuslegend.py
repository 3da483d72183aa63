"""What the status page says of next steps besides each row: the legend of every next step
(``exporter.exposition.nextstep.STEPS``: its words, who acts, when), and the banner of a
platform in an incident::

    Xero: 50 companies fail on it at once (an outage or maintenance?): their next step is
    to wait. CodatPlatformSyncFailures pages once for it and holds back their own alerts.
"""

from __future__ import annotations

from exporter.exposition.nextstep import STEPS
from exporter.web.filters import Filters
from exporter.web.status import FleetStatus
from exporter.web.statustables import e


def legend() -> str:
    """Every next step: its words, then who acts and when it is a pair's."""
    items = "".join(
        f'<dt><span class="step step-{e(step.code)}">{e(step.text)}</span></dt>'
        f"<dd>Who acts: {e(step.who)}. When: {e(step.when)}. <small>({e(step.code)})</small></dd>"
        for step in STEPS
    )
    return f'<h2 id="next-steps">Next steps: who acts</h2><dl class="legend">{items}</dl>'


def incidents_banner(status: FleetStatus) -> str:
    """One line per platform in an incident, linking to its failing pairs; "" for none."""
    lines = []
    for platform, count in sorted(status.incidents.items()):
        link = "/" + Filters(statuses=("failing",), platforms=(platform,)).query()
        lines.append(
            f'<p class="incident" data-platform="{e(platform)}"><b>{e(platform)}</b>: '
            f'<a href="{e(link)}">{count:,} companies fail on it at once</a> (an outage or '
            "maintenance?), at least the "
            f"{status.page.platform_incident_companies:,} that make an incident: their next "
            "step is to wait, then queue again. CodatPlatformSyncFailures pages once for it "
            "and holds back their own alerts.</p>"
        )
    return "".join(lines)
