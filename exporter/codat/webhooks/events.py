"""What a verified Codat webhook means for the exporter: one ``Action``, for one company.

Codat names the company in ``payload.referenceCompany.id`` (ReadCompletedWebhook,
ConnectionWebhook), or sends the company itself (CompanyWebhook: ``payload.id``). This
delivery asks for a re-poll of company 0498e921-...'s data status (the ``Event`` below)::

    {"id": "743ec94a-...", "eventType": "read.completed",
     "payload": {"referenceCompany": {"id": "0498e921-..."}, "dataTypes": [...]}}
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Action(StrEnum):
    """What the exporter does about an event."""

    REPOLL_DATA_STATUS = "repoll_data_status"
    REFRESH_CONNECTIONS = "refresh_connections"
    DROP_COMPANY = "drop_company"
    IGNORE = "ignore"


# Event types that get their own metric label; anything else is counted as "other", so a
# sender cannot create label values at will. Names from Codat-Platform.yaml's webhooks.
_REPOLL = ("read.completed", "read.completed.initial")
_CONNECTION = (
    "connection.created",
    "connection.connected",
    "connection.failed",
    "connection.disconnected",
    "connection.reconnected",
    "connection.deleted",
)
_DROP = ("company.deleted",)
OTHER = "other"
EVENT_TYPE_LABELS: tuple[str, ...] = (*_REPOLL, *_CONNECTION, *_DROP, OTHER)


@dataclass(frozen=True)
class Event:
    """One interpreted webhook, e.g.::

    Event(event_type="read.completed", label="read.completed",
          action=Action.REPOLL_DATA_STATUS,
          company_id="0498e921-9b53-4396-a412-4f2f5983b0a2",
          event_id="743ec94a-8aa4-44bb-8bd4-e1855ee0e74b")
    """

    event_type: str  # as sent; unbounded, so for logs only
    label: str  # one of EVENT_TYPE_LABELS
    action: Action
    company_id: str | None = None
    event_id: str | None = None


def event_label(event_type: str) -> str:
    return event_type if event_type in EVENT_TYPE_LABELS else OTHER


def parse_event(body: bytes) -> Event | None:
    """Interpret a verified body; ``None`` when it is not a Codat webhook we can act on.

    ``read.completed`` and ``connection.*`` name the company in
    ``payload.referenceCompany.id`` (ReadCompletedWebhook, ConnectionWebhook);
    ``company.deleted`` carries the company itself, so its id is ``payload.id``
    (CompanyWebhook). Any ``connection.*`` refreshes connections, though only the six types
    in the spec get their own label. Any other type is a valid ``Action.IGNORE`` event, since
    Codat adds event types over time. ``None`` means the body is not JSON with an
    ``eventType``, or an event we act on lacks a company id that is a UUID.
    """
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("eventType"), str):
        return None
    event_type: str = doc["eventType"]
    event_id = doc.get("id") if isinstance(doc.get("id"), str) else None
    payload = doc.get("payload")
    payload = payload if isinstance(payload, dict) else {}

    if event_type in _REPOLL:
        action, company = Action.REPOLL_DATA_STATUS, _reference_company_id(payload)
    elif event_type.startswith("connection."):
        action, company = Action.REFRESH_CONNECTIONS, _reference_company_id(payload)
    elif event_type in _DROP:
        action, company = Action.DROP_COMPANY, _company_id(payload.get("id"))
    else:
        return Event(event_type, OTHER, Action.IGNORE, None, event_id)
    if company is None:
        return None
    return Event(event_type, event_label(event_type), action, company, event_id)


def _reference_company_id(payload: dict[str, Any]) -> str | None:
    reference = payload.get("referenceCompany")
    return _company_id(reference.get("id")) if isinstance(reference, dict) else None


def _company_id(value: Any) -> str | None:
    """The id as Codat sent it, if it is a UUID (Codat company ids are)."""
    if not isinstance(value, str):
        return None
    try:
        uuid.UUID(value)
    except ValueError:
        return None
    return value
