"""Index what the running app wrote into a Qdrant Edge store, off the request path.

Edge searches new points by brute force until it is told to optimise (rag/search/edge.py). The app cannot
optimise in its own process while it serves (qdrant-edge-py holds the GIL for the whole of it), so after an
upload it asks this indexer, which on a thread of its own has a copy optimised by a child process
(`QdrantStore.optimize(while_serving=True)`) once enough chunks wait for Edge to index them: a segment smaller
than Edge's indexing threshold stays brute-force whatever optimising does, and copying a large shard for that
would not pay. Requests made while one runs fold into one more round, so a burst of uploads costs at most two
optimisations.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)


class BackgroundIndexer:
    """Runs `optimize` on a thread of its own when asked and `unindexed()` reaches `threshold()`."""

    def __init__(
        self, unindexed: Callable[[], int], optimize: Callable[[], None], threshold: Callable[[], int]
    ) -> None:
        self._unindexed = unindexed
        self._optimize = optimize
        self.threshold = threshold
        self._lock = threading.Lock()
        self._wanted = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self.rounds = 0  # optimisations run, for logs and tests

    def request(self) -> None:
        """Index soon if enough waits; returns at once."""
        with self._lock:
            if self._closed:
                return
            self._wanted = True
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="rag-indexer", daemon=True)
                self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Until no round runs or waits; False if `timeout` passed first."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._wanted = False

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._wanted or self._closed:
                    self._thread = None
                    return
                self._wanted = False
            try:
                waiting = self._unindexed()
                if waiting >= self.threshold():
                    logger.info("indexing %d new chunks beside the serving store", waiting)
                    self._optimize()
                    self.rounds += 1
            except Exception:  # the next upload asks again; questions are answered meanwhile, by brute force
                logger.exception("indexing beside the serving store failed")
