"""Which projects the bot acts on: GitLab's answer for an event's project, asked before any work on the event.

Why ask first: two kinds of project reach the bot whose events no retry can help. An archived project is
read-only: GitLab refuses every comment and reviewer change there with 403, whatever the bot user's role, so its
events were retried for minutes (holding up the merge request's later events) and then dead-lettered with a hint
about access levels. A project GitLab answers 404 for (a group webhook delivering a project the bot user is not a
member of, a project deleted since) started the history import again at each event and dead-lettered its
events with a traceback. Both are skipped instead: the event is done, the reason kept on it for
`reviewbot events`.

GitLab's answer is kept `PROJECT_TTL` seconds (an unarchived project is acted on again within them); a 404 is
kept `UNSEEN_TTL` seconds, logged once as a warning naming the fix each time it is asked again.
"""
from __future__ import annotations

import logging

from bot.gitlab.errors import GitLabError
from bot.gitlab.models import Project
from bot.handlers.context import Services
from bot.logfmt import kv

__all__ = ["gitlab_project", "skip_reason", "PROJECT_TTL", "UNSEEN_TTL"]

log = logging.getLogger("bot.handlers")

PROJECT_TTL = 30.0   # seconds GitLab's answer for a project is kept (settings overrides are re-read as often)
UNSEEN_TTL = 600.0   # seconds a project GitLab answers 404 for is not asked about again


def _life(project: Project | None) -> float:
    return PROJECT_TTL if project is not None else UNSEEN_TTL


async def gitlab_project(services: Services, project_id: int, path: str | None = None, *,
                         fresh: bool = False) -> Project | None:
    """GitLab's project `project_id` (kept `PROJECT_TTL` s; `fresh` asks again), or None when GitLab answers 404
    for it (kept `UNSEEN_TTL` s). `path` is the payload's, for the warning only."""
    key = ("gitlab project", project_id)
    if fresh:
        services.engine.recent.forget(key)
    return await services.engine.recent.get(key, lambda: _ask(services, project_id, path), ttl=_life)


async def _ask(services: Services, project_id: int, path: str | None) -> Project | None:
    try:
        return await services.client.get_project(project_id)
    except GitLabError as exc:
        if exc.status != 404 or exc.no_route:
            raise
    # The path is the payload's word (whoever holds a webhook secret writes it): a field, quoted and escaped by
    # `kv`, never the message, where a line break in it would forge log lines.
    log.warning(kv(
        "GitLab answers 404 for this project: the bot user cannot see it (a private project it "
        "is not a member of, say one a group webhook delivers, or a project deleted since); add the bot user to "
        "the project (Developer) for the bot to review it, or stop sending its events. Its events are skipped "
        f"meanwhile; GitLab is asked again in {UNSEEN_TTL / 60:g} minutes", project=path, project_id=project_id))
    return None


def skip_reason(project_id: int, path: str | None, project: Project | None) -> str | None:
    """Why the bot does not act on an event of project `project_id` (`path` as the payload names it), GitLab's
    `project` (None: a 404), as `reviewbot events` shows it; None when it acts."""
    if project is None:
        return (f"skipped: GitLab answers 404 for project {path or project_id} (the bot user is not a member, or "
                "the project is gone): add the bot user to the project")
    if project.archived:
        return (f"skipped: project {project.path_with_namespace} is archived (GitLab refuses comments and review "
                "requests on it): its events are handled again once it is unarchived")
    return None
