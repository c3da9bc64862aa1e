"""One merge request's deliveries reach the queue in the order this process received them, stored or spooled.

Why: a delivery whose write is slow (a locked table) is spooled once `STORE_TIMEOUT` passes, and a later one of
the same merge request, whose write began meanwhile, could still be stored directly and be claimed before the
drainer moves the earlier one (an update handled before its open). So a delivery waits until the earlier ones
of its merge request that this process is taking are stored or spooled; then, if any was spooled, it joins
them in the spool (`bot.web`), so the queue's order, by id, is the arrival order.

Why here and not in the claim (ordering an MR's events by `received_at` instead of id): no claim order can
put back an event that is not in the table yet, and the later delivery, stored directly, is claimed at once;
the claim query (the hottest statement, its plans tuned) stays as it is; and arrival times written by
different processes compare their wall clocks, which a clock set wrong or stepped back would turn into
reorderings of ordinary deliveries. Deliveries of one merge request received by different processes are
queued in the order their writes commit (README, *When the database is down*).

Deliveries of different merge requests, and those naming none, do not wait for one another.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator, Hashable

__all__ = ["ArrivalOrder"]


class ArrivalOrder:
    """Turns per key (a project and merge request): each taker waits for the one before it."""

    def __init__(self) -> None:
        self._last: dict[Hashable, asyncio.Future[None]] = {}  # key -> the latest taker's end

    def __len__(self) -> int:
        """Keys with a taker not yet done (for tests: the map does not grow)."""
        return len(self._last)

    @contextlib.asynccontextmanager
    async def turn(self, key: Hashable | None) -> AsyncIterator[None]:
        """Wait until every earlier taker of `key` is done, then hold the turn; None takes it at once. A taker
        cancelled while it waits passes its place on only when the one before it is done (never sooner)."""
        if key is None:
            yield
            return
        earlier = self._last.get(key)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._last[key] = mine
        try:
            if earlier is not None:
                await asyncio.shield(earlier)  # shielded: a cancelled waiter must not end the one before it
            yield
        finally:
            if earlier is None or earlier.done():
                self._done(key, mine)
            else:
                earlier.add_done_callback(lambda _: self._done(key, mine))

    def _done(self, key: Hashable, mine: asyncio.Future[None]) -> None:
        mine.set_result(None)
        if self._last.get(key) is mine:
            del self._last[key]
