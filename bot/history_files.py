"""Read review histories stored as JSON Lines (plain or gzip) into `graph.Change`s."""
from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Iterator

from graph.model import Change, RecordError, change_from_record

__all__ = ["read_changes", "HistoryFileError"]


class HistoryFileError(RuntimeError):
    """A history file is missing or not in the JSON Lines history schema."""


def _open(path: Path):
    """The file as text; `utf-8-sig` reads past the byte order mark Windows tools put before UTF-8 text."""
    with open(path, "rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8-sig")
    return open(path, "rt", encoding="utf-8-sig")


def read_changes(path: str | Path) -> Iterator[Change]:
    """Yield the changes of a `.jsonl` or `.jsonl.gz` file, in file order, skipping blank lines.

    Errors name the file and line so a bad record can be found and fixed.
    """
    path = Path(path)
    if not path.is_file():
        raise HistoryFileError(f"{path}: no such history file (expected JSON Lines, plain or .gz)")
    lineno = 0
    seen: dict[str, int] = {}  # id -> line: a file concatenated twice would count every change twice
    try:
        with _open(path) as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    change = change_from_record(rec)
                except json.JSONDecodeError as exc:  # most often a pretty-printed file, an object over many lines
                    raise HistoryFileError(f"{path}:{lineno}: {exc}; expected one JSON object per line (JSON "
                                           "Lines: a pretty-printed JSON file or an array is not read)") from exc
                except (RecordError, TypeError, ValueError) as exc:
                    raise HistoryFileError(f"{path}:{lineno}: {exc}") from exc
                if "id" in rec:
                    if change.id in seen:
                        raise HistoryFileError(f"{path}:{lineno}: record {change.id} is already at line "
                                               f"{seen[change.id]}; give each merged change once (two exports "
                                               "of one history concatenated?)")
                    seen[change.id] = lineno
                yield change
    except (OSError, EOFError, UnicodeDecodeError) as exc:  # unreadable, a damaged .gz, not UTF-8 text
        raise HistoryFileError(f"{path}: cannot read line {lineno + 1} ({exc}); expected JSON Lines "
                               "in UTF-8, plain or gzip-compressed") from exc
