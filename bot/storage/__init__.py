"""Durable storage: the event queue and everything the bot must remember across restarts.

Use `Storage(url)` (or `await Storage.open(url)` to also check the schema) and its stores; run
`await migrate(url)` (`reviewbot migrate`) to create or upgrade the schema.
"""
from bot.storage.comments import CommentRow
from bot.storage.db import StorageError, utcnow
from bot.storage.events import EventRow, backoff_delay, dedupe_key_for
from bot.storage.facade import Storage
from bot.storage.history import HistoryGone
from bot.storage.migrate import SchemaOutOfDate, migrate, schema_is_current
from bot.storage.models import ModelRow
from bot.storage.projects import ProjectRow
from bot.storage.snapshots import SnapshotRow
from bot.storage.suggestions import FEEDBACK_LABELS, FeedbackRow, SuggestionRow

__all__ = [
    "Storage", "StorageError", "HistoryGone", "SchemaOutOfDate", "migrate", "schema_is_current", "utcnow",
    "EventRow", "CommentRow", "ModelRow", "ProjectRow", "SnapshotRow", "SuggestionRow", "FeedbackRow",
    "FEEDBACK_LABELS",
    "backoff_delay", "dedupe_key_for",
]
