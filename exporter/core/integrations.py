"""What Codat says of a connection's integration and how to relink it: the two facts behind
the status page's "on-premise connector offline" and its relink links.

- ``Connection.linkUrl``: where the customer authorizes the connection again. A capability
  (whoever holds it can link a data source to the company), kept only with
  ``status_page.show_link_urls`` and never quoted in an error.
- ``Integration.isOfflineConnector`` (``GET /integrations/{platformKey}``, the key being the
  connection's ``integrationKey``): the integration runs on the customer's own machine
  (QuickBooks Desktop, Sage 50 ...), so a sync waits ``Queued`` until that machine is online
  (Codat's docs, "Data status").
"""

from __future__ import annotations

import re

INTEGRATION = "/integrations/{platformKey}"
"""The route of one integration (also the ``endpoint`` label of its requests)."""

_KEY = re.compile(r"[a-z0-9]{1,16}")
"""An ``integrationKey`` (four lower-case letters today); anything else is not looked up."""
_LINK_URL = re.compile(r"https?://[!-~]{1,2040}")
"""Printable ASCII without spaces: a URL as Codat writes it, nothing a page could misread."""


class IntegrationShapeError(ValueError):
    """An Integration body without its ``key``."""


def integration_key(value: object) -> str:
    """The key to look the integration up by, or "" for one that could not be a key.

    >>> integration_key("gbol"), integration_key("../x"), integration_key(None)
    ('gbol', '', '')
    """
    return value if isinstance(value, str) and _KEY.fullmatch(value) else ""


def link_url(value: object) -> str:
    """A ``linkUrl`` as it is when it is an http(s) URL of printable characters, else "".

    >>> link_url("https://link-api.codat.io/companies/c1/connections/k1/start")
    'https://link-api.codat.io/companies/c1/connections/k1/start'
    >>> link_url("javascript:alert(1)"), link_url(42)
    ('', '')
    """
    return value if isinstance(value, str) and _LINK_URL.fullmatch(value) else ""


def parse_integration(body: object) -> bool:
    """Whether the Integration runs on the customer's own machine (``isOfflineConnector``;
    absent: no). IntegrationShapeError without a ``key``."""
    if not isinstance(body, dict) or not isinstance(body.get("key"), str):
        raise IntegrationShapeError("integration without a key")
    return body.get("isOfflineConnector") is True
