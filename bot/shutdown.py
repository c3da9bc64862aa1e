"""The shutdown deadline: every step a process takes after SIGTERM shares one grace period.

Why one deadline: the platform kills the process `[server] shutdown_timeout` s after SIGTERM at the latest
(Heroku: 30 s). Steps that each had a timeout of their own (running events, handing the rest back, the final
snapshots, closing the database connections) added up past it when the database stopped answering, each one
waiting its full time. Now running events get the grace minus a reserve (a fifth, at most 5 s) kept for the
steps after them, and each of those gets what remains until a margin before the deadline (a twentieth, at most
1 s: the process still has to exit).

The deadline of the shutdown under way is also in a context variable, for the steps that run inside code
given only the settings (the handlers' exit): `time_left(default)`. `begin()` sets it; the web app begins it
when it starts shutting down, `reviewbot worker` when the signal comes.

>>> d = Deadline(25.0)
>>> round(d.left_for_events()), round(d.left())
(20, 24)
"""
from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Callable

__all__ = ["Deadline", "begin", "current", "time_left"]

RESERVE_SHARE, RESERVE_MAX = 0.2, 5.0  # kept from running events for handing back, snapshots, closing
MARGIN_SHARE, MARGIN_MAX = 0.05, 1.0  # kept from everything, for the process to exit

_CURRENT: ContextVar[Deadline | None] = ContextVar("reviewbot_shutdown_deadline", default=None)


class Deadline:
    """`grace` seconds from now, split between running events and the steps that close down after them."""

    def __init__(self, grace: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.grace, self._clock = grace, clock
        self.at = clock() + grace
        self.reserve = min(RESERVE_MAX, grace * RESERVE_SHARE)
        self.margin = min(MARGIN_MAX, grace * MARGIN_SHARE)

    def left_for_events(self) -> float:
        """Seconds running events may still take (never negative)."""
        return max(0.0, self.at - self.reserve - self._clock())

    def left(self) -> float:
        """Seconds any later step (handing events back, snapshots, closing connections) may still take."""
        return max(0.0, self.at - self.margin - self._clock())


def begin(grace: float) -> Deadline:
    """Start the shutdown of this task (and the tasks it starts from now on): `grace` seconds from now."""
    deadline = Deadline(grace)
    _CURRENT.set(deadline)
    return deadline


def current() -> Deadline | None:
    """The deadline of the shutdown under way, None when none has begun."""
    return _CURRENT.get()


def time_left(default: float) -> float:
    """`default` seconds, or less when a shutdown under way leaves less."""
    deadline = _CURRENT.get()
    return default if deadline is None else min(default, deadline.left())
