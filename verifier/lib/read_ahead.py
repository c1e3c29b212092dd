"""Run a producer one step ahead of its consumer, in a thread.

The full resync reads and decodes the snapshot's next frame and encodes its records
(the CPU half, :meth:`verifier.index.writer.SnapshotLoad.prepare`) while the frame
before is being written to Redis (the half that waits on a socket and so releases
the GIL). Order is kept, the queue is bounded (``depth`` items ahead at most), an
exception of the producer is raised in the consumer at the point in the stream
where it happened, and closing the reader (or leaving its ``with`` block early)
stops the producer at its next item.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

__all__ = ["ReadAhead"]

T = TypeVar("T")

_END = object()


class _Raised:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class ReadAhead(Generic[T]):
    """Iterate ``produce()`` (an iterable made in the producer thread), ``depth`` ahead.

    ``with ReadAhead(lambda: prepare_each(stream.batches()), name="resync-read") as items:
    for item in items: ...``. On leaving the block the producer is told to stop and
    joined (for ``join_timeout_s``; it is a daemon thread, so a producer blocked in a read
    the caller then interrupts, by closing the stream, cannot hold the process up).
    """

    def __init__(self, produce: Callable[[], Iterable[T]], *, depth: int = 2, name: str = "read-ahead",
                 join_timeout_s: float = 5.0, interrupt: Callable[[], object] | None = None) -> None:
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self._produce = produce
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._join_timeout_s = join_timeout_s
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False
        self._finished = threading.Event()
        self._interrupt = interrupt

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._produce():
                if not self._put(item):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            if not self._stop.is_set():
                self._put(_Raised(exc))
            return
        finally:
            self._finished.set()
        self._put(_END)

    def __enter__(self) -> Iterator[T]:
        return iter(self)

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[T]:
        if not self._started:
            self._started = True
            self._thread.start()
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item  # type: ignore[misc]

    def close(self) -> None:
        """Stop the producer (at its next item) and wait for it a little. A producer
        still running is first ``interrupt``-ed (e.g. its stream closed), so that one
        blocked in a read wakes up."""
        self._stop.set()
        if not self._started:
            return
        if not self._finished.is_set() and self._interrupt is not None:
            try:
                self._interrupt()
            except Exception:  # noqa: BLE001 - best effort: the thread is a daemon
                pass
        self._thread.join(self._join_timeout_s)
