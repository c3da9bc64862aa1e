"""`reviewbot serve` (web app + in-process worker) and `reviewbot worker` (queue worker only).

Why two commands: one process is simplest (`serve` alone is a whole bot, as is a Heroku app that runs only
its `web` dyno, the platform's default). `worker` processes add capacity beside it, all sharing the
PostgreSQL queue (leases keep them from running an event twice); `serve`'s own worker still takes its share
of the events then, competing with answering webhooks for CPU and memory, so under load run
`serve --no-worker` and let the `worker` processes do all of it. Both refuse to start on a database that
`reviewbot migrate` has not brought up to date (or cannot log in to, or may not write). A database that cannot
be reached at all when they start does not stop them: `serve` listens and spools deliveries until the database
answers (`bot.database_wait`), a `worker` (but `worker --once`) waits for it.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import gc
import importlib
import logging
import os
import signal
import socket
import sys
from typing import AsyncIterator, Callable

from aiohttp import web

from bot import database_wait, shutdown
from bot.cli import release
from bot.cli.commands import DEFAULT_DISPATCH
from bot.config import ConfigError, Settings, load_settings
from bot.database_wait import START_TIMEOUT, DatabaseWait, explain
from bot.deadline import within
from bot.logfmt import kv, setup_logging
from bot.metrics import Metrics
from bot.storage import EventRow, Storage, StorageError
from bot.storage.db import database_unreachable
from bot.web import STARTED_KEY, WAIT_KEY, make_app
from bot.worker import Dispatch, DispatchFactory, Worker, run_in_app, stop_loop

__all__ = ["run_serve", "run_worker", "build_app", "bind", "load_dispatch_factory", "DEFAULT_DISPATCH"]

log = logging.getLogger("bot.serve")
# Connections the web process keeps open: with the default 5, a burst of webhooks opens and closes an
# overflow connection per request (several round trips each), which doubled the cost of a webhook at 300/s.
WEB_POOL = {"pool_size": 10, "max_overflow": 10}
CLOSE_TIMEOUT = 5.0  # seconds to close the database connections, outside a shutdown's grace period


def load_dispatch_factory(spec: str) -> DispatchFactory:
    """Import `module:name`; the error says what is missing."""
    module_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr or "make_dispatch")
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load the dispatch factory {spec!r} ({exc}): install the handlers "
                          "or pass --dispatch module:name") from None
    return factory


class _LateDispatch:
    """Stands for the handlers' dispatch until they have started, after the app began to listen."""

    def __init__(self) -> None:
        self.target: Dispatch | None = None

    async def __call__(self, row: EventRow) -> object:
        if self.target is None:
            raise RuntimeError("dispatch called before the handlers started")
        return await self.target(row)


async def build_app(settings: Settings, factory: DispatchFactory | str | None, *, with_worker: bool = True,
                    storage: Storage | None = None,
                    on_failure: Callable[[BaseException], None] | None = None) -> web.Application:
    """The `serve` app: storage checked before it listens, the spool (deliveries kept while the database is
    unavailable) drained from the start, and the handlers and worker started once it listens.

    Why the handlers come after listening: importing them (the recommender, scikit-learn), checking the token
    with GitLab and loading the projects took seconds, during which GitLab's deliveries were refused. The
    webhook needs only the storage, checked here; /healthz answers 503 "starting" until the handlers have
    started, so a load balancer does not count on a process whose token GitLab may yet refuse. `factory` may be
    `module:name`, imported then; if the handlers cannot start, `on_failure` gets the error (else it is logged).

    A database that cannot be reached (`_open_storage`) does not stop it: the app listens, spools every delivery
    and starts the drain, the handlers and the worker once the database answers and passes the checks.
    """
    waiting = None
    if storage is None:
        storage, waiting = await _open_storage(settings)
    metrics = Metrics()
    app = make_app(settings, storage, metrics, spool=True, waiting=waiting)

    async def storage_ctx(_app: web.Application) -> AsyncIterator[None]:
        yield
        await storage.close(shutdown.time_left(CLOSE_TIMEOUT))  # what the shutdown's grace leaves

    app.cleanup_ctx.append(storage_ctx)  # first in, last out: closed after the worker stopped
    if waiting is not None:
        _wait_in_app(app, waiting)
    if with_worker and factory is not None:
        _handlers_after_listening(app, settings, storage, metrics, factory, on_failure or _log_failure)
    app.on_startup.append(_freeze_startup)
    return app


async def _open_storage(settings: Settings) -> tuple[Storage, DatabaseWait | None]:
    """The storage, checked as `Storage.open(writable=True)` does and its pool opened; with a `DatabaseWait` when
    the database could not be reached (within `START_TIMEOUT`) and the spool is on, so that `serve` listens and
    spools meanwhile. A database that answers but is misconfigured (a refused login, no such database, an
    out-of-date schema, read-only) is refused as before: waiting would not fix it, and nothing has been accepted
    yet that a stop would lose."""
    storage = Storage(settings.database_url, echo=settings.database.echo, **WEB_POOL)
    try:
        checks = _prepare(storage)  # SQLite: no server to wait for, and a check given up on would run on
        await (within(checks, START_TIMEOUT) if storage.cancellable else checks)
    except Exception as exc:
        if not (settings.server.spool_max_files and database_unreachable(exc, storage.url)):
            await storage.close()
            raise
        log.warning(kv("database unreachable at start: listening anyway; every delivery is spooled until it "
                       "answers", cause=explain(exc), spool=os.path.abspath(settings.server.spool_dir)))
        return storage, DatabaseWait(storage, lambda: _prepare(storage))
    except BaseException:
        await storage.close()
        raise
    return storage, None


async def _prepare(storage: Storage) -> None:
    """The start-up checks, then the pool opened (not during the first burst of webhooks: each new connection
    costs several round trips)."""
    await storage.check_usable(writable=True)
    await asyncio.gather(*(storage.ping() for _ in range(WEB_POOL["pool_size"])))


def _wait_in_app(app: web.Application, waiting: DatabaseWait) -> None:
    """Run `waiting` from the app's start until the database is ready or the app shuts down."""
    tasks: list[asyncio.Task[None]] = []

    async def start(_app: web.Application) -> None:
        tasks.append(asyncio.create_task(waiting.run(), name="reviewbot-database-wait"))

    async def stop(_app: web.Application) -> None:  # before the storage closes
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    app.on_startup.append(start)
    app.on_shutdown.append(stop)


def _handlers_after_listening(app: web.Application, settings: Settings, storage: Storage, metrics: Metrics,
                              factory: DispatchFactory | str, on_failure: Callable[[BaseException], None]) -> None:
    """Start the handlers in the background from the app's start (it listens meanwhile), then the worker."""
    late, started = _LateDispatch(), asyncio.Event()
    app[STARTED_KEY] = started

    async def start(stack: contextlib.AsyncExitStack) -> None:
        if (waiting := app.get(WAIT_KEY)) is not None:
            await waiting.ready.wait()  # the database, checked: the handlers load the projects from it
        try:
            loaded = await asyncio.to_thread(load_dispatch_factory, factory) if isinstance(factory, str) else factory
            late.target = await stack.enter_async_context(loaded(settings, storage, metrics))
        except Exception as exc:  # noqa: BLE001 - whatever stopped them, the process must say so
            on_failure(exc)
            return
        started.set()
        await _freeze_startup()  # what the handlers imported and built too

    async def handlers_ctx(_app: web.Application) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            task = asyncio.create_task(start(stack), name="reviewbot-handlers-start")
            yield
            task.cancel()  # still starting at shutdown: stopped there
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.cleanup_ctx.append(handlers_ctx)
    run_in_app(app, late, after=started)


def _log_failure(exc: BaseException) -> None:
    log.error(kv("the handlers did not start: events are stored, not run", cause=f"{type(exc).__name__}: {exc}"))


async def _freeze_startup(_app: web.Application | None = None) -> None:
    """Keep what the process imported and built to start (modules, the app, the pool) out of the garbage
    collector's reach: a full collection scanned all of it (41 ms in the webhook process) in the middle of
    whichever request triggered it; frozen, it scans only what the requests create."""
    gc.collect()
    gc.freeze()


def _setup(args: argparse.Namespace, *, listens: bool) -> Settings:
    # One OpenMP thread for the learned ranker, unless the operator says otherwise (read when scikit-learn
    # loads, i.e. later, with the handlers). Its fits and predictions run in threads beside the suggestions;
    # with OpenMP's default of a thread per CPU they spin against each other and against other processes: on
    # 2 shared cores u-boot's retraining took 19-39 s instead of 8-11 s, a 5-file suggestion's p99 623 ms
    # instead of 33-54 ms, and replaying 2,528 changes 9-19 s of CPU instead of 6 s.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    setup_logging(args.log_level)
    return load_settings(args.config, listens=listens)  # a worker reads no PORT (--metrics-port is its own)


def said_cannot_listen(exc: OSError, command: str, where: str, fix: str) -> bool:
    """If binding failed (the address is taken, not this machine's or not allowed, or no such host), say so
    in one line on stderr and return True; any other OSError is not ours to explain."""
    if not (isinstance(exc, socket.gaierror) or exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES)):
        return False
    print(f"reviewbot {command}: cannot listen{where}: {exc.strerror or exc}; {fix}", file=sys.stderr)
    return True


def run_serve(args: argparse.Namespace) -> int:
    try:
        settings = _setup(args, listens=True)
    except ConfigError as exc:
        print(f"reviewbot serve: {exc}", file=sys.stderr)
        return 2
    host, port = args.host or settings.server.host, settings.server.port if args.port is None else args.port
    failed: list[BaseException] = []  # the handlers' start-up, once listening: a refused token stops serve
    stop = _exit_once()
    sockets: list[socket.socket] = []
    try:
        sockets = bind(host, port)
        log.info(kv("serve starting", version=release(), gitlab=settings.gitlab.address, host=host,
                    port=_ports(sockets), worker=not args.no_worker, config=settings.source))
        web.run_app(_serving_app(settings, args, stop, lambda exc: _stop_serving(failed, exc, stop)),
                    sock=sockets, shutdown_timeout=settings.server.shutdown_timeout, access_log=None,
                    print=None, handle_signals=False)
        if failed:
            raise failed[0]
    except (StorageError, ConfigError) as exc:
        print(f"reviewbot serve: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    except OSError as exc:
        if not said_cannot_listen(exc, "serve", f" on {host}:{port}", "stop what uses it or choose another --port "
                                  "/ --host"):
            raise
        return 1
    finally:
        for sock in sockets:  # if the app never took them (the storage check failed)
            sock.close()
    return 0


def bind(host: str, port: int) -> list[socket.socket]:
    """Sockets bound to each address of `host` (as aiohttp's own listening binds them), listening only once the
    app starts: the port that `--port 0` got is known before, for the start-up line to name it.

    Why bind here, not in `web.run_app`: it names no port it chose, so a test (or an operator) that wanted any free
    port had to pick one, close it and pass it, and another process could take it in between. An empty `host` is
    every interface, as asyncio reads it (`getaddrinfo` knows no host "": `host = ""` stopped serve).
    """
    sockets: list[socket.socket] = []
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in dict.fromkeys(infos):  # each once (in order)
            sockets.append(sock := socket.socket(family, kind, proto))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart reuses the port at once
            if family == socket.AF_INET6:  # one socket per family, as asyncio does
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _ports(sockets: list[socket.socket]) -> str:
    """The port the sockets are bound to (with `--port 0`, one per address family if `host` has several)."""
    return ",".join(dict.fromkeys(str(sock.getsockname()[1]) for sock in sockets))


async def _serving_app(settings: Settings, args: argparse.Namespace, stop: Callable[[], None],
                       on_failure: Callable[[BaseException], None]) -> web.Application:
    """`build_app`, stopped by SIGTERM and SIGINT through `stop` (see `_exit_once`)."""
    app = await build_app(settings, None if args.no_worker else args.dispatch, with_worker=not args.no_worker,
                          on_failure=on_failure)

    async def on_signals(_app: web.Application) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop)

    app.on_startup.insert(0, on_signals)
    return app


def _exit_once() -> Callable[[], None]:
    """Stop `web.run_app` the first time it is called (it ends on `GracefulExit`, after the app's shutdown and
    cleanup); later calls are logged and ignored.

    Why not aiohttp's own signal handlers: they raise `GracefulExit` on every signal, and Heroku may send
    SIGTERM more than once. A second one during the shutdown the first began cut it short: exit 1, the running
    events neither finished nor handed back (they waited for their lease to expire)."""
    stopping = False

    def stop() -> None:
        nonlocal stopping
        if stopping:
            log.info(kv("already shutting down"))  # a later signal, or the handlers failing meanwhile
            return
        stopping = True
        raise web.GracefulExit()

    return stop


def _stop_serving(failed: list[BaseException], exc: BaseException, stop: Callable[[], None]) -> None:
    """Keep `exc` for `run_serve` to report and stop the app as SIGTERM does."""
    failed.append(exc)
    asyncio.get_running_loop().call_soon(stop)


async def _open_for_worker(settings: Settings, once: bool) -> Storage:
    """The worker's storage, checked. A database that cannot be reached is tried again with backoff (logged
    once) rather than ending the worker: it has nothing to do until the database answers, and a supervisor
    restarting it would only do the same more noisily. `worker --once` (cron) and a misconfigured database
    still fail at once (exit 1, naming the fix). SIGTERM meanwhile ends it at once: nothing runs yet."""
    delay, said = database_wait.RETRY_FIRST, False
    while True:
        try:
            return await Storage.open(settings.database_url, echo=settings.database.echo, writable=True,
                                      pool_size=settings.worker.concurrency + 2)
        except StorageError as exc:
            if once or not database_unreachable(exc, settings.database_url):
                raise
            if not said:
                log.warning(kv("database unreachable at start: the worker tries again until it answers",
                               cause=explain(exc)))
            said = True
        await asyncio.sleep(delay)
        delay = min(delay * 2, database_wait.RETRY_MAX)


async def _work(settings: Settings, factory: DispatchFactory, once: bool, metrics_port: int | None = None) -> int:
    storage = await _open_for_worker(settings, once)
    metrics = Metrics()
    if metrics_port is not None:  # a worker apart from `serve`: its own counters, which `serve` cannot show
        from prometheus_client import start_http_server

        try:
            server, _ = start_http_server(metrics_port, registry=metrics.registry)
        except OSError as exc:
            await storage.close()
            raise ConfigError(f"cannot serve the worker's metrics on port {metrics_port} ({exc.strerror}): "
                              "choose another --metrics-port") from None
        log.info(kv("worker metrics served", url=f"http://0.0.0.0:{server.server_port}/metrics"))  # 0: the one got
    try:
        async with factory(settings, storage, metrics) as dispatch:
            worker = Worker(storage, dispatch, settings, metrics)
            await _freeze_startup()
            if once:
                total = await _run_due(worker, settings.server.shutdown_timeout)
                if worker.claim_error is not None:  # for cron: the events due were not run
                    raise StorageError(f"cannot read the event queue ({worker.claim_error}): check the database "
                                       "(DATABASE_URL) and run `reviewbot worker --once` again")
                return total
            await _run_until_signal(worker, settings.server.shutdown_timeout)
            return 0
    finally:
        await storage.close(shutdown.time_left(CLOSE_TIMEOUT))  # what the shutdown's grace leaves


async def _run_due(worker: Worker, grace: float) -> int:
    """Run every event due now, `concurrency` at a time (and those each one's end makes due), then apply the
    retention, as a long-running worker does at start, for `worker --once`; returns how many events ran.

    SIGTERM/SIGINT stops claiming (or pruning) and finishes or hands back the running events within `grace`: a
    scheduler's job (a Heroku one-off dyno) gets SIGTERM too. The shutdown's deadline begins in this task, not
    in the signal's callback, so that the handlers' exit and closing the storage after it keep to the grace too.
    """
    signalled = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, signalled.set)
    started: list[int] = []  # how many each claim started
    running = asyncio.create_task(_all_due(worker, started))
    if not await _done_before(running, signalled):
        await worker.stop(shutdown.begin(grace))
        running.cancel()  # still waiting only for an event that outlives its cancellation (one in a thread)
        return sum(started)
    await worker.stop(grace)
    pruning = asyncio.create_task(worker.prune())
    if not await _done_before(pruning, signalled):
        pruning.cancel()
        shutdown.begin(grace)
    return sum(started)


async def _all_due(worker: Worker, started: list[int]) -> None:
    """Claim and run events until a claim finds none due, noting in `started` how many each claim started."""
    started.append(await worker.run_once())
    while started[-1]:
        await worker.drain()
        started.append(await worker.run_once())


async def _done_before(task: asyncio.Task[None], signalled: asyncio.Event) -> bool:
    """Wait for `task` or the signal, whichever comes first; whether the task was done first."""
    waiting = asyncio.ensure_future(signalled.wait())
    try:
        await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
    return task.done() and not signalled.is_set()


async def _run_until_signal(worker: Worker, grace: float) -> None:
    """Run the worker; on SIGTERM/SIGINT stop claiming, finish or hand back within `grace` (the deadline begun
    then, which the handlers' exit and closing the storage share)."""
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_requested.set)
    run_task = asyncio.create_task(worker.run())
    stop_task = asyncio.create_task(stop_requested.wait())
    await asyncio.wait({run_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    stop_task.cancel()
    await worker.stop(shutdown.begin(grace))
    await stop_loop(run_task)  # its loop may be stuck in a database call that does not return


def run_worker(args: argparse.Namespace) -> int:
    try:
        settings = _setup(args, listens=False)
        log.info(kv("worker starting", version=release(), gitlab=settings.gitlab.address, config=settings.source))
        factory = load_dispatch_factory(args.dispatch)
        asyncio.run(_work(settings, factory, args.once, getattr(args, "metrics_port", None)))
    except (ConfigError, StorageError) as exc:
        print(f"reviewbot worker: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    return 0
