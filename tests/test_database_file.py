"""The SQLite database file deleted, moved away or replaced under a running `serve` (an operator's slip, a
backup restored in place): no webhook is answered 200 into a file that nothing names any more, and none is lost.
The app over real HTTP on a real SQLite file; the file is moved or deleted as a shell would."""
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


async def test_a_database_file_moved_away_is_not_written_on_and_is_used_again_once_back(aiohttp_client, sqlite_url,
                                                                                       tmp_path, caplog):
    """The connections open on a file moved away (or deleted) kept writing into it: 200, the events run, and a
    restart found none of them. Now the deliveries are spooled (202), the log names the cause and the fix, no
    empty file is created in its place, and once it is back they are moved into it, without a restart."""
    path = Path(sqlite_url.split("///", 1)[1])
    storage = Storage(sqlite_url)
    try:
        client = await aiohttp_client(make_app(spool_settings(tmp_path), storage, Metrics(), spool=True))
        assert (await post(client, 1, "open", "k1")).status == 200
        os.replace(path, tmp_path / "away.sqlite3")
        assert (await post(client, 2, "open", "k2")).status == 202
        assert "is gone (deleted or moved while the bot ran): put it back" in caplog.text
        assert not path.exists()
        assert (await client.get("/healthz")).status == 503
        os.replace(tmp_path / "away.sqlite3", path)

        async def moved() -> bool:
            return not spooled(tmp_path) and stored_keys(path) == ["idem:k1", "idem:k2"]

        await eventually(moved, 20)
        assert (await post(client, 3, "open", "k3")).status == 200
        assert stored_keys(path) == ["idem:k1", "idem:k2", "idem:k3"]
    finally:
        await close_after_given_up_calls(storage)


async def test_a_backup_moved_over_the_database_file_waits_for_a_restart(aiohttp_client, sqlite_url, tmp_path,
                                                                        caplog):
    """Replaced while the bot runs: what followed went to the file replaced, which nothing names any more, and
    opening the new one beside the old one's `-wal` and `-shm` got the process killed by SIGBUS. Now deliveries
    are spooled until a restart, which moves them into the new file."""
    path = Path(sqlite_url.split("///", 1)[1])
    storage = Storage(sqlite_url)
    try:
        client = await aiohttp_client(make_app(spool_settings(tmp_path), storage, Metrics(), spool=True))
        assert (await post(client, 1, "open", "k1")).status == 200
        backup(path, tmp_path / "backup.sqlite3")
        assert (await post(client, 2, "open", "k2")).status == 200
        os.replace(tmp_path / "backup.sqlite3", path)
        for suffix in ("-wal", "-shm"):  # the replaced file's: read with the backup, they would add k2 to it
            Path(f"{path}{suffix}").unlink()
        assert (await post(client, 3, "open", "k3")).status == 202
        assert "was replaced while the bot ran (a backup moved over it?): restart the bot" in caplog.text
        assert stored_keys(path) == ["idem:k1"]
    finally:
        await close_after_given_up_calls(storage)
    restarted = Storage(sqlite_url)
    try:
        await aiohttp_client(make_app(spool_settings(tmp_path), restarted, Metrics(), spool=True))

        async def moved() -> bool:
            return not spooled(tmp_path) and stored_keys(path) == ["idem:k1", "idem:k3"]

        await eventually(moved, 20)
    finally:
        await close_after_given_up_calls(restarted)
