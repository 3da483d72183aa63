"""The fleet's states, one per company, and their publishing: the one owner of what
/metrics and the status page show of the companies.

Two sources change them: the poll cycle (every company at its end, and a first cycle's
finished polls every few seconds) and webhook re-polls (a few companies, any time). Of two
results for a company the later wins (``Outcome.at``), so a cycle that ends after a re-poll
never takes the re-poll's news back. A failed poll keeps the company's last good data
types, down, until one succeeds. Each change is rendered and published whole
(``SnapshotStore.publish``) as one immutable snapshot.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from exporter.codat.sidevalues import SideValues
from exporter.config.sections import Config
from exporter.core.clock import Clock
from exporter.core.snapshot import CompanyState, Outcome, Snapshot
from exporter.exposition.render import Exposition
from exporter.exposition.store import SnapshotStore
from exporter.poll.statecodec import SavedState


def nothing_yet(config: Config) -> Exposition:
    """What /metrics serves before anything is known: the exporter's own metrics only."""
    return Exposition(Snapshot(), config.freshness, config.poll.interval, config.metrics)


class Fleet:
    def __init__(
        self,
        config: Config,
        store: SnapshotStore,
        clock: Clock,
        side: SideValues,
        unready: Callable[[], str],
    ) -> None:
        """``unready``: why the fleet is not the one configured (``Snapshot.unready_reason``)."""
        self._config = config
        self._store = store
        self._clock = clock
        self._side = side
        self._unready = unready
        self._states: dict[str, CompanyState] = {}
        self._state_at: dict[str, float] = {}
        """Monotonic time of each company's result, for the later-wins rule."""
        self._last_cycle: tuple[float, float] | None = None
        """How long the last cycle took, and the Unix time it ended."""
        self._lock = threading.Lock()
        """Guards the states while a cycle and webhook re-polls both publish."""

    @property
    def polled_once(self) -> bool:
        """Whether a cycle has ended (or a state file said one had)."""
        return self._last_cycle is not None

    def state(self, company_id: str) -> CompanyState | None:
        return self._states.get(company_id)

    def states(self) -> list[CompanyState]:
        with self._lock:
            return list(self._states.values())

    def has_values(self, company_id: str) -> bool:
        """Whether the company has last good values on /metrics."""
        state = self._states.get(company_id)
        return state is not None and bool(state.data_types)

    def last_successes(self) -> dict[str, float | None]:
        with self._lock:
            return {c: s.last_poll_success for c, s in self._states.items()}

    def end_cycle(self, outcomes: Iterable[Outcome], started: float) -> Snapshot:
        """The cycle's results become the fleet (a company it did not poll, or found gone,
        leaves it), published as the cycle's snapshot."""
        with self._lock:
            previous, self._states = self._states, {}
            for outcome in outcomes:
                if not outcome.gone:
                    self._merge(outcome, previous.get(outcome.company_id))
            self._last_cycle = (self._clock.monotonic() - started, self._clock.time())
            return self._publish()

    def merge(self, outcomes: Iterable[Outcome]) -> None:
        """Take in some companies' results (a first cycle's, a webhook re-poll's) and
        publish; a company found gone leaves at once."""
        with self._lock:
            for outcome in outcomes:
                if outcome.gone:
                    self._states.pop(outcome.company_id, None)
                else:
                    self._merge(outcome, self._states.get(outcome.company_id))
            self._publish()

    def drop(self, company_id: str) -> bool:
        """Take a company out and publish; whether it was in."""
        with self._lock:
            dropped = self._states.pop(company_id, None) is not None
            self._publish()
        return dropped

    def forget_all_but(self, kept: set[str]) -> None:
        with self._lock:
            for company_id in self._state_at.keys() - kept:
                del self._state_at[company_id]

    def remembered(self) -> set[str]:
        with self._lock:
            return set(self._state_at) | set(self._states)

    def saved(self, sections: Mapping[str, Any]) -> tuple[SavedState, Exposition]:
        """The states with the components' ``sections``, and what was rendered of those
        very states, taken together (a restart serves the one before it decodes the other)."""
        with self._lock:
            duration, ended = self._last_cycle or (None, None)
            state = SavedState(self._clock.time(), dict(self._states), ended, duration, sections)
            return state, self._store.current

    def restore(self, state: SavedState, rendered: Exposition | None = None) -> None:
        """Resume from a state file and publish its companies at once, before any poll.

        Each keeps what its last poll before the restart said, ``up`` included, and its
        original last-poll-success time, until it is polled again. ``rendered``: the file's
        own rendering of these companies (``exposition.saved``), published with them instead
        of rendering them again."""
        with self._lock:
            self._states = dict(state.companies)
            self._state_at = dict.fromkeys(state.companies, -math.inf)
            if state.last_poll is not None:
                self._last_cycle = (state.poll_duration or 0.0, state.last_poll)
            self._publish(rendered)

    def _merge(self, outcome: Outcome, previous: CompanyState | None) -> None:
        """Record a company's result unless a later one (a webhook re-poll) is already in;
        the caller holds _lock."""
        company_id = outcome.company_id
        if previous is not None and self._state_at.get(company_id, 0.0) > outcome.at:
            self._states[company_id] = previous
            return
        self._states[company_id] = self._company_state(outcome, previous, self._clock.time())
        self._state_at[company_id] = outcome.at

    def _company_state(
        self, outcome: Outcome, previous: CompanyState | None, now: float
    ) -> CompanyState:
        company_id = outcome.company_id
        info = self._side.info(company_id)
        base = CompanyState(
            company_id=company_id,
            name=info.name,
            created=info.created,
            up=not outcome.reason,
            last_poll_success=now,
            data_types=outcome.data_types or (),
            connections=self._side.connections(company_id),
            sync_schedules=self._side.sync_schedules(company_id),
            syncs=outcome.syncs,
            refreshes=outcome.refreshes,
            poll_error=outcome.reason,
            not_found=outcome.not_found,
        )
        if outcome.data_types is not None:
            return base
        if previous is None:
            return replace(base, last_poll_success=None)
        return replace(
            base,
            last_poll_success=previous.last_poll_success,
            data_types=previous.data_types,
            syncs=previous.syncs,
            refreshes=previous.refreshes,
        )

    def _publish(self, rendered: Exposition | None = None) -> Snapshot:
        """Render and swap in the current states; the caller holds _lock."""
        duration, ended = self._last_cycle or (None, None)
        snapshot = Snapshot(
            companies=dict(self._states),
            monitored=len(self._states),
            poll_duration=duration,
            last_poll=ended,
            unready_reason=self._unready(),
        )
        config = self._config
        if rendered is not None:
            exposition = rendered.with_snapshot(snapshot)
        else:
            exposition = Exposition(snapshot, config.freshness, config.poll.interval,
                                    config.metrics)  # fmt: skip
        self._store.publish(exposition)
        return snapshot
