"""Counts said in words: "1 open review", "2 open reviews".

A module of its own, importing nothing, so that the command line and the GitLab client say their counts with
it without loading the recommender (`graph.reasons`, which says its own with it too, needs numpy and networkx).
"""
from __future__ import annotations

__all__ = ["count_of"]


def count_of(n: int, word: str) -> str:
    """`n` `word`s, singular for one (the comment, its notes, the dashboard and the commands say counts with it).

    >>> count_of(1, "open review"), count_of(2, "open review"), count_of(0, "done event")
    ('1 open review', '2 open reviews', '0 done events')
    """
    return f"{n} {word}{'s' if n != 1 else ''}"
