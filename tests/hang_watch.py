"""When one test runs far longer than any should, print where every thread and asyncio task is waiting.

Why: a clean-clone CI run once hung in an event loop's teardown (pytest-asyncio cancelling the tasks a test
left) and the only trace was the job's time limit. A thread dump alone shows the loop idle in `select`;
the stuck coroutine is only seen in its task's stack. The report goes to the terminal past pytest's
capture, once per test, and the run carries on (a hang still fails CI by its time limit, now with a cause).
"""
from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import gc
import sys
import threading

import pytest

AFTER_SECONDS = 240.0  # the slowest test takes about 30 s on a loaded machine


def _running_loops() -> list[asyncio.AbstractEventLoop]:
    return [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop) and o.is_running()]


def _report(config: pytest.Config, nodeid: str) -> None:
    capture = config.pluginmanager.getplugin("capturemanager")  # None under `-p no:capture`: nothing to lift
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        out = sys.stderr
        print(f"\n=== {nodeid} still running after {AFTER_SECONDS:g} s: threads, then asyncio tasks ===",
              file=out, flush=True)
        faulthandler.dump_traceback(file=out, all_threads=True)
        for loop in _running_loops():
            try:
                tasks = list(asyncio.all_tasks(loop))
            except RuntimeError as exc:  # the set changed while read from this thread: say so, go on
                print(f"(tasks of {loop!r} unreadable: {exc})", file=out)
                continue
            for task in tasks:
                print(f"--- {task!r}", file=out)
                task.print_stack(file=out)
        out.flush()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    timer = threading.Timer(AFTER_SECONDS, _report, args=(item.config, item.nodeid))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
