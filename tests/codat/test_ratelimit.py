"""The client-wide rate limiter: smooth rate, one pause for every thread, deadlines kept.

Timelines run on fake clocks, so two minutes of requests cost no real time. Threads that must
wait at a given moment use ``ManualClock``, whose ``sleep()`` blocks until the test moves it.
"""

from __future__ import annotations

import itertools
import math
import queue
import threading
import time
from bisect import bisect_left
from collections.abc import Callable

import pytest

from exporter.codat.ratelimit import FIRST, REST, RateLimiter
from exporter.core.clock import SystemClock
from tests.harness import FakeClock

JOIN_TIMEOUT = 2.0


class CountingClock:
    """Moves on when slept on, like FakeClock, and records how many threads sleep at once."""

    def __init__(self) -> None:
        self._now = 0.0
        self._lock = threading.Lock()
        self.sleeps: list[float] = []
        self.sleeping = 0
        self.most_sleeping = 0

    def time(self) -> float:
        return 1_795_435_200.0 + self.monotonic()

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeping += 1
            self.most_sleeping = max(self.most_sleeping, self.sleeping)
            self.sleeps.append(seconds)
        time.sleep(0)  # let other threads run, so overlapping sleeps would show
        with self._lock:
            self._now += seconds
            self.sleeping -= 1


class ManualClock:
    """Time moves only by ``advance_to``; ``sleep()`` blocks until then."""

    def __init__(self) -> None:
        self._now = 0.0
        self._changed = threading.Condition()
        self._wakes: list[float] = []

    def time(self) -> float:
        return 1_795_435_200.0 + self.monotonic()

    def monotonic(self) -> float:
        with self._changed:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._changed:
            wake = self._now + seconds
            self._wakes.append(wake)
            self._changed.notify_all()
            try:
                while self._now < wake:
                    if not self._changed.wait(timeout=JOIN_TIMEOUT):
                        raise AssertionError(f"the test never moved the clock to {wake}")
            finally:
                self._wakes.remove(wake)
                self._changed.notify_all()

    def advance_to(self, now: float) -> None:
        with self._changed:
            self._now = now
            self._changed.notify_all()

    def wait_for_sleeper(self, wake: float) -> None:
        """Block until some thread sleeps until ``wake``: the limiter has settled."""
        with self._changed:
            settled = self._changed.wait_for(
                lambda: any(math.isclose(w, wake) for w in self._wakes), timeout=JOIN_TIMEOUT
            )
        assert settled, f"nobody sleeps until {wake}; sleepers wake at {self._wakes}"


class WatchedClock(ManualClock):
    """A ManualClock that notes which threads have looked at it: a thread that has asked the
    time inside ``acquire`` has joined the limiter's queue."""

    def __init__(self) -> None:
        super().__init__()
        self.lookers: set[str] = set()

    def monotonic(self) -> float:
        with self._changed:
            self.lookers.add(threading.current_thread().name)
            self._changed.notify_all()
            return self._now

    def wait_for_looker(self, name: str) -> None:
        with self._changed:
            looked = self._changed.wait_for(lambda: name in self.lookers, timeout=JOIN_TIMEOUT)
        assert looked, f"thread {name} never asked the time"


def busiest_window(times: list[float], width: float = 60.0) -> int:
    """The most requests in any half-open window [t, t + width) of the sorted ``times``."""
    return max(bisect_left(times, start + width) - i for i, start in enumerate(times))


def start_thread(target: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def acquire_and_report(
    limiter: RateLimiter, clock: ManualClock, deadline: float, results: queue.Queue[object]
) -> threading.Thread:
    """Acquire in a thread; put the clock time of the grant, or False, on ``results``."""

    def run() -> None:
        granted = limiter.acquire(deadline)
        results.put(clock.monotonic() if granted else False)

    return start_thread(run)


def spent_limiter() -> tuple[ManualClock, RateLimiter, queue.Queue[object]]:
    """A limiter at one request a second whose token is taken (the next turn is at t=1),
    and a queue for ``acquire_and_report``."""
    clock = ManualClock()
    limiter = RateLimiter(60, clock, burst=1)
    limiter.acquire(deadline=math.inf)
    return clock, limiter, queue.Queue()


def test_should_spread_1200_requests_over_about_120_seconds_at_600_a_minute(
    clock: FakeClock,
) -> None:
    # Prepare
    limiter = RateLimiter(600, clock)
    start = clock.monotonic()
    granted: list[float] = []

    # Act
    for _ in range(1200):
        assert limiter.acquire(deadline=math.inf)
        granted.append(clock.monotonic() - start)

    # Check
    assert limiter.burst == 10
    assert granted[:10] == [0.0] * 10
    gaps = [later - earlier for earlier, later in itertools.pairwise(granted[10:])]
    assert gaps == pytest.approx([0.1] * len(gaps))
    assert granted[-1] == pytest.approx(119.0)
    assert busiest_window(granted) <= 600 + 10 - 1


def test_should_refill_only_the_small_burst_after_a_quiet_spell(clock: FakeClock) -> None:
    # Prepare
    limiter = RateLimiter(600, clock)
    for _ in range(50):
        limiter.acquire(deadline=math.inf)
    clock.advance(300)
    start = clock.monotonic()

    # Act
    granted = []
    for _ in range(30):
        limiter.acquire(deadline=math.inf)
        granted.append(clock.monotonic() - start)

    # Check
    assert granted.count(0.0) == 10
    assert granted[-1] == pytest.approx(2.0)


def test_should_give_eight_threads_the_same_timeline_as_one() -> None:
    # Prepare
    alone, shared = CountingClock(), CountingClock()
    single = RateLimiter(600, alone)
    for _ in range(1200):
        single.acquire(math.inf)
    limiter = RateLimiter(600, shared)
    outcomes: list[bool] = []

    def worker() -> None:
        outcomes.extend(limiter.acquire(math.inf) for _ in range(150))

    # Act
    threads = [start_thread(worker) for _ in range(8)]
    for thread in threads:
        thread.join(timeout=5 * JOIN_TIMEOUT)

    # Check
    assert not any(thread.is_alive() for thread in threads)
    assert outcomes == [True] * 1200
    assert shared.most_sleeping == 1, "only the head of the queue may sleep on the clock"
    assert shared.sleeps == alone.sleeps
    assert shared.monotonic() == pytest.approx(119.0)


def test_should_share_the_rate_between_threads_in_real_time() -> None:
    # Prepare: 40 requests at one per 5 ms take at least 195 ms
    clock = SystemClock()
    limiter = RateLimiter(12_000, clock, burst=1)
    outcomes: list[bool] = []
    started = time.monotonic()

    def worker() -> None:
        outcomes.extend(limiter.acquire(clock.monotonic() + JOIN_TIMEOUT) for _ in range(10))

    # Act
    threads = [start_thread(worker) for _ in range(4)]
    for thread in threads:
        thread.join(timeout=JOIN_TIMEOUT)
    elapsed = time.monotonic() - started

    # Check
    assert not any(thread.is_alive() for thread in threads)
    assert outcomes == [True] * 40
    assert 39 * 0.005 <= elapsed < 1.0


def test_should_refuse_at_once_when_the_turn_comes_after_the_deadline(clock: FakeClock) -> None:
    # Prepare
    limiter = RateLimiter(600, clock, burst=1)
    start = clock.monotonic()
    limiter.acquire(deadline=math.inf)

    # Act
    refused = limiter.acquire(deadline=start + 0.05)
    granted = limiter.acquire(deadline=start + 0.1)

    # Check
    assert refused is False
    assert granted is True
    assert clock.sleeps == [pytest.approx(0.1)], "no waiting for the refused request"
    assert clock.monotonic() == pytest.approx(start + 0.1), "and it used up no turn"


def test_should_pause_the_client_until_the_time_given_then_resume_without_a_burst(
    clock: FakeClock,
) -> None:
    # Prepare
    limiter = RateLimiter(600, clock)
    start = clock.monotonic()

    # Act
    limiter.pause_until(start + 30)
    paused_until = limiter.paused_until
    refused = limiter.acquire(deadline=start + 10)
    granted = []
    for _ in range(3):
        limiter.acquire(deadline=math.inf)
        granted.append(clock.monotonic() - start)

    # Check
    assert paused_until == start + 30
    assert refused is False
    assert granted == pytest.approx([30.0, 30.1, 30.2])
    assert limiter.paused_until is None


def test_should_never_shorten_a_pause(clock: FakeClock) -> None:
    # Prepare
    limiter = RateLimiter(600, clock)
    start = clock.monotonic()

    # Act
    limiter.pause_until(start + 30)
    limiter.pause_until(start + 10)

    # Check
    assert limiter.paused_until == start + 30


def test_should_hold_back_threads_already_waiting_when_a_pause_comes() -> None:
    # Prepare: one request a second; the next turn is at t=1, three threads wait for it
    clock, limiter, results = spent_limiter()
    threads = [acquire_and_report(limiter, clock, 100.0, results) for _ in range(3)]
    clock.wait_for_sleeper(1.0)

    # Act: a 429 says "retry after 29 s"; then time passes
    limiter.pause_until(30.0)
    clock.advance_to(1.0)
    clock.wait_for_sleeper(30.0)
    granted = []
    for now in (30.0, 31.0, 32.0):
        clock.advance_to(now)
        granted.append(results.get(timeout=JOIN_TIMEOUT))
        if now < 32.0:
            clock.wait_for_sleeper(now + 1)
    for thread in threads:
        thread.join(timeout=JOIN_TIMEOUT)

    # Check: nobody went at t=1, and after the pause one a second again
    assert granted == [30.0, 31.0, 32.0]
    assert not any(thread.is_alive() for thread in threads)


def test_should_refuse_a_queued_thread_at_once_when_its_turn_is_past_its_deadline() -> None:
    # Prepare: one request a second; A waits for t=1, so B's turn is t=2
    clock, limiter, results = spent_limiter()
    first = acquire_and_report(limiter, clock, 100.0, results)
    clock.wait_for_sleeper(1.0)

    # Act
    late = acquire_and_report(limiter, clock, 1.5, results)
    late.join(timeout=JOIN_TIMEOUT)
    refused = results.get(timeout=JOIN_TIMEOUT)
    clock.advance_to(1.0)
    first.join(timeout=JOIN_TIMEOUT)

    # Check
    assert refused is False
    assert results.get(timeout=JOIN_TIMEOUT) == 1.0
    assert not late.is_alive()
    assert not first.is_alive()


def test_should_refuse_queued_threads_whose_deadline_a_new_pause_passes() -> None:
    # Prepare: B waits behind A for its turn at t=2, with a deadline of t=5
    clock, limiter, results = spent_limiter()
    first = acquire_and_report(limiter, clock, 100.0, results)
    clock.wait_for_sleeper(1.0)
    second = acquire_and_report(limiter, clock, 5.0, results)

    # Act
    limiter.pause_until(60.0)
    refused = results.get(timeout=JOIN_TIMEOUT)
    second.join(timeout=JOIN_TIMEOUT)
    clock.advance_to(1.0)
    clock.wait_for_sleeper(60.0)
    clock.advance_to(60.0)
    first.join(timeout=JOIN_TIMEOUT)

    # Check
    assert refused is False
    assert clock.monotonic() == 60.0
    assert results.get(timeout=JOIN_TIMEOUT) == 60.0
    assert not second.is_alive()
    assert not first.is_alive()


def test_should_refuse_everything_once_closed() -> None:
    # Prepare: A sleeps until its turn at t=1, B queues behind it
    clock, limiter, results = spent_limiter()
    first = acquire_and_report(limiter, clock, 100.0, results)
    clock.wait_for_sleeper(1.0)
    second = acquire_and_report(limiter, clock, 100.0, results)

    # Act
    limiter.close()
    second.join(timeout=JOIN_TIMEOUT)
    clock.advance_to(1.0)
    first.join(timeout=JOIN_TIMEOUT)
    later = limiter.acquire(deadline=math.inf)

    # Check
    assert [results.get(timeout=JOIN_TIMEOUT) for _ in range(2)] == [False, False]
    assert later is False
    assert not first.is_alive()
    assert not second.is_alive()


@pytest.mark.parametrize(
    ("per_minute", "burst", "message"),
    [
        (0, None, "per_minute must be a whole number of at least 1, not 0"),
        (True, None, "per_minute must be a whole number of at least 1, not True"),
        (600, 0, "burst must be a whole number of at least 1, not 0"),
    ],
)
def test_should_reject_a_rate_or_burst_below_one(
    clock: FakeClock, per_minute: int, burst: int | None, message: str
) -> None:
    # Prepare: see the parameters

    # Act
    with pytest.raises(ValueError) as caught:
        RateLimiter(per_minute, clock, burst=burst)

    # Check
    assert str(caught.value) == message


@pytest.mark.parametrize(("per_minute", "burst"), [(600, 10), (1000, 16), (90, 1), (1, 1)])
def test_should_default_the_burst_to_one_seconds_worth(
    clock: FakeClock, per_minute: int, burst: int
) -> None:
    # Prepare: see the parameters

    # Act
    limiter = RateLimiter(per_minute, clock)

    # Check
    assert limiter.burst == burst


def test_should_let_a_first_request_go_ahead_of_rest_requests_already_waiting() -> None:
    # Prepare: one request a second, the next turn at t=1; a REST request sleeps until it
    clock = WatchedClock()
    limiter = RateLimiter(60, clock, burst=1)
    limiter.acquire(deadline=math.inf)
    granted: queue.Queue[tuple[str, float]] = queue.Queue()

    def request(name: str, priority: object) -> threading.Thread:
        def run() -> None:
            assert limiter.acquire(100.0, REST if priority is REST else FIRST)
            granted.put((name, clock.monotonic()))

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        return thread

    threads = [request("pull operation", REST)]
    clock.wait_for_sleeper(1.0)

    # Act: a dataStatus request comes while the REST one waits; time passes
    threads.append(request("dataStatus", FIRST))
    clock.wait_for_looker("dataStatus")
    clock.advance_to(1.0)
    clock.wait_for_sleeper(2.0)
    clock.advance_to(2.0)
    for thread in threads:
        thread.join(timeout=JOIN_TIMEOUT)

    # Check: the dataStatus took the turn the pull operation waited for
    assert [granted.get(timeout=JOIN_TIMEOUT) for _ in threads] == [
        ("dataStatus", 1.0), ("pull operation", 2.0)
    ]  # fmt: skip


def test_should_refuse_rest_requests_the_reserved_first_requests_need_and_no_more(
    clock: FakeClock,
) -> None:
    # Prepare: one request a second; 3 dataStatus requests to come, the last by start + 4
    limiter = RateLimiter(60, clock, burst=1)
    start = clock.monotonic()
    limiter.reserve(3, start + 4)

    # Act
    spare = [limiter.acquire(math.inf, REST) for _ in range(3)]
    first = [limiter.acquire(math.inf, FIRST) for _ in range(3)]
    last_first = clock.monotonic()
    after = limiter.acquire(math.inf, REST)
    limiter.reserve(2, start)  # a cold start's: nothing else until both are made
    refused_at_start = limiter.acquire(math.inf, REST)
    limiter.reserve(0)
    once_ended = limiter.acquire(math.inf, REST)

    # Check: 2 REST turns fit before the 3 reserved ones; refused at once, no turn used
    assert spare == [True, True, False]
    assert first == [True, True, True]
    assert last_first == pytest.approx(start + 4)
    assert after is True, "the reservation is used up"
    assert refused_at_start is False
    assert once_ended is True
    assert clock.monotonic() == pytest.approx(start + 6)
