"""The local spool: deliveries accepted while the database is unavailable, kept on disk until it is back.

Why: GitLab does not re-send a failed delivery by itself (someone must press *Resend Request*), and each
failure counts towards disabling the hook. So an authenticated, well-formed delivery that cannot be stored is
written here, one file per delivery, answered 202, and moved into the queue by the `Drainer` once the database
answers again, oldest first, under the dedupe key it would have had: a move cut short by a crash (stored, file
not yet deleted) is repeated as a duplicate, not a second event. Only the process that received a delivery has
its file, so the web process (`reviewbot serve`) drains its own spool, starting with what a previous run left.

A file is `<nanoseconds since the epoch>-<pid>-<sequence>.json` (name order is arrival order), written under
a `.tmp` name, flushed to disk and renamed, so a crash never leaves half a delivery under a `.json` name. It
holds what the queue would store: the kept headers (never `X-Gitlab-Token`), the parsed body, the dedupe key.
A file that cannot be read is renamed `.bad`; one whose row the database refuses (`REFUSALS`: the row itself is
wrong, not a timeout or a lock) while it answers otherwise, `.refused` (after `MAX_REFUSALS` tries): both stay for an operator and stop holding up the deliveries behind them.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import time
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from prometheus_client import Gauge
from sqlalchemy.exc import DataError, IntegrityError

from bot.deadline import within
from bot.logfmt import kv
from bot.storage import Storage
from bot.storage.events import EventQueue

__all__ = ["Record", "Spool", "SpoolFull", "Drainer", "RETRY_SECONDS", "MAX_REFUSALS", "MB"]

log = logging.getLogger("bot.spool")

VERSION = 1
RETRY_SECONDS = 5.0  # between tries while the database is unavailable
PING_SECONDS = 3.0  # after a failed move: does the database answer at all?
MAX_REFUSALS = 3  # failed moves of one file while the database answers, before it is set aside
# What says the row itself is wrong; anything else (a timeout: a table locked while reads go on; a lost
# connection, a serialization failure) only says the database cannot take it now, and the file waits.
REFUSALS = (IntegrityError, DataError, ValueError, TypeError)
MB = 1024 * 1024
STALE_PARTIAL_SECONDS = 60.0  # a `.tmp` file this old is a write that never finished (never acknowledged)


class SpoolFull(Exception):
    """The spool holds its maximum; the delivery is answered 503 like one that could not be written."""


@dataclass(frozen=True, slots=True)
class Record:
    """One delivery as the queue stores it (`EventQueue.store_event`'s arguments)."""

    dedupe_key: str
    kind: str
    action: str | None
    project_id: int | None
    mr_iid: int | None
    headers: dict[str, str]
    body: dict[str, Any]
    received_at: datetime

    def as_kwargs(self) -> dict[str, Any]:
        """Its fields, not copied (`dataclasses.asdict` would copy the body on every webhook)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    async def store(self, events: EventQueue) -> tuple[int, bool]:
        """Store it unless its dedupe key is known: (event id, True if new)."""
        return await events.store_event(**self.as_kwargs())

    def to_json(self) -> bytes:
        fields_ = {**self.as_kwargs(), "received_at": self.received_at.isoformat()}
        return json.dumps({"version": VERSION, **fields_}).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Record:
        """Raises ValueError (or KeyError, TypeError) for anything that is not a spool file of this version."""
        data = json.loads(raw)
        if data.pop("version", None) != VERSION:
            raise ValueError(f"not a version {VERSION} spool file")
        data["received_at"] = datetime.fromisoformat(data["received_at"])
        if data["received_at"].tzinfo is None:
            raise ValueError("received_at has no time zone")
        return cls(**data)


class Spool:
    """The spool folder, with what it holds counted (for the bound and the `reviewbot_spool_files` gauge)."""

    def __init__(self, directory: str | Path, *, max_files: int, max_bytes: int, gauge: Gauge | None = None) -> None:
        self.directory = Path(directory)
        self.max_files, self.max_bytes, self.gauge = max_files, max_bytes, gauge
        self._files: dict[str, int] = {}  # name -> size, on disk
        self._writing: dict[str, int] = {}  # name -> size, being written
        self._sequence = itertools.count()
        self._last_ns = 0  # the time in the newest name given

    @property
    def count(self) -> int:
        """Deliveries in the spool (asked on every webhook: while there are any, new ones join them)."""
        if not self._writing:
            return len(self._files)
        return len(self._files.keys() | self._writing.keys())

    @property
    def size(self) -> int:
        return sum({**self._files, **self._writing}.values())

    def pending(self) -> list[Path]:
        """The spooled deliveries, oldest first (the folder is read again: the counts follow it)."""
        try:
            found = {e.name: e.stat().st_size for e in os.scandir(self.directory)
                     if e.name.endswith(".json") and e.is_file()}
        except FileNotFoundError:
            found = {}
        self._files = found
        self._changed()
        return [self.directory / name for name in sorted(found)]

    def discard_partial(self) -> None:
        """Delete `.tmp` files of writes that never finished (a crash mid-write: never answered 202)."""
        with _suppress_missing():
            for entry in os.scandir(self.directory):
                if entry.name.endswith(".tmp") and time.time() - entry.stat().st_mtime > STALE_PARTIAL_SECONDS:
                    with _suppress_missing():
                        os.unlink(entry.path)

    async def put(self, record: Record) -> str:
        """Write `record` as a new file; its name. `SpoolFull` past the bound, OSError if the disk refuses."""
        data = record.to_json()
        if self.count >= self.max_files or self.size + len(data) > self.max_bytes:
            held = "1 delivery" if self.count == 1 else f"{self.count} deliveries"
            raise SpoolFull(f"the spool holds {held} ({self.size / 1e6:.1f} MB), its maximum "
                            f"([server] spool_max_files = {self.max_files}, spool_max_mb = {self.max_bytes // 10**6})")
        self._last_ns = max(time.time_ns(), self._last_ns + 1)  # a clock stepped back must not reorder names
        name = f"{self._last_ns:020d}-{os.getpid()}-{next(self._sequence):09d}.json"
        self._writing[name] = len(data)
        try:
            await asyncio.to_thread(self._write, self.directory / name, data)
            self._files[name] = len(data)
        finally:
            del self._writing[name]
            self._changed()
        return name

    def _write(self, path: Path, data: bytes) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)  # webhook bodies: confidential notes too
        partial = path.with_suffix(".tmp")
        try:
            with open(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, path)
        except BaseException:
            with _suppress_missing():
                partial.unlink()
            raise
        folder = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(folder)  # the rename itself survives a power cut
        finally:
            os.close(folder)

    def read(self, path: Path) -> Record:
        return Record.from_json(path.read_bytes())

    def remove(self, path: Path) -> None:
        with _suppress_missing():
            path.unlink()
        self._files.pop(path.name, None)
        self._changed()

    def set_aside(self, path: Path, suffix: str) -> Path:
        """Rename a file the drainer cannot move (`.bad`, `.refused`), out of the way of the ones behind it."""
        target = path.with_suffix(suffix)
        with _suppress_missing():
            os.replace(path, target)
        self._files.pop(path.name, None)
        self._changed()
        return target

    def _changed(self) -> None:
        if self.gauge is not None:
            self.gauge.set(self.count)


def _suppress_missing() -> contextlib.suppress:
    return contextlib.suppress(FileNotFoundError)


class Drainer:
    """Moves spooled deliveries into the queue: at start, when woken (a delivery was spooled) and every
    `RETRY_SECONDS` while the database is unavailable. With `ready` (`serve` started without its database:
    `bot.database_wait`) it moves nothing before that is set: the schema is not known to be current until then."""

    def __init__(self, spool: Spool, storage: Storage, on_stored: Callable[[], None], *, timeout: float,
                 ready: asyncio.Event | None = None) -> None:
        self.spool, self.storage, self.on_stored, self.timeout = spool, storage, on_stored, timeout
        self.ready = ready
        self._woken = asyncio.Event()
        self._refusals: dict[str, int] = {}
        self._down = False

    def wake(self) -> None:
        self._woken.set()

    @property
    def waiting(self) -> bool:
        """Whether deliveries wait in the spool because the database did not take the last one tried."""
        return self._down and self.spool.count > 0

    async def run(self) -> None:
        """Until cancelled. A failure of the spool itself (its folder unreadable) is logged, once, and retried:
        it must not end the task that the files depend on."""
        started, failure = False, ""
        while True:
            self._woken.clear()
            try:
                if not started:
                    self.spool.discard_partial()
                    self.spool.pending()
                    started = True
                if self.ready is not None:
                    await self.ready.wait()
                drained = not self.spool.count or await self.drain()
            except OSError as exc:
                drained, cause = False, f"{type(exc).__name__}: {exc}"[:300]
                if cause != failure:
                    log.error(kv("spool cannot be read", folder=self.spool.directory, cause=cause,
                                 fix="make [server] spool_dir a folder the bot's user may read and write"))
                failure = cause
            if not drained:
                await asyncio.sleep(RETRY_SECONDS)
                continue
            failure = ""
            await self._woken.wait()

    async def drain(self) -> bool:
        """Move every spooled delivery, oldest first; False when the database failed (the rest wait)."""
        moved = 0
        while paths := self.spool.pending():
            for path in paths:
                if not await self._move(path):
                    return False
                moved += 1
        if moved or self._down:
            log.info(kv("spool drained", moved=moved))
        self._down = False
        return True

    async def _move(self, path: Path) -> bool:
        """Store one file and delete it; False when the database is unavailable (the file stays)."""
        try:
            record = self.spool.read(path)
        except FileNotFoundError:
            return True  # another process sharing the folder moved it
        except (OSError, ValueError, KeyError, TypeError) as exc:
            aside = self.spool.set_aside(path, ".bad")
            log.error(kv("spool file unreadable, set aside", file=aside, cause=f"{type(exc).__name__}: {exc}"[:300]))
            return True
        try:
            event_id, is_new = await within(record.store(self.storage.events), self.timeout,
                                            cancel=self.storage.cancellable)
        except Exception as exc:  # noqa: BLE001 - the database decides below whether it is down or refuses this one
            return await self._failed(path, exc)
        self.spool.remove(path)
        self._refusals.pop(path.name, None)
        log.info(kv("spooled delivery stored", status="queued" if is_new else "duplicate", event_id=event_id,
                    kind=record.kind, project_id=record.project_id, mr_iid=record.mr_iid, file=path.name))
        if is_new:
            self.on_stored()
        return True

    async def _failed(self, path: Path, exc: Exception) -> bool:
        """After a failed move: False while the database is unavailable; if it answers, the database refuses
        this delivery, which after `MAX_REFUSALS` tries is set aside (True) so the ones behind it move on."""
        cause = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        try:
            if not isinstance(exc, REFUSALS):  # a timeout, a lock, a lost connection: no verdict on the row
                raise exc
            await within(self.storage.ping(), PING_SECONDS, cancel=self.storage.cancellable)
        except Exception:  # noqa: BLE001 - unreachable, failing, hanging or locked: all mean wait
            if not self._down:
                log.warning(kv("spool: database unavailable, deliveries wait", files=self.spool.count,
                               retry_seconds=RETRY_SECONDS, cause=cause))
            self._down = True
            return False
        tries = self._refusals[path.name] = self._refusals.get(path.name, 0) + 1
        if tries < MAX_REFUSALS:
            log.warning(kv("spooled delivery not stored; trying again", file=path.name, tries=tries, cause=cause))
            return False
        aside = self.spool.set_aside(path, ".refused")
        self._refusals.pop(path.name, None)
        log.error(kv("spooled delivery refused by the database, set aside", file=aside, tries=tries, cause=cause,
                     fix="fix the cause, rename the file back to .json and restart the bot to replay it"))
        return True
