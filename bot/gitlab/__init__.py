"""Everything GitLab: the typed async client the bot uses, and a GitLab simulator for tests and the demo.

`bot.gitlab.client.GitLabClient` talks REST v4 through gidgetlab with retries; `bot.gitlab.simulator` serves a
stateful fake GitLab over real HTTP; `bot.gitlab.payloads` builds webhook bodies shaped as GitLab sends them.
"""
from bot.gitlab.client import GitLabClient, RetryPolicy
from bot.gitlab.errors import GitLabError

__all__ = ["GitLabClient", "GitLabError", "RetryPolicy"]
