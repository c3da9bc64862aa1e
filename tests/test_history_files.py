"""bot.history_files: a malformed history record is refused naming its file and line, never read as something
else (a path "None", a reviewer with no name, a bot where the file says false)."""
from __future__ import annotations

import json

import pytest

from bot.history_files import HistoryFileError, read_changes

GOOD = {"id": "1", "time": 10, "author": "ann", "reviewers": ["bob"], "files": ["src/a.py"]}


def _write(tmp_path, *records, prefix=b""):
    path = tmp_path / "h.jsonl"
    path.write_bytes(prefix + "".join(json.dumps(r) + "\n" for r in records).encode())
    return path


@pytest.mark.parametrize("bad, says", [
    ({"files": [None]}, "'files' must be a list of paths"),
    ({"files": [["src", "a.py"]]}, "'files' must be a list of paths"),
    ({"files": ["src/a.py", ""]}, "'files' must be a list of paths"),
    ({"reviewers": [""]}, "'reviewers' must be a list of names"),
    ({"ackers": ["bob", "  "]}, "'ackers' must be a list of names"),
    ({"author": "  "}, "'author' must be a name"),
    ({"bot_author": "false"}, "'bot_author' must be true or false"),
])
def test_a_malformed_record_is_refused_naming_file_and_line(tmp_path, bad, says):
    path = _write(tmp_path, GOOD, {**GOOD, "id": "2", "time": 20, **bad})
    with pytest.raises(HistoryFileError, match=f"^{path}:2: record 2: {says}"):
        list(read_changes(path))


def test_a_record_given_twice_is_refused_naming_both_lines(tmp_path):
    """Two files concatenated, or one exported twice, counted every change twice without a word."""
    path = _write(tmp_path, GOOD, {**GOOD, "id": "2", "time": 20}, GOOD)
    with pytest.raises(HistoryFileError, match=f"^{path}:3: record 1 is already at line 1"):
        list(read_changes(path))


def test_records_without_an_id_are_not_duplicates(tmp_path):
    anonymous = {k: v for k, v in GOOD.items() if k != "id"}
    assert len(list(read_changes(_write(tmp_path, anonymous, anonymous)))) == 2


def test_a_byte_order_mark_is_read_past(tmp_path):
    """Editors and PowerShell on Windows start UTF-8 files with one; it was refused as a pretty-printed file."""
    assert [c.id for c in read_changes(_write(tmp_path, GOOD, prefix=b"\xef\xbb\xbf"))] == ["1"]
