"""CODEOWNERS owners that need GitLab to say who they are: `@group`, `@group/subgroup` and e-mail addresses.

Why a module of its own: `graph.codeowners` is pure and knows only what the file says. Whether `@frontend`
is a user or a group, who is in a group and which account an address belongs to takes API calls; this module
makes them (through the engine's short-lived `Recent` cache) and returns plain usernames. GitLab's rules:

* A group owner stands for the group's direct members (`GET /groups/:id/members`; members inherited from
  its ancestor groups are not code owners), with at least Developer access in the group. The group counts
  only when it is the project's group or one of its ancestors, or is invited to the project
  (`shared_with_groups`); GitLab's Code Owners ignore any other group. Nested subgroups are named by full
  path: `@acme/web/ui`.
* A role owner (`@@developer`, `@@maintainer`, `@@owner`) stands for the project's *direct* members with
  exactly that role (`GET /projects/:id/members`): roles do not include higher roles, and members who have
  their access through a group are not code owners by role.
* `@name` is a user when a project member has that username, else a top-level group.
* An e-mail owner is the user with that verified address. Over the API a regular token finds only public
  e-mails (`GET /users?search=`; an admin token finds any), so an address nobody made public is skipped.

Whatever cannot be resolved (unknown or unrelated group, no user with that address, a GitLab error after the
client's retries) is skipped with a log line naming the entry: it never fails the event. An owner that stands
for nobody maps to no usernames; one GitLab did not answer for is left out, so callers can tell "nobody can
approve" (GitLab then approves the rule automatically) from "the bot does not know this time". Callers keep
only the usernames who are project members, so the eligibility rules (access, blocked, Busy, author…) still
apply.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Collection, Iterable, Mapping, TypeVar

from bot.gitlab.client import GitLabClient
from bot.gitlab.errors import GitLabError
from bot.gitlab.models import DEVELOPER, Group, Project, User
from bot.logfmt import kv
from graph.codeowners import CodeOwners, Owner

if TYPE_CHECKING:
    from bot.lookups import Recent

__all__ = ["OwnerUsers", "owners_to_resolve", "resolve_owners", "group_linked", "email_matches", "users_showing"]

log = logging.getLogger("bot.owners")
MAX_RESOLVED = 200  # owners one MR's CODEOWNERS sections may send the bot to look up (GitLab checks 200 too)
OwnerUsers = Mapping[Owner, tuple[str, ...]]
T = TypeVar("T")


def owners_to_resolve(codeowners: CodeOwners | None, files: Iterable[str], members: Collection[str]) -> list[Owner]:
    """The owners of the sections `files` match that need an API call: groups, e-mails, roles, and `@name`s
    that are no project member's username (compared case-insensitively)."""
    if codeowners is None:
        return []
    usernames = {name.casefold() for name in members}
    found: dict[Owner, None] = {}
    for section in codeowners.owners_for_files(files).values():
        for owner in section.owners:
            unknown_name = owner.kind == "name" and owner.name.casefold() not in usernames
            if owner.kind in ("group", "email", "role") or unknown_name:
                found[owner] = None
    if len(found) > MAX_RESOLVED:  # each is an API call: a file naming thousands must not cost thousands
        log.info(kv("CODEOWNERS owners needing a lookup capped", owners=len(found), looked_up=MAX_RESOLVED))
    return list(found)[:MAX_RESOLVED]


def group_linked(project: Project | None, group: Group) -> bool:
    """Whether `group` may own code in `project`: the project's group or an ancestor, or invited to it.
    An unknown project (its lookup failed) does not rule the group out."""
    if project is None:
        return True
    if any(shared.group_id == group.id for shared in project.shared_with_groups):
        return True
    home = (project.namespace.full_path if project.namespace else project.path_with_namespace.rsplit("/", 1)[0])
    home, path = home.casefold(), group.full_path.casefold()
    return home == path or home.startswith(path + "/")


def email_matches(users: Iterable[User], address: str) -> list[User]:
    """The users a search for `address` found who own it: those showing it (`public_email`, or `email` to an
    admin); when no hit shows any address (a regular token), a single hit is GitLab's exact public-email match."""
    hits = list(users)
    folded = address.casefold()

    def emails(user: User) -> set[str]:
        extra = user.model_extra or {}
        return {str(extra[key]).casefold() for key in ("public_email", "email") if extra.get(key)}

    exact = [user for user in hits if folded in emails(user)]
    if exact or any(emails(user) for user in hits):
        return exact
    return hits if len(hits) == 1 else []


class _Resolver:
    """One MR's resolution: the client, the cache, the project (for group links)."""

    def __init__(self, client: GitLabClient, recent: Recent, project_id: int) -> None:
        self.client, self.recent, self.project_id = client, recent, project_id

    async def cached(self, key: tuple[Any, ...], fetch: Callable[[], Awaitable[T]]) -> T:
        return await self.recent.get(("owners", *key), fetch)

    async def project(self) -> Project | None:
        try:
            return await self.cached(("project", self.project_id), lambda: self.client.get_project(self.project_id))
        except GitLabError as exc:
            log.warning(kv("CODEOWNERS groups checked without the project's group links", project_id=self.project_id,
                           error=str(exc)))
            return None

    async def group(self, owner: Owner, project: Project | None) -> tuple[str, ...]:
        group = await self.cached(("group", owner.name.casefold()), lambda: self.client.get_group(owner.name))
        if group is None:
            if owner.kind == "group":
                log.info(kv("CODEOWNERS owner skipped: no such group, or not visible to the bot",
                            project_id=self.project_id, owner=owner.ref))
            else:
                log.info(kv("CODEOWNERS owner skipped: not a project member nor a group", project_id=self.project_id,
                            owner=owner.ref))
            return ()
        if not group_linked(project, group):
            log.info(kv("CODEOWNERS owner skipped: the group is not the project's group nor invited to it",
                        project_id=self.project_id, owner=owner.ref))
            return ()
        members = await self.cached(("members", group.id), lambda: self.client.list_group_members(group.id))
        return tuple(m.username for m in members if m.access_level >= DEVELOPER)

    async def email(self, owner: Owner) -> tuple[str, ...] | None:
        """The user showing the address; None (not known) when nobody does: GitLab matches any confirmed
        address, private ones too, which the API shows only to an admin, so "nobody found" is no "nobody"."""
        found = await users_showing(self.client, self.recent, owner.name)
        if not found:
            log.debug(kv("CODEOWNERS owner skipped: no user shows this e-mail (only public e-mails can be searched)",
                         project_id=self.project_id, owner=owner.ref))
            return None
        return tuple(user.username for user in found)

    async def role(self, owner: Owner) -> tuple[str, ...]:
        members = await self.cached(("direct", self.project_id),
                                    lambda: self.client.list_direct_members(self.project_id))
        return tuple(m.username for m in members if m.access_level == owner.access_level)

    async def resolve(self, owner: Owner, project: Project | None) -> tuple[str, ...] | None:
        """The owner's usernames; None when GitLab did not answer (after the client's retries)."""
        try:
            if owner.kind == "role":
                return await self.role(owner)
            return await (self.email(owner) if owner.kind == "email" else self.group(owner, project))
        except GitLabError as exc:
            log.warning(kv("CODEOWNERS owner skipped: GitLab did not answer", project_id=self.project_id,
                           owner=owner.ref, error=str(exc)))
            return None


async def users_showing(client: GitLabClient, recent: Recent, address: str) -> list[User]:
    """The users GitLab's user search finds showing `address` (`email_matches`), kept with the other owner
    lookups under one key: a CODEOWNERS e-mail owner and a committer's address are searched once for both."""
    users = await recent.get(("owners", "email", address.casefold()), lambda: client.search_users(address))
    return email_matches(users, address)


async def resolve_owners(client: GitLabClient, recent: Recent, project_id: int,
                         owners: Iterable[Owner]) -> dict[Owner, tuple[str, ...]]:
    """Each owner's usernames (empty when it stands for nobody); an owner GitLab did not answer for is left
    out. Answers are cached in `recent`.

    Owners are resolved one after the other: a CODEOWNERS file names few groups, and most answers are cached.
    """
    todo = list(dict.fromkeys(owners))
    if not todo:
        return {}
    resolver = _Resolver(client, recent, project_id)
    project = await resolver.project() if any(o.kind in ("group", "name") for o in todo) else None
    found = {owner: await resolver.resolve(owner, project) for owner in todo}
    return {owner: names for owner, names in found.items() if names is not None}
