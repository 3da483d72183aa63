"""What each poll-side component keeps across a restart and forgets as the fleet changes:
one small protocol, so that the poller holds its components in one list and iterates it
(at the end of every cycle, to save, to restore) instead of wiring each by hand.

The components: the discovery listing (``exporter.codat.discovery``), when each side value
was read (``exporter.codat.sidevalues``), the pull operations read
(``exporter.codat.diagnostics``), the refreshes' backoff (``exporter.codat.refresh``) and
what the log said of failures (``exporter.poll.failurelog``). Each owns a section of the
state file named by its ``key``; the companies' states themselves are the fleet's
(``exporter.poll.fleet``).

Restoring checks every section first and restores none unless all are usable, so that a
state is never half loaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

from exporter.core.snapshot import CompanyState
from exporter.poll.statecodec import StateFileError

T = TypeVar("T")


class Component(Protocol[T]):
    key: str
    """Its section of the state file."""

    def saved(self) -> Any:
        """What the state file keeps of it, as JSON values; None: nothing (no section)."""

    def checked(self, saved: Any) -> T:
        """A section ``saved`` wrote (None when the file has none), typed for ``restore``;
        TypeError or ValueError when it is malformed. Changes nothing."""

    def restore(self, checked: T, companies: Mapping[str, CompanyState]) -> None:
        """Resume from a checked section and the companies restored beside it."""

    def forget_all_but(self, kept: set[str]) -> None:
        """Drop what it holds of companies no longer polled, so that churn cannot grow it."""


def saved_sections(components: Sequence[Component[Any]]) -> dict[str, Any]:
    """Each component's section, by key; one with nothing to keep has none."""
    saved = ((component.key, component.saved()) for component in components)
    return {key: section for key, section in saved if section is not None}


def restore_all(
    components: Sequence[Component[Any]],
    sections: Mapping[str, Any],
    companies: Mapping[str, CompanyState],
) -> None:
    """Check every component's section, then restore each; StateFileError, before any is
    restored, naming the first that is malformed."""
    checked = []
    for component in components:
        try:
            checked.append(component.checked(sections.get(component.key)))
        except (KeyError, IndexError, TypeError, ValueError, OverflowError) as exc:
            raise StateFileError(
                f"malformed section {component.key!r} ({type(exc).__name__}: {exc})"
            ) from None
    for component, section in zip(components, checked, strict=True):
        component.restore(section, companies)


def forget_all_but(components: Sequence[Component[Any]], kept: set[str]) -> None:
    for component in components:
        component.forget_all_but(kept)
