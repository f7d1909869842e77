"""Reading ahead on a background thread while the network works: frames of the next batch (`read_ahead`,
flow, box and cube stages) and cube batches (`prefetch`, training and scoring on a GPU).

The flow, box and cube stages spend part of their time in cv2.imread and np.load (which release
the GIL); with `read_ahead` that decoding overlaps the network's work (on the GPU, or torch's CPU
threads) or the cropping, one batch ahead, so at most two batches of frames are in memory. The
batches come in order and hold what a plain loop would read; an exception raised while reading a
batch is raised, unchanged, where the caller asks for that batch, as the plain loop raised it.
"""
from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

Item = TypeVar("Item")
Read = TypeVar("Read")


def read_ahead(items: Iterable[Item], read: Callable[[Item, Read | None], Read]) -> Iterator[tuple[Item, Read]]:
    """(item, read(item, previous)) for each item in order, where `previous` is what was read for the item
    before (None for the first), so a reader can reuse frames it already has. While the caller works on
    one item, the next one is read on a single background thread."""
    items = list(items)
    if not items:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead") as pool:
        pending = pool.submit(read, items[0], None)
        for position, item in enumerate(items):
            result = pending.result()  # re-raises the reader's exception, traceback included
            if position + 1 < len(items):
                pending = pool.submit(read, items[position + 1], result)
            yield item, result


def prefetch(iterator: Iterator, depth: int = 3) -> Iterator:
    """`iterator`'s items, produced `depth` ahead on a background thread; its exceptions re-raised here."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def offer(item) -> bool:
        """Put `item` unless the consumer has gone (then never block on a full queue)."""
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in iterator:
                if not offer(item):
                    return
            offer(done)
        except BaseException as err:  # handed to the consumer, which raises it
            offer(err)

    thread = threading.Thread(target=produce, name="cube-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
