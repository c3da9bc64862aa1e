"""Wait for a database call at most so long, and do not wait for it to wind down either."""
from __future__ import annotations

import asyncio
from typing import Awaitable, TypeVar

__all__ = ["within", "let_go", "left_running", "settle"]

T = TypeVar("T")
_LEFT: set[asyncio.Future] = set()  # calls given up on, winding down on their own (kept from the collector)


async def within(work: Awaitable[T], seconds: float, *, cancel: bool = True) -> T:
    """`work`'s result, or `TimeoutError` once `seconds` have passed.

    Why not `asyncio.wait_for`: it waits for the cancelled call to finish, and a query cancelled on a database
    that hangs makes SQLAlchemy close the connection politely first (asyncpg's close, 2 s more), so a 3 s
    health probe answered after 5 s. Here the call is cancelled and left to end on its own.

    `cancel=False` (SQLite, `Storage.cancellable`): the call is not cancelled but left to finish, which the
    database's busy timeout bounds. A SQLite statement cancelled while it waited for another writer's lock
    went on in its thread, took the lock once it was free, and its connection, closed with the statement still
    referenced from the cancelled call's frames, kept that lock until a garbage collection: every later write
    of the process failed with "database is locked" after waiting 30 s.
    """
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:
        let_go(task, cancel)
        raise
    if task in done:
        return task.result()
    let_go(task, cancel)
    raise TimeoutError(f"no answer within {seconds:g} s")


def left_running() -> int:
    """How many calls given up on still run on this event loop."""
    loop = asyncio.get_running_loop()
    return sum(not task.done() and task.get_loop() is loop for task in _LEFT)


async def settle(seconds: float) -> None:
    """Wait, at most `seconds`, for the calls given up on that still run on this event loop.

    Why: on SQLite they are left to finish (`cancel=False`); a process or a test closing its loop before one did
    had aiosqlite's thread hand the statement's result to a closed loop ("Event loop is closed" from a thread).
    """
    loop = asyncio.get_running_loop()
    running = {task for task in _LEFT if not task.done() and task.get_loop() is loop}
    if running and seconds > 0:
        await asyncio.wait(running, timeout=seconds)


def let_go(task: asyncio.Future, cancel: bool) -> None:
    """Stop waiting for `task`, a database call: cancel it (PostgreSQL), or leave it to finish (`cancel` False:
    SQLite, see `within`); either way it is kept until done, for `settle`."""
    if cancel:
        task.cancel()
    _LEFT.add(task)
    task.add_done_callback(_forget)


def _forget(task: asyncio.Future) -> None:
    _LEFT.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: an error after giving up is not news ("exception never retrieved")
