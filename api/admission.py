"""Back-pressure: how many requests are worked on at once, how many may wait, and what the rest are told.

A request takes a slot before its work starts and gives it back when the work has really stopped (not when
its caller gave up), so the bound is honest. Waiting happens on the event loop, never on a worker thread:
a queue of callers cannot exhaust the threads the running work needs. When the queue is full, or a caller's
deadline passes while it waits, it gets `Overloaded` (503 with `Retry-After`) instead of an unbounded wait.
All methods run on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections import deque
from dataclasses import dataclass, field

from rag.errors import RagError

STUCK_GRACE_S = 60.0  # work still running this long past its deadline did not stop when told to
MAX_RETRY_AFTER_S = 60


class Overloaded(RagError):
    """Every slot is taken and the queue is full (or the wait outlasted the request's deadline)."""

    code = "overloaded"
    http_status = 503

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass
class Slot:
    """One admitted request's hold on a worker; `deadline` is on the time.monotonic() clock."""

    number: int
    deadline: float
    started: float = field(default_factory=time.monotonic)


class Admission:
    def __init__(self, max_inflight: int, queue_depth: int, *, what: str = "requests") -> None:
        self.max_inflight, self.queue_depth, self.what = max_inflight, queue_depth, what
        self._running: dict[int, Slot] = {}
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._handed_on = 0  # slots given to a waiter that has not woken up yet: nobody else may take them
        self._numbers = itertools.count()
        self._mean_work_s = 0.0  # recent work duration, for Retry-After

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return sum(1 for waiter in self._waiters if not waiter.done())

    def saturated(self) -> bool:
        return self.running + self._handed_on >= self.max_inflight

    async def enter(self, deadline: float) -> Slot:
        """A slot, at once or after waiting in line until `deadline`; Overloaded when the line is full."""
        if not self.saturated() and not self.waiting:
            return self._take(deadline)
        if self.waiting >= self.queue_depth:
            raise self._overloaded(f"the server is busy ({self.running} {self.what} running, {self.waiting} waiting)")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout=max(deadline - time.monotonic(), 0.0))
        except (TimeoutError, asyncio.CancelledError) as exc:
            if waiter.done() and not waiter.cancelled():  # handed a slot in the same instant: pass it on
                self._handed_on -= 1
                self._hand_on()
            if isinstance(exc, TimeoutError):
                raise self._overloaded(
                    f"waited for a free worker until the request's deadline; {self.what} are queueing"
                ) from None
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        self._handed_on -= 1
        return self._take(deadline)

    def leave(self, slot: Slot) -> None:
        """The slot's work has stopped; the longest waiter gets it."""
        if self._running.pop(slot.number, None) is None:
            return
        elapsed = time.monotonic() - slot.started
        self._mean_work_s = elapsed if not self._mean_work_s else 0.8 * self._mean_work_s + 0.2 * elapsed
        self._hand_on()

    def stuck(self) -> Slot | None:
        """Work that kept running long past its deadline (told to stop, it did not): the process needs help."""
        now = time.monotonic()
        return next((slot for slot in self._running.values() if now > slot.deadline + STUCK_GRACE_S), None)

    def retry_after_s(self) -> int:
        """Seconds until a slot is likely free: the queue ahead, worked off at the recent pace."""
        ahead = self.waiting + 1
        estimate = self._mean_work_s * ahead / self.max_inflight
        return max(1, min(MAX_RETRY_AFTER_S, math.ceil(estimate)))

    def _take(self, deadline: float) -> Slot:
        slot = Slot(number=next(self._numbers), deadline=deadline)
        self._running[slot.number] = slot
        return slot

    def _hand_on(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._handed_on += 1
                return

    def _overloaded(self, reason: str) -> Overloaded:
        retry = self.retry_after_s()
        return Overloaded(f"{reason}; try again in {retry} s", retry)
