"""The dashboard's HTML: the page shell from `bot/templates/dashboard.html`, the tables built here.

Why by hand and escaped at every value: usernames, project paths and model versions come from GitLab and
the database, so each goes through `html.escape` exactly once, here; the page's script only draws the chart,
from JSON, through `textContent`. There is no templating engine to configure and no inline script or style,
so the strict Content-Security-Policy the web module sends holds.
"""
from __future__ import annotations

import re
from datetime import datetime
from functools import cache
from html import escape
from importlib import resources
from string import Template
from typing import Iterable, Sequence
from urllib.parse import quote, urlencode

from bot.comment import count_of
from bot.dashboard_stats import LoadRow, MrRow, ProjectStats

__all__ = ["page", "overview_body", "project_body", "message_body", "signin_form", "gitlab_link", "asset", "ASSETS",
           "SECURITY_HEADERS", "STRICT_TRANSPORT"]

ASSETS = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # not "no-referrer": a browser would then send `Origin: null` on the
    # dashboard's own form posts, which `same_origin` must refuse
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
# HSTS, when the dashboard's address is https (`bot.dashboard.strict_transport`): a year (GitLab's own nginx
# sends two), this host only: includeSubDomains or preload would bind every other site of the domain too
STRICT_TRANSPORT = "max-age=31536000"


@cache
def _template_text(name: str) -> str:
    return resources.files("bot").joinpath("templates", name).read_text(encoding="utf-8")


def asset(name: str) -> str:
    """The text of a static file of the dashboard (one of `ASSETS`)."""
    if name not in ASSETS:
        raise KeyError(f"no dashboard asset {name!r}: use one of {sorted(ASSETS)}")
    return _template_text(name)


def page(title: str, body: str, *, crumb: str = "", now: datetime | None = None, signed_in: bool = False,
         who: str | None = None) -> str:
    """A whole page: `title` and `crumb` are plain text (escaped here), `body` is HTML built by this module;
    `signed_in` pages carry a sign-out button, with the GitLab username `who` beside it when signed in so."""
    footer = "Read-only view of what the bot stored; times in UTC."
    if now is not None:
        footer = f"Generated {now:%Y-%m-%d %H:%M} UTC. " + footer
    return Template(_template_text("dashboard.html")).substitute(
        title=escape(title), crumb=escape(crumb), body=body, footer=escape(footer),
        account=_account(who) if signed_in else "")


def _account(who: str | None) -> str:
    name = f'<span class="person">@{escape(who)}</span> ' if who else ""
    return f'<form class="signout" method="post" action="/signout">{name}<button type="submit">Sign out</button></form>'


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f}%"


def _people(names: Iterable[str]) -> str:
    shown = [f'<span class="person">{escape(n)}</span>' for n in names]
    return ", ".join(shown) or '<span class="muted">–</span>'


def _row(cells: Sequence[str], *, nums: frozenset[int] = frozenset()) -> str:
    tds = "".join(f'<td class="num">{c}</td>' if i in nums else f"<td>{c}</td>" for i, c in enumerate(cells))
    return f"<tr>{tds}</tr>"


def _table(head: Sequence[str], rows: Sequence[str], *, nums: frozenset[int] = frozenset(), empty: str) -> str:
    if not rows:
        return f'<p class="muted">{escape(empty)}</p>'
    ths = "".join(f'<th class="num">{escape(h)}</th>' if i in nums else f"<th>{escape(h)}</th>"
                  for i, h in enumerate(head))
    return f"<table><thead><tr>{ths}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def overview_body(projects: Sequence[ProjectStats]) -> str:
    """The list of projects with their headline numbers, each linking to its page. Its text columns keep a
    width (`words`): on a phone they were squeezed to one word a line, five lines a project."""
    nums = frozenset({1, 2, 3, 4, 5})
    rows = [_row([
        f'<span class="words path"><a href="/projects/{s.project_id}">{escape(s.path or f"project {s.project_id}")}</a>'
        "</span>", str(s.suggested), _pct(s.acceptance), str(s.pending), _pct(s.top1), _pct(s.top3),
        f'<span class="words">{escape(s.history.label)}</span>', f'<span class="words">{escape(s.model_label)}</span>',
    ], nums=nums) for s in projects]
    table = _table(["Project", "MRs suggested", "Accepted", "Awaiting the team", "Top-1 hit", "Top-3 hit", "History",
                    "Model"], rows, nums=nums,
                   empty="No project yet: a project appears here after the bot receives its first webhook event.")
    return (f"<h1>Projects</h1><section>{table}<p class=\"hint\">Over the last 12 weeks. Accepted: share of the "
            "merge requests the team responded to where someone the bot suggested became a reviewer or approved. "
            "Awaiting the team: open merge requests nobody has responded to yet, left out of that share. "
            "History: merged merge requests the bot holds, and whether the import of the older ones finished."
            "</p></section>")


def _accepted_note(s: ProjectStats) -> str:
    """"3 of 6 merge requests the team responded to; 1 awaiting the team" (or that there is none yet)."""
    if not s.suggested:
        return "no merge request suggested on in the last 12 weeks"
    if s.suggested == s.pending:
        return f"{s.pending} awaiting the team, none responded to yet"
    note = f"{s.accepted} of {s.suggested - s.pending} merge requests the team responded to"
    return note + (f"; {s.pending} awaiting the team" if s.pending else "")


def _model_note(s: ProjectStats) -> str:
    """The active model's score in words: Top-1 on the most recent merged MRs held out of its training (at
    most 200: `graph.retrain` holds out fewer when the history is short or the last model is recent)."""
    score = ("no score yet" if s.model.backtest_score is None else
             f"Top-1 on the last merged MRs (up to 200, kept out of its training): {_pct(s.model.backtest_score)}")
    trained = f", trained {s.model.trained_at:%Y-%m-%d}" if s.model.trained_at else ""
    return f"{score}{trained}; {_serving_words(s.model.serving)}"


_SERVING = re.compile(r"(?P<name>[^@/]+)@(?P<changes>\d+)(?:/(?P<model>.+))?")


def _serving_words(serving: str | None) -> str:
    """The latest suggestion's `model_version` in words, the raw version kept for an operator to grep: a lead
    read "default@300/prior" as noise. `{recommender}@{merged MRs in its graph}[/{model or "prior"}]`
    (`bot.suggesting`), else as stored.

    >>> _serving_words("default@1200/v3")
    'latest suggestion ranked from 1,200 merged MRs with model v3 (default@1200/v3)'
    >>> _serving_words("default@12/prior"), _serving_words("v4")
    ('latest suggestion ranked from 12 merged MRs with the prior model (default@12/prior)', 'latest suggestion by v4')
    """
    if not serving:
        return "no suggestion yet"
    parts = _SERVING.fullmatch(serving)
    if not parts:
        return f"latest suggestion by {serving}"
    model = parts["model"]
    with_model = "" if not model else " with the prior model" if model == "prior" else f" with model {model}"
    return f"latest suggestion ranked from {int(parts['changes']):,} merged MRs{with_model} ({serving})"


def _hit_note(s: ProjectStats, what: str) -> str:
    none = "no merged merge request with a suggestion yet"
    return f"{what} among the reviewers of {s.judged} merged MRs" if s.judged else none


def _cards(s: ProjectStats) -> str:
    history = f"{s.history.changes:,} merged MRs" if s.history.changes else "none"
    cards = [
        ("Accepted (12 weeks)", _pct(s.acceptance), _accepted_note(s), ""),
        ("Top-1 hit", _pct(s.top1), _hit_note(s, "first suggestion"), ""),
        ("Top-3 hit", _pct(s.top3), _hit_note(s, "one of the first three"), ""),
        ("History", history, s.history.state, " small"),
        ("Model", s.model_label, _model_note(s), " small"),
    ]
    return '<div class="cards">' + "".join(
        f'<div><div class="label">{escape(label)}</div><div class="value{extra}" id="card-{i}">{escape(value)}'
        f'</div><div class="note">{escape(note)}</div></div>'
        for i, (label, value, note, extra) in enumerate(cards)) + "</div>"


def _chart(s: ProjectStats) -> str:
    """The weekly chart (drawn by the page's script), or a line saying there is nothing to draw, also while
    every merge request awaits the team: twelve empty weeks labelled 0/0 read as a broken chart. Without
    JavaScript the numbers' table shows open (the script folds it once the chart is drawn), not a "Drawing
    the chart…" that never ends."""
    if s.suggested == s.pending:
        why = ("the bot has suggested no one on this project in the last 12 weeks" if not s.suggested else
               f"{count_of(s.pending, 'merge request')} awaiting the team, none responded to yet")
        return (f'<section><h2>Acceptance rate per week</h2><p class="muted">Nothing to chart yet: {why}.</p>'
                "</section>")
    weeks = [_row([f"{w.week:%Y-%m-%d}", str(w.suggested), str(w.pending), str(w.accepted), _pct(w.rate)],
                  nums=frozenset({1, 2, 3, 4})) for w in s.weeks]
    table = _table(["Week of", "MRs suggested", "Awaiting the team", "Accepted", "Rate"], weeks,
                   nums=frozenset({1, 2, 3, 4}), empty="")
    return (f'<section><h2>Acceptance rate per week</h2><div class="chart" id="acceptance-chart" '
            f'data-stats="/api/projects/{s.project_id}/stats"><noscript><p class="muted">The chart needs '
            "JavaScript: the numbers are in the table below.</p></noscript></div>"
            '<p class="hint" id="acceptance-legend">Each bar: of the merge requests the bot first suggested '
            "reviewers for in that week (weeks start on Monday) and the team responded to, the share where someone "
            "it suggested became a reviewer or approved. Under each week: accepted / responded to.</p>"
            f'<details id="acceptance-numbers" open><summary>The numbers</summary>{table}</details></section>')


def _mr_link(gitlab_url: str, path: str | None, iid: int) -> str:
    if not path:
        return f"!{iid}"
    href = f"{gitlab_url}/{quote(path, safe='/')}/-/merge_requests/{iid}"
    return f'<a href="{escape(href)}" rel="noreferrer">!{iid}</a>'


def _mr_row(r: MrRow, gitlab_url: str, path: str | None) -> str:
    def mark(hit: bool) -> str:
        return '<span class="hit">yes</span>' if hit else '<span class="miss">no</span>'

    return _row([
        _mr_link(gitlab_url, path, r.mr_iid), f"{r.suggested_at:%Y-%m-%d}", _people([r.top1] if r.top1 else []),
        _people(r.top3), _people(r.reviewers), "–" if r.top1_hit is None else mark(r.top1_hit),
        "–" if r.top3_hit is None else mark(r.top3_hit),
        '<span class="tag">merged</span>' if r.merged else "closed" if r.closed else "open",
    ])


def _load_row(r: LoadRow, busiest: int) -> str:
    """A person's row of the review load table; the meter's tooltip says the count in words.

    >>> 'title="1 open review"' in _load_row(LoadRow(person="ada", open=1, suggested=0, top1=0, reviewing=0,
    ...                                              approved=0), 3)
    True
    """
    said = count_of(r.open, "open review")
    meter = f'<meter min="0" max="{busiest}" value="{r.open}" title="{said}"></meter>'
    return _row([f'<span class="person">{escape(r.person)}</span>', f'<span class="load">{r.open} {meter}</span>',
                 str(r.suggested), str(r.top1), str(r.reviewing), str(r.approved)], nums=frozenset({2, 3, 4, 5}))


TERM_NAMES = {"spreading": "Load spreading", "streak": "Turned down in a row (pushed down)",
              "duty": "Taking other open MRs now (lifted)"}


def _terms(s: ProjectStats) -> str:
    rows = [_row([escape(TERM_NAMES.get(t.term, t.term)), str(t.changed), str(t.took_first), str(t.took_moved_down)],
                 nums=frozenset({1, 2, 3})) for t in s.terms if t.changed]
    table = _table(["Term", "Chose the first suggestion", "Team took that person", "Team took the one moved down"],
                   rows, nums=frozenset({1, 2, 3}),
                   empty="No suggestion of the last 12 weeks had its first place chosen by a hand-set term.")
    return ('<section id="terms"><h2>Where a hand-set term chose the first suggestion</h2>'
            f'{table}<p class="hint">The bot\'s latest suggestion on each merge request. Each term gives way '
            "(down to a tenth) while the team takes the one it moved down more often than its choice.</p></section>")


def _left_out(shown: int, total: int, what: tuple[str, str]) -> str:
    """"The 30 busiest of 56 people." (after a space) when a table shows fewer rows than there are, else nothing."""
    return f" The {shown} {what[0]} of {total} {what[1]}." if total > shown else ""


def project_body(s: ProjectStats, *, gitlab_url: str) -> str:
    """The project page: headline cards, the chart, suggestions against reviewers, review load."""
    mrs = [_mr_row(r, gitlab_url, s.path) for r in s.recent]
    busiest = max((r.open for r in s.load), default=0) or 1
    load = [_load_row(r, busiest) for r in s.load]
    mr_table = _table(["MR", "Suggested", "Top-1", "Top-3", "Actual reviewers", "Top-1 hit", "Top-3 hit", "State"],
                      mrs, empty="The bot has not suggested anyone on this project in the last 12 weeks.")
    load_table = _table(["Person", "Open reviews", "Suggested", "Suggested first", "Became reviewer", "Approved"],
                        load, nums=frozenset({2, 3, 4, 5}), empty="No reviews recorded in the last 30 days.")
    title = escape(s.path or f"project {s.project_id}")
    return (f"<h1>{title} <small>#{s.project_id}</small></h1>{_cards(s)}{_chart(s)}"
            f"<section><h2>Suggestions against actual reviewers</h2>{mr_table}<p class=\"hint\">The bot's latest "
            "suggestion on each merge request (newest first); actual reviewers are the final ones once merged."
            f"{_left_out(len(s.recent), s.recent_total, ('newest', 'merge requests'))}</p></section>"
            f"<section><h2>Review load per person</h2>{load_table}<p class=\"hint\">Open reviews: reviewer on a "
            "merge request neither merged nor closed, active in the last 12 weeks. The other columns count merge "
            "requests in the last 30 days."
            f"{_left_out(len(s.load), s.load_total, ('busiest', 'people'))}</p></section>{_terms(s)}")


def message_body(title: str, text: str, *, html_hint: str = "") -> str:
    """A short page with one message (sign-in needed, not found); `html_hint` is trusted HTML from this code."""
    return f'<div class="signin"><section><h1>{escape(title)}</h1><p>{escape(text)}</p>{html_hint}</section></div>'


def gitlab_link(next_path: str) -> str:
    """The "Sign in with GitLab" link: a plain GET (the CSP's form-action would stop a form redirected to
    GitLab), carrying where to come back to."""
    href = "/auth/gitlab?" + urlencode({"next": next_path})
    return f'<p><a class="gitlab-signin" href="{escape(href)}">Sign in with GitLab</a></p>'


def signin_form(next_path: str) -> str:
    """A sign-in form that POSTs the token (so it stays out of addresses and proxy logs), then goes to `next_path`."""
    return ('<form class="signin-form" method="post" action="/signin">'
            f'<input type="hidden" name="next" value="{escape(next_path)}">'
            '<label for="token">Dashboard token</label>'
            '<input id="token" type="password" name="token" autocomplete="current-password" required>'
            '<button type="submit">Sign in</button></form>')
