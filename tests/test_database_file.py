"""The SQLite database file deleted or replaced under a running `serve` (an operator's slip, a backup restored
in place): no webhook is answered 200 into a file that nothing names any more. The app over real HTTP on a real
SQLite file; the file is deleted or moved over as a shell would."""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from bot.metrics import Metrics
from bot.storage import Storage
from bot.web import make_app
from tests.test_spool import close_after_given_up_calls, eventually, post, spool_settings, spooled


def stored_keys(path: Path) -> list[str]:
    """The dedupe keys in the file at `path`, read afresh (what a restarted bot would find)."""
    db = sqlite3.connect(path)
    try:
        return [key for (key,) in db.execute("SELECT dedupe_key FROM events ORDER BY id")]
    finally:
        db.close()


def backup(path: Path, to: Path) -> None:
    """`sqlite3 reviewbot.sqlite3 ".backup to"`, as the README's upgrade steps say."""
    source, target = sqlite3.connect(path), sqlite3.connect(to)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()


async def test_a_deleted_database_file_is_not_written_on_and_its_restore_is_used(aiohttp_client, sqlite_url,
                                                                               tmp_path, caplog):
    """Deleted: the connections open on it kept writing into the unnamed file (200, events run, all gone at the
    next start). Now the deliveries are spooled (202), the log says the file is gone and how to fix it, and once
    a backup is put back they are moved into it, without a restart."""
    path = Path(sqlite_url.split("///", 1)[1])
    storage = Storage(sqlite_url)
    try:
        client = await aiohttp_client(make_app(spool_settings(tmp_path), storage, Metrics(), spool=True))
        assert (await post(client, 1, "open", "k1")).status == 200
        backup(path, tmp_path / "backup.sqlite3")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        assert (await post(client, 2, "open", "k2")).status == 202
        assert "is gone (deleted or moved while the bot ran): put it back" in caplog.text
        assert not path.exists()  # not created again, empty
        os.replace(tmp_path / "backup.sqlite3", path)

        async def moved() -> bool:
            return not spooled(tmp_path) and stored_keys(path) == ["idem:k1", "idem:k2"]

        await eventually(moved, 20)
        assert (await post(client, 3, "open", "k3")).status == 200
        assert stored_keys(path) == ["idem:k1", "idem:k2", "idem:k3"]
    finally:
        await close_after_given_up_calls(storage)


async def test_a_backup_moved_over_the_database_file_is_the_one_written(aiohttp_client, sqlite_url, tmp_path):
    """Replaced (a backup restored in place while the bot runs): what follows goes to the file now at the path,
    not to the one it replaced, which nothing names any more."""
    path = Path(sqlite_url.split("///", 1)[1])
    storage = Storage(sqlite_url)
    try:
        client = await aiohttp_client(make_app(spool_settings(tmp_path), storage, Metrics(), spool=True))
        assert (await post(client, 1, "open", "k1")).status == 200
        backup(path, tmp_path / "backup.sqlite3")
        assert (await post(client, 2, "open", "k2")).status == 200
        os.replace(tmp_path / "backup.sqlite3", path)
        for suffix in ("-wal", "-shm"):  # the old file's: a restore leaves none beside the backup
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        assert (await post(client, 3, "open", "k3")).status == 200
        assert stored_keys(path) == ["idem:k1", "idem:k3"]
        assert [e.dedupe_key for e in await storage.events.list_events()] == ["idem:k3", "idem:k1"]
    finally:
        await close_after_given_up_calls(storage)
