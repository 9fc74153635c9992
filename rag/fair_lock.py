"""A lock handed out in the order it was asked for.

The app lets one request at a time use the models and the embedded store. A long upload takes that turn many
times, briefly each time; with a plain `threading.Lock` the thread that just released it usually takes it
straight back, and a question asked meanwhile could wait for the whole upload. First come, first served, a
question waits for at most one of the upload's turns.
"""

from __future__ import annotations

import threading
from types import TracebackType


class FairLock:
    """A non-reentrant lock granted first come, first served; usable in `with`."""

    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._next_ticket = 0  # handed to the next thread that asks
        self._serving = 0  # the ticket whose holder may run
        self._abandoned: set[int] = set()  # tickets whose thread stopped waiting (interrupted)

    def acquire(self) -> None:
        with self._condition:
            ticket = self._next_ticket
            self._next_ticket += 1
            try:
                self._condition.wait_for(lambda: self._serving == ticket)
            except BaseException:
                self._abandon(ticket)
                raise

    def release(self) -> None:
        with self._condition:
            self._advance()

    @property
    def waiting(self) -> int:
        """How many threads are waiting for the lock (the holder not counted)."""
        with self._condition:
            queued = self._next_ticket - self._serving - len(self._abandoned)
            return max(0, queued - 1)

    def __enter__(self) -> FairLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()

    def _advance(self) -> None:
        self._serving += 1
        while self._serving in self._abandoned:
            self._abandoned.discard(self._serving)
            self._serving += 1
        self._condition.notify_all()

    def _abandon(self, ticket: int) -> None:
        if self._serving == ticket:  # its turn came as it gave up: pass it on
            self._advance()
        else:
            self._abandoned.add(ticket)
