"""A feature's value in a developer's units, for `/reviewers why`: "3 days ago", "42%", "12 changes".

The ranker's columns are shares, log-counts and log-days; a contribution alone ("+0.99") does not say
whether the person reviewed these paths recently or long ago. `compare` turns one column into the person's
value and the other candidates' average in plain units, so each line of the explanation reads as
"last touched these paths: today, the others 5 months ago on average: raises the score by 0.99".
"""
from __future__ import annotations

import math

__all__ = ["plain", "compare", "span", "amount", "about", "put_first", "rejected", "on_duty", "UNITS"]

NEVER_LOG_DAYS = 11.0  # log(1 + days) beyond this (about 160 years) reads as "never"

# column -> how its values read: share (0..1 as %), ago (log1p days, a time in the past), span (log1p days,
# a duration), count (log1p of a count), rel (a share of the busiest person's figure), yes (0/1), raw
UNITS = {
    "file_review_share": "share", "file_reviewed": "share", "file_author_share": "share",
    "dir1_review_share": "share", "dir2_review_share": "share", "dir3_review_share": "share",
    "dir1_author_share": "share", "author_familiarity": "share",
    "author_reviews": "count", "reciprocity": "count",
    "activity": "rel", "recent_activity": "rel",
    "days_since_review": "ago", "days_since_seen": "ago", "days_since_here": "ago",
    "tenure": "span", "is_author": "yes", "n_files": "count",
    "fb_acceptance": "share", "fb_rejections": "count", "fb_streak": "count", "fb_author_rejections": "count",
    "fb_recent_reviews": "count", "fb_recent_author": "count", "fb_open_reviews": "count",
    "fb_open_author": "count", "fb_open_dirs": "count", "fb_open_files": "count",
    "graph_score": "raw",
}


def span(days: float) -> str:
    """A duration in the largest fitting unit, rounded down: "1 day", "59 days", "2 months", "3 years".

    >>> span(1.9), span(59), span(61), span(800)
    ('1 day', '59 days', '2 months', '2 years')
    """
    n = int(days)
    if n < 60:
        return f"{n} day{'s' if n != 1 else ''}"
    if n < 730:
        return f"{n // 30} months"
    return f"{n // 365} years"


def amount(n: float) -> str:
    """A count, or an average of counts: whole when it is about whole (or large), else to one decimal, so an
    average of a fraction of one does not read as none.

    >>> amount(3.02), amount(0.25), amount(12.4), amount(0.01)
    ('3', '0.2', '12', '0')
    """
    return f"{n:.0f}" if n >= 9.5 or abs(n - round(n)) < 0.05 else f"{n:.1f}"


def about(n: float, thing: str) -> str:
    """A count that fades with time (or an average of such counts) in words: rounded whole, "about" unless it
    is whole already, and "hardly any" for what faded below a half, which a bare "0.2" does not say.

    >>> about(0.0, "review"), about(0.2, "review"), about(1.02, "review"), about(17.3, "review")
    ('no reviews', 'hardly any reviews', '1 review', 'about 17 reviews')

    Halves round up (Python's `round` takes them to the even neighbour: "about 0 reviews" for a half):

    >>> about(0.5, "review"), about(2.5, "review")
    ('about 1 review', 'about 3 reviews')
    """
    if n < 0.05:
        return f"no {thing}s"
    if n < 0.5:
        return f"hardly any {thing}s"
    whole = math.floor(n + 0.5)
    return f"{'' if abs(n - whole) < 0.05 else 'about '}{whole} {thing}{'s' if whole != 1 else ''}"


def put_first(first: float, reviewed: float) -> str:
    """The load spreading's two counts (first places the bot gave, reviews really done; recent ones weigh
    more) as the comparison they are.

    >>> put_first(25.2, 18.0), put_first(0.1, 4.7)
    ('put first on about 25 merge requests lately, did 18 reviews', \
'put first on hardly any merge requests lately, did about 5 reviews')
    """
    return f"put first on {about(first, 'merge request')} lately, did {about(reviewed, 'review')}"


def rejected(streak: float) -> str:
    """The rejection streak's penalty figure in words: the rejections in a row that count now, past the grace
    and grown with the streak's length (`graph.terms`), so "counted", not a raw count of rejections.

    >>> rejected(2.8), rejected(0.0), rejected(1.0)
    ('about 3 rejections in a row counted', 'no rejections in a row counted', '1 rejection in a row counted')
    """
    return f"{about(streak, 'rejection')} in a row counted"


def on_duty(reviews: float) -> str:
    """The on-duty lift's figure in words: the other open merge requests the person took (recent ones weigh
    more).

    >>> on_duty(2.2), on_duty(1.0), on_duty(0.1)
    ('reviewing about 2 open merge requests', 'reviewing 1 open merge request', \
'reviewing hardly any open merge requests')
    """
    return f"reviewing {about(reviews, 'open merge request')}"


def plain(name: str, value: float) -> str:
    """One column's value in plain units.

    >>> plain("file_review_share", 0.425), plain("days_since_here", math.log1p(3)), plain("tenure", 7.0)
    ('42%', '3 days ago', '3 years')
    >>> plain("author_reviews", math.log1p(12)), plain("days_since_review", 12.0), plain("fb_acceptance", 0.5)
    ('12', 'never', '50%')
    """
    unit = UNITS.get(name, "raw")
    if unit == "share":
        return f"{100 * value:.0f}%"
    if unit == "rel":
        return f"{100 * value:.0f}% of the busiest"
    if unit == "ago":
        if value >= NEVER_LOG_DAYS:
            return "never"
        days = math.expm1(max(0.0, value))
        return "today" if days < 1 else f"{span(days)} ago"
    if unit == "span":
        days = math.expm1(max(0.0, value))
        return "under a day" if days < 1 else span(days)
    if unit == "count":
        return amount(math.expm1(max(0.0, value)))
    if unit == "yes":
        return "yes" if value >= 0.5 else "no"
    return f"{value:.2f}"


def compare(name: str, mine: float, others: float) -> tuple[str, str]:
    """(the person's value, the other candidates' average) of one column, in plain units.

    >>> compare("days_since_here", 0.0, math.log1p(150))
    ('today', '5 months ago')
    """
    return plain(name, mine), plain(name, others)
