"""Who added commits to a merge request: where the project has "Prevent approvals by users who add commits" on,
GitLab does not accept their approval, so they cannot give a CODEOWNERS approval the bot looks for.

GitLab's rule (`ApprovalState.filter_committers`, `CommitCollection#committers`): the users owning the
`committer_email` of one of the merge request's commits, merge commits included, by any of their confirmed
addresses or by their private commit address (`<id>-<username>@users.noreply.<host>`, read only under GitLab's own
host: commits brought over from another instance carry its addresses, whose ids name others here). Who only wrote a
commit (`author_email`) is none of them: after a rebase the one who rebased is the committer. (GitLab also
takes the author of a commit it signed itself, one made in its web UI with signing on; the API's commit list
does not say which those are, so the bot does not.)

The bot sees only what its token may see: a private commit address names its user's id, a public address is
found with `GET /users?search=` (any address with an admin token). An address it cannot match is logged and
its committer still counted as an approver, as before the bot read committers.
"""
from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Mapping

from bot.gitlab.errors import GitLabError
from bot.gitlab.models import Member
from bot.logfmt import kv
from bot.owners import users_showing

if TYPE_CHECKING:
    from bot.lookups import Lookups

__all__ = ["read_committers", "commit_email_user_id", "MAX_ADDRESSES"]

log = logging.getLogger("bot.committers")
MAX_ADDRESSES = 50  # committer addresses looked up for one merge request (each may cost a users search)
_PRIVATE = re.compile(r"^(\d+)-[^@]+@(users\.noreply\..+)$", re.IGNORECASE)


def commit_email_user_id(address: str, host: str | None) -> int | None:
    """The user id in a private commit address of the GitLab at `host`, else None. GitLab reads the id only under
    its own commit e-mail host (`Gitlab::PrivateCommitEmail`): `42-x@users.noreply.gitlab.com` in a commit brought
    over from gitlab.com is no user 42 of another instance.

    >>> commit_email_user_id("42-alice@users.noreply.gitlab.example.com", "gitlab.example.com")
    42
    >>> commit_email_user_id("42-al@users.noreply.gitlab.com", "gitlab.example.com"), commit_email_user_id("a@b", "b")
    (None, None)
    """
    found = _PRIVATE.match(address)
    if found is None or host is None or found.group(2).casefold() != f"users.noreply.{host}".casefold():
        return None
    return int(found.group(1))


class _CommitsUnreadable(Exception):
    """GitLab failed on the merge request's commits this time (a 5xx): nothing is kept, asked again next time."""


async def read_committers(look: Lookups, project_id: int, iid: int, members: Mapping[str, Member],
                          host: str | None, sha: str | None = None) -> frozenset[str]:
    """The usernames (casefolded) of the people who made one of the MR's commits, as far as the bot can tell;
    `host` is GitLab's own (its web address's), which private commit addresses name.

    Kept a minute for the MR's head `sha`, like the other lookups: every suggestion asks, and one comment's
    `why` commands (20, from anyone: `why` needs no access) made the bot read every page of the commits 20
    times. GitLab failing on the commits (a 5xx, an answer no retry changes) leaves them unknown this time
    (logged, not kept); no answer, 401 and 429 fail the event, to be retried."""
    try:
        return await look.recent.get(("committers", project_id, iid, sha),
                                     lambda: _read_committers(look, project_id, iid, members, host))
    except _CommitsUnreadable:
        return frozenset()


async def _read_committers(look: Lookups, project_id: int, iid: int, members: Mapping[str, Member],
                           host: str | None) -> frozenset[str]:
    try:
        commits = await look.client.mr_commits(project_id, iid)
    except GitLabError as exc:
        if exc.general:
            raise
        log.warning(kv("merge request commits not readable this time: committers counted as approvers",
                       project_id=project_id, mr_iid=iid, status=exc.status, error=str(exc)))
        raise _CommitsUnreadable from exc
    addresses = list(dict.fromkeys(c.committer_email.casefold() for c in commits if c.committer_email))
    if len(addresses) > MAX_ADDRESSES:
        log.info(kv("committer addresses capped", project_id=project_id, mr_iid=iid, addresses=len(addresses),
                    looked_up=MAX_ADDRESSES))
    by_id = {m.id: m.username for m in members.values()}
    found: set[str] = set()
    for address in addresses[:MAX_ADDRESSES]:
        found.update(name.casefold() for name in await _owners_of(look, address, by_id, host))
    return frozenset(found)


async def _owners_of(look: Lookups, address: str, by_id: Mapping[int, str], host: str | None) -> list[str]:
    """The usernames owning a committer address: the member a private commit address names (none for another
    instance's: no search would find it), else the users a search finds showing it (cached with the CODEOWNERS
    e-mail lookups)."""
    if _PRIVATE.match(address):
        uid = commit_email_user_id(address, host)
        return [by_id[uid]] if uid in by_id else []
    try:
        users = await users_showing(look.client, look.recent, address)
    except GitLabError as exc:  # GitLab rate-limits the Users API: this committer stays unknown this time
        log.info(kv("committer address not looked up", status=exc.status))
        return []
    names = [user.username for user in users]
    if not names:
        log.debug("a committer address matches no user the bot can see (only public addresses can be searched)")
    return names
