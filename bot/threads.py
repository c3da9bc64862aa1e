"""Work on a recommender in a thread, carried to its end when the awaiting event is cancelled."""
from __future__ import annotations

import asyncio
import contextlib
from typing import Awaitable, TypeVar

__all__ = ["to_the_end"]

T = TypeVar("T")


async def to_the_end(work: Awaitable[T]) -> T:
    """Await `work` to its end even when the caller is cancelled meanwhile (the cancellation goes on after).

    Why: work on a recommender runs in threads, which a cancellation (an event's `dispatch_timeout`, a
    shutdown) cannot stop. Let go at once, the caller would release the project's lock while the thread
    still changes the recommender, and the next event would use it at the same time and, its bookkeeping
    (rows seen, labels read) never updated, observe the same rows twice.
    """
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        while not task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)
        raise
