"""Overlapping the stages of one stream: a prefetching thread and in-order futures.

Two small tools :class:`~gfpgan.inference.tracks.video_restorer.VideoFaceRestorer` uses so that face
detection, the generator and paste-back run at the same time (on a GPU the generator waits for
none of the CPU-side work), while every frame still comes out in order:

* :func:`prefetch` runs an iterator in its own thread, a bounded number of items ahead;
* :func:`in_order` yields the values of a stream of plain values and futures, in the order
  given, never holding more than ``window`` unfinished futures.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from concurrent.futures import Future
from typing import Iterable, Iterator, TypeVar, Union

__all__ = ["prefetch", "in_order", "put_unless_stopped"]

T = TypeVar("T")
_END = object()


class _Raised:
    def __init__(self, exc: BaseException):
        self.exc = exc


def put_unless_stopped(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Put ``item`` into the bounded queue ``q``, waiting for room; False (item dropped) once
    ``stop`` is set, so a producer never blocks on a consumer that has gone."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def prefetch(items: Iterable[T], size: int = 2, name: str = "gfpgan-prefetch") -> Iterator[T]:
    """Iterate ``items`` in a background thread, up to ``size`` items ahead of the consumer.

    An exception in the producer is raised in the consumer at the point it happened; closing the
    returned generator early stops the producer at its next item (it may finish the current one).
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, int(size)))
    stop = threading.Event()

    def produce():
        try:
            for item in items:
                if not put_unless_stopped(q, item, stop):
                    return
            put_unless_stopped(q, _END, stop)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            put_unless_stopped(q, _Raised(exc), stop)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join()


def in_order(items: Iterable[Union[T, "Future[T]"]], window: int) -> Iterator[T]:
    """Yield each item's value in order: plain values as they are, futures by their result.

    Finished items at the head are yielded as soon as they are seen; an unfinished head is
    waited for only once ``window`` items are outstanding, so up to ``window`` futures run while
    the producer goes on.
    """
    held: deque = deque()
    for item in items:
        held.append(item)
        while held and (len(held) > window or not isinstance(held[0], Future) or held[0].done()):
            head = held.popleft()
            yield head.result() if isinstance(head, Future) else head
    for head in held:
        yield head.result() if isinstance(head, Future) else head
