"""The reviewer recommender: pure functions and estimators over plain data, no I/O.

Nothing in this package imports the web framework, the GitLab clients, the database or `bot`.
"""
from graph.model import Change, RecordError, Suggestion, change_from_record

__all__ = ["Change", "RecordError", "Suggestion", "change_from_record"]
