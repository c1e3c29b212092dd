"""verifier.lib.read_ahead: the producer thread the full resync reads its snapshot in."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from verifier.lib.read_ahead import ReadAhead


def test_items_come_in_order_and_at_most_depth_ahead() -> None:
    made: list[int] = []

    def produce() -> Iterator[int]:
        for i in range(50):
            made.append(i)
            yield i

    seen = []
    with ReadAhead(produce, depth=2) as items:
        for item in items:
            time.sleep(0.002)
            # the producer holds at most depth items in the queue plus the one it is putting
            assert len(made) - len(seen) <= 2 + 2
            seen.append(item)
    assert seen == list(range(50))


def test_the_producers_exception_is_raised_where_it_happened_in_the_stream() -> None:
    def produce() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("unusable permit number in frame 3")

    seen = []
    with pytest.raises(ValueError, match="frame 3"):
        with ReadAhead(produce) as items:
            for item in items:
                seen.append(item)
    assert seen == [1, 2]


def test_leaving_early_stops_the_producer_and_interrupts_a_blocked_read() -> None:
    released = threading.Event()
    interrupted = []
    made = []

    def produce() -> Iterator[int]:
        made.append(0)
        yield 0
        released.wait(10)  # a read the upstream never answers, until the stream is closed
        made.append(1)
        yield 1
        made.append(2)

    def interrupt() -> None:
        interrupted.append(True)
        released.set()

    reader = ReadAhead(produce, interrupt=interrupt, join_timeout_s=5)
    started = time.monotonic()
    with reader as items:
        assert next(items) == 0
    assert interrupted == [True]
    assert time.monotonic() - started < 5
    assert not reader._thread.is_alive()
    assert 2 not in made  # it stopped at its next item


def test_an_exhausted_producer_is_not_interrupted() -> None:
    interrupted = []
    with ReadAhead(lambda: iter(range(3)), interrupt=lambda: interrupted.append(True)) as items:
        assert list(items) == [0, 1, 2]
    assert interrupted == []


def test_depth_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ReadAhead(lambda: iter(()), depth=0)
