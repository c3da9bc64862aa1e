"""A parent that has imported the bot once and forks `reviewbot worker` processes on request.

Why: starting `python -m bot worker` imports numpy, scikit-learn and the handlers, 3-8 s on a busy 2-core
machine; a crash test that restarts a killed worker a dozen times would spend most of its time importing. A
forked child is still a separate process running the real `reviewbot worker` entry point (`bot.cli.main`),
with its own event loop, connections and signal handlers: SIGKILL and SIGTERM mean exactly what they mean for
an exec'd worker. Only the import is shared.

Protocol (one JSON object per line): stdin `{"argv": [...], "log": "/path"}` starts a worker whose stdout and
stderr go to `log`, answered on stdout by `{"pid": N}`; each child's exit is reported as
`{"exit": N, "code": C}` (C negative for a signal, as in `subprocess`). End of stdin: the parent waits for its
children and exits. No threads (forking a threaded process can deadlock), so the loop polls.
"""
from __future__ import annotations

import json
import os
import select
import signal
import sys
import traceback

import bot.cli  # noqa: F401 - the point: import once, before forking
import bot.handlers  # noqa: F401


def _child(argv: list[str], log: str) -> None:
    """In the forked child: output to `log`, default signal handling, run the worker, never return."""
    code = 1
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        from bot.cli import main

        code = main(argv) or 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - report it in the worker's log, like an exec'd process would
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _say(message: dict[str, int]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _reap(children: set[int]) -> None:
    while children:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            return
        children.discard(pid)
        _say({"exit": pid, "code": os.waitstatus_to_exitcode(status)})


def serve() -> None:
    """Fork a worker per request line until stdin closes, reporting pids and exits."""
    children: set[int] = set()
    buffered, stdin_open = b"", True
    while stdin_open or children:
        ready = select.select([0] if stdin_open else [], [], [], 0.02)[0]
        if ready:
            chunk = os.read(0, 65536)
            stdin_open = bool(chunk)
            buffered += chunk
        while b"\n" in buffered:
            line, buffered = buffered.split(b"\n", 1)
            request = json.loads(line)
            pid = os.fork()
            if pid == 0:
                _child(request["argv"], request["log"])
            children.add(pid)
            _say({"pid": pid})
        _reap(children)


if __name__ == "__main__":
    serve()
