"""Frames of the next batch decoded on a background thread while the network works on this one.

The flow and box stages spend part of their time in cv2.imread (which releases the GIL); with
`read_ahead` that decoding overlaps the network's work (on the GPU, or torch's CPU threads), one
batch ahead, so at most two batches of frames are in memory. The batches come in order and hold
what a plain loop would read; an exception raised while reading a batch is raised, unchanged,
where the caller asks for that batch, as the plain loop raised it.
"""
from __future__ import annotations

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
