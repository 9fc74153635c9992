"""Runs the service's blocking work (models, store, a remote LLM) on threads of its own, for async routes.

Why not FastAPI's sync routes: those run on one shared thread pool, and a streaming response needs a pool
thread for every next piece. Requests that blocked on a process-wide lock filled that pool while a stream held
the lock and waited for a thread: the app hung. Here the routes are async, admission (api/admission.py) caps
the work in flight at the size of a dedicated pool, so a thread is free for every admitted job, and a stream's
worker runs ahead, handing pieces to the event loop through a queue: no thread waits on a client.

Every job gets a CancelToken that the work checks between steps. The caller cancels it when it stops
waiting: past the request's deadline (504), or when the client went away (its answer is dropped, and an LLM
stream is closed, which stops the generation).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from fastapi import Request

from api.admission import Admission, Overloaded, Slot
from rag.errors import RagError

logger = logging.getLogger(__name__)

T = TypeVar("T")
KEEPALIVE_S = 10.0  # a stream with nothing to say sends a comment this often (proxies close idle streams)


class TimedOut(RagError):
    code = "timeout"
    http_status = 504


class ClientGone(Exception):
    """The client disconnected before its answer was ready; nothing is sent."""


class Cancelled(Exception):
    """Raised inside the work when its token was cancelled (the caller no longer waits for it)."""


class Keepalive:
    """Yielded by a stream that has been quiet for KEEPALIVE_S."""


KEEPALIVE = Keepalive()


class CancelToken:
    def __init__(self, deadline: float) -> None:
        self.deadline = deadline  # time.monotonic()
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set() or time.monotonic() > self.deadline

    def check(self) -> None:
        if self.cancelled:
            raise Cancelled


class Workers:
    def __init__(
        self,
        admission: Admission,
        *,
        timeout_s: float | None,
        name: str = "rag-work",
        on_rejection: Callable[[str], None] = lambda reason: None,
    ) -> None:
        """`on_rejection(reason)` hears of every request not answered: overloaded, timeout, client_gone."""
        self.admission = admission
        self.timeout_s = timeout_s
        self.on_rejection = on_rejection
        self._executor = ThreadPoolExecutor(max_workers=admission.max_inflight, thread_name_prefix=name)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def run(self, request: Request | None, work: Callable[[CancelToken], T]) -> T:
        """`work(token)` on a worker thread; its result, or TimedOut / ClientGone (the work is told to stop).
        Without a request the client is not watched (the work must finish, e.g. files it reads)."""
        slot, token = await self._admit()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.run_in_executor(self._executor, self._guarded, loop, slot, token, work)
        gone: asyncio.Future[Any] = asyncio.ensure_future(
            _disconnected(request) if request is not None else asyncio.Event().wait()
        )
        try:
            done, _ = await asyncio.wait(
                {future, gone}, timeout=_remaining(token.deadline), return_when=asyncio.FIRST_COMPLETED
            )
            if future in done:
                return future.result()
            if gone in done:
                self.on_rejection("client_gone")
                raise ClientGone
            self.on_rejection("timeout")
            raise TimedOut(self._timeout_message())
        finally:
            gone.cancel()
            token.cancel()  # harmless once the work is done; otherwise it stops at its next check
            if not future.done():
                future.add_done_callback(_abandoned)

    async def stream(self, work: Callable[[CancelToken], Iterator[T]]) -> AsyncIterator[T | Keepalive]:
        """Admit now (Overloaded is raised here, before a response starts), then the items `work` yields, as
        the worker produces them. Closing the returned iterator (the client went away) stops the work."""
        slot, token = await self._admit()
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        def produce(token: CancelToken) -> None:
            try:
                iterator = work(token)
                try:
                    for item in iterator:
                        _post(loop, items.put_nowait, ("item", item))
                        if token.cancelled:
                            break
                finally:
                    close_iterator(iterator)
            except Exception as exc:
                _post(loop, items.put_nowait, ("error", exc))
            finally:
                _post(loop, items.put_nowait, ("end", None))

        loop.run_in_executor(self._executor, self._guarded, loop, slot, token, produce)
        return self._drain(items, token)

    async def _drain(self, items: asyncio.Queue[tuple[str, Any]], token: CancelToken) -> AsyncIterator[Any]:
        try:
            while True:
                remaining = _remaining(token.deadline)
                if remaining is not None and remaining <= 0:
                    self.on_rejection("timeout")
                    raise TimedOut(self._timeout_message())
                wait = KEEPALIVE_S if remaining is None else min(remaining, KEEPALIVE_S)
                try:
                    kind, value = await asyncio.wait_for(items.get(), timeout=wait)
                except TimeoutError:
                    yield KEEPALIVE
                    continue
                if kind == "end":
                    return
                if kind == "error":
                    raise value
                yield value
        except (asyncio.CancelledError, GeneratorExit):  # the client went away mid-stream
            self.on_rejection("client_gone")
            raise
        finally:
            token.cancel()

    async def _admit(self) -> tuple[Slot, CancelToken]:
        deadline = time.monotonic() + self.timeout_s if self.timeout_s else float("inf")
        try:
            slot = await self.admission.enter(deadline)
        except Overloaded:
            self.on_rejection("overloaded")
            raise
        return slot, CancelToken(deadline)

    def _guarded(
        self, loop: asyncio.AbstractEventLoop, slot: Slot, token: CancelToken, work: Callable[[CancelToken], T]
    ) -> T:
        """Runs on the worker thread; the slot is given back when the work has really ended."""
        try:
            return work(token)
        finally:
            _post(loop, self.admission.leave, slot)

    def _timeout_message(self) -> str:
        return f"no answer within {self.timeout_s:g} s (RAG_API_REQUEST_TIMEOUT_S); the work was stopped"


def _abandoned(future: asyncio.Future[Any]) -> None:
    """The end of work whose caller stopped waiting: told to stop, it raises Cancelled; anything else is logged
    (nobody else will see it)."""
    if future.cancelled():
        return
    error = future.exception()
    if error is not None and not isinstance(error, Cancelled):
        logger.warning("work whose caller had left failed: %s", error, exc_info=error)


def _remaining(deadline: float) -> float | None:
    return None if deadline == float("inf") else deadline - time.monotonic()


def _post(loop: asyncio.AbstractEventLoop, callback: Callable[..., Any], *args: Any) -> None:
    """Hand a call to the event loop from a worker thread (dropped when the loop has already closed)."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:
        logger.debug("event loop closed; %s dropped", getattr(callback, "__name__", callback))


async def _disconnected(request: Request) -> None:
    """Returns when the client disconnects (the body has been read, so `receive` only reports that)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def collect(events: Iterator[Any], token: CancelToken) -> Any:
    """The last event of a stream, checking the token between events (and closing the stream when told to)."""
    last = None
    try:
        for event in events:
            token.check()
            last = event
    finally:
        close_iterator(events)
    return last


def close_iterator(iterator: Iterator[Any]) -> None:
    """Close a generator (its `finally` blocks run now: an LLM stream is closed); other iterators need nothing."""
    close = getattr(iterator, "close", None)
    if close is not None:
        close()
