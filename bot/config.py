"""The bot's settings: one frozen object built once from `config.toml` plus environment variables.

Why one object: every part of the bot (web app, workers, handlers, CLI) receives the same validated
settings instead of reading files or the environment on its own, so a typo fails at start-up with a
message that names the setting and the fix, never later inside a handler. Nothing is read at import
time; call `load_settings()` once in the entry point and pass the result along.

Secrets (the GitLab token, webhook secrets, the database URL, which may hold a password) are
`SecretStr`: they print as `**********` in `repr`, logs and `Settings.describe()`.
"""
from __future__ import annotations

import difflib
import json
import math
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, get_args
from urllib.parse import SplitResult, urlsplit

from sqlalchemy.engine import make_url
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

__all__ = [
    "quoted_url", "bare_address",
    "ConfigError",
    "Settings",
    "GitLabSettings",
    "ServerSettings",
    "DatabaseSettings",
    "WorkerSettings",
    "DashboardSettings",
    "LearningSettings",
    "ProjectSettings",
    "WebhookSecret",
    "load_settings",
    "normalise_database_url",
    "redact_url",
    "DEFAULT_DATABASE_URL",
    "MR_RETENTION_MIN_DAYS",
]

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///reviewbot.sqlite3"
ENV_CONFIG_PATH = "REVIEWBOT_CONFIG"
ACCESS_LEVELS = (10, 15, 20, 30, 40, 50)
DASHBOARD_TOKEN_MIN = 16
WEBHOOK_SECRET_MIN = 8
# The secrets written in config.example.toml: known to anyone who reads the repository, so never secrets.
EXAMPLE_SECRETS = frozenset({"change-me-to-a-long-random-string", "another-long-random-string",
                             "yet-another-long-random-string"})
DAY_SECONDS = 86400
CENTURY_DAYS = 36525
# The least age at which a finished merge request's suggestions and feedback may be deleted: past the dashboard's
# 12 weeks, the 30 days of a rejection streak and the 7 days a late delivery is still compared with
MR_RETENTION_MIN_DAYS = 90
# Keys of `Settings` that the loader fills in itself; a file that sets them is wrong, not obeyed.
INTERNAL_KEYS = ("source",)

ENV_PORT = "PORT"  # read by the commands that listen (`serve`) only
# Environment variable -> (section, key). Environment wins over the file (Heroku-style config).
ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "GITLAB_URL": ("gitlab", "url"),
    "GITLAB_TOKEN": ("gitlab", "token"),
    "DATABASE_URL": ("database", "url"),
    ENV_PORT: ("server", "port"),
    "REVIEWBOT_DASHBOARD_TOKEN": ("dashboard", "token"),
    "REVIEWBOT_GITLAB_APP_ID": ("dashboard", "gitlab_app_id"),
    "REVIEWBOT_GITLAB_APP_SECRET": ("dashboard", "gitlab_app_secret"),
    "REVIEWBOT_PUBLIC_URL": ("dashboard", "public_url"),
}
ENV_WEBHOOK_SECRET = "GITLAB_WEBHOOK_SECRET"

# What to do about a missing or wrong setting, by its dotted location.
FIXES: dict[str, str] = {
    "gitlab.token": (
        "create a personal, project or group access token with the api scope and "
        "export GITLAB_TOKEN=... (or set [gitlab] token in config.toml)"
    ),
    "gitlab.url": "set GITLAB_URL=https://gitlab.example.com (or [gitlab] url) to your instance's address",
    "webhook_secrets": (
        "choose a long random secret, enter it as the webhook's Secret token in GitLab and "
        "export GITLAB_WEBHOOK_SECRET=... (or add a [[webhook_secrets]] entry)"
    ),
    "database.url": "use e.g. sqlite+aiosqlite:///reviewbot.sqlite3 or postgresql://user:pass@host/db",
    "server.port": "give a port number from 1 to 65535 in PORT (which wins) or [server] port",
    "dashboard": (
        "generate a token with python -c 'import secrets; print(secrets.token_urlsafe(32))' and "
        "export REVIEWBOT_DASHBOARD_TOKEN=... (or set [dashboard] token), or set up GitLab sign-in "
        "([dashboard] gitlab_app_id, gitlab_app_secret, public_url; see the README), or set [dashboard] enabled = false"
    ),
    "dashboard.gitlab_app_id": (
        "copy the Application ID of the OAuth application created in GitLab (Edit profile, group or Admin > "
        "Applications, scope read_api) into REVIEWBOT_GITLAB_APP_ID (or [dashboard] gitlab_app_id)"
    ),
    "dashboard.gitlab_app_secret": (
        "copy the Secret of the OAuth application created in GitLab (Applications, scope read_api) into "
        "REVIEWBOT_GITLAB_APP_SECRET (or [dashboard] gitlab_app_secret), with its Application ID in "
        "REVIEWBOT_GITLAB_APP_ID"
    ),
    "dashboard.public_url": (
        "export REVIEWBOT_PUBLIC_URL=https://reviewbot.example.com (or [dashboard] public_url): the address "
        "people open the dashboard at; the GitLab application's Redirect URI is it followed by "
        "/auth/gitlab/callback"
    ),
}


class ConfigError(Exception):
    """A setting is missing or wrong; the message names the setting and how to fix it."""


class FixedValueError(ValueError):
    """A validator's refusal whose words already give the fix: the setting's general fix (`FIXES`) is not added
    after it, where it would point elsewhere ("use e.g. sqlite+aiosqlite:///..." after "give sslrootcert as
    PGSSLROOTCERT")."""


class NeededError(ValueError):
    """A setting left unset that another one, set, needs (`needed_by`, a key of the same table): the message
    names where that one was set, since the missing value comes from no file and no variable."""

    def __init__(self, message: str, *, needed_by: str, feature: str) -> None:
        super().__init__(message)
        self.needed_by, self.feature = needed_by, feature


class _Frozen(BaseModel):
    # allow_inf_nan=False: TOML spells inf and nan, and either would pass a `gt=0` bound and then overflow a
    # date or an int conversion (or compare false with everything) at run time.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        """`max_open_reviews = true` ("turn the limit on") would be read as a limit of 1, `top_k = true` as 1:
        pydantic takes true and false for 1 and 0 in a number field. Strings still parse (environment
        variables are strings)."""
        if isinstance(value, bool) and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            kinds = set(get_args(annotation)) or {annotation}
            if kinds & {int, float} and bool not in kinds:
                raise ValueError("must be a number, not true or false")
        return value


class GitLabSettings(_Frozen):
    """How to reach GitLab and who the bot is there."""

    url: str = "https://gitlab.com"
    token: SecretStr | None = None
    bot_username: str | None = None

    @field_validator("token")
    @classmethod
    def _one_word(cls, value: SecretStr | None) -> SecretStr | None:
        """A token with a line break (`$(cat file)` keeps none, an env file or a pasted secret may) would be
        refused by the HTTP library as a header injection, with a traceback that names no setting."""
        if value is not None and any(c.isspace() for c in value.get_secret_value()):
            raise FixedValueError("holds whitespace or a line break besides the token (a copy-paste or a file's "
                                  "last newline?): give the token alone, without spaces or line breaks")
        return value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        problem = _gitlab_url_problem(value)
        if problem:
            raise ValueError(problem)
        return value.rstrip("/")

    @property
    def address(self) -> str:
        """The URL as start-up lines and messages name it, saying when nobody gave it: a self-hosted GitLab's
        token sent to gitlab.com because GITLAB_URL was forgotten is refused there with a message that must
        say why. The URL holds no credentials (`_gitlab_url_problem`)."""
        if "url" in self.model_fields_set:
            return self.url
        return f"{self.url} (the default: set GITLAB_URL for a self-hosted GitLab)"


def _gitlab_url_problem(value: str) -> str | None:
    """Why `value` cannot be the instance's base URL, or None. The URL is printed in messages and logs, so it
    must hold no credentials; the client adds /api/v4 itself, so a URL ending in it would double it."""
    parts = _url_parts(value, "https://gitlab.example.com")
    if isinstance(parts, str):
        return parts
    if "@" in parts.netloc or parts.query or parts.fragment:
        return ("must be the instance's base URL alone (no user:password@, no ?query): "
                "give the token in GITLAB_TOKEN")
    if parts.path.rstrip("/").casefold().endswith("/api/v4"):
        return "ends in /api/v4: give the base URL without /api/v4 (the bot adds it)"
    return None


def _public_url_problem(value: str) -> str | None:
    """Why `value` cannot be the address people open the dashboard at, or None. No path: the dashboard's
    links, its sign-in link and the sign-in's cookie (Path=/auth/gitlab) are at the root of the host name, so
    behind a proxy serving the bot under /reviewbot every sign-in came back to a callback the cookie did not
    reach, and was refused as "did not start in this browser"."""
    parts = _url_parts(value, "https://reviewbot.example.com")
    if isinstance(parts, str):
        return parts
    if "@" in parts.netloc or parts.query or parts.fragment:
        return "must be the dashboard's address alone (no user:password@, no ?query, no #fragment)"
    if parts.path.strip("/"):
        return (f"must be a host name without a path (got {parts.path}): the dashboard is served at the root of "
                "its own address (https://reviewbot.example.com), not under a proxy's path prefix")
    return None


def _url_parts(value: str, example: str) -> SplitResult | str:
    """`value` split into its parts, or why it is no http(s) address with a host name (`example` shows one)."""
    if not value.startswith(("http://", "https://")):
        return f"must start with http:// or https://, got {quoted_url(value)}"
    if any(ch.isspace() for ch in value):
        return f"must not contain spaces: give the address as the browser shows it ({example})"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number from 0 to 65535
    except ValueError:  # its text may quote the value
        return "is not a valid URL (check the port and any [IPv6] brackets)"
    if not parts.hostname:
        return f"has no host name: give e.g. {example}"
    return parts


def quoted_url(value: str) -> str:
    """The value for a message if it is recognisably a URL (minus user:password, query and fragment), or an
    address without its scheme (named with the fix), else a placeholder: a token pasted into GITLAB_URL by
    mistake must not reach the terminal or the log.

    >>> quoted_url("127.0.0.1:18090"), quoted_url("glpat-SECRET")
    ("'127.0.0.1:18090' (no scheme: add https://)", 'a value that is not a URL (not shown: it may be a secret)')
    """
    if "://" not in value:
        bare = bare_address(value)
        if bare is None:
            return "a value that is not a URL (not shown: it may be a secret)"
        return f"{bare!r} (no scheme: add https://)"
    scheme, _, rest = value.partition("://")
    rest = _without_secrets(rest)
    return repr(f"{scheme}://{rest}")


def _without_secrets(rest: str) -> str:
    """What follows a URL's `scheme://`, without user:password@, ?query and #fragment."""
    return re.split(r"[?#]", rest, maxsplit=1)[0].rpartition("@")[2]  # a password may hold a "/"


# A host a URL may name: an IPv4 address, localhost, or dotted labels ending in a word (a TLD), with a port
# and a path; a token has no such shape (no dot, or no word after its last one), and GitLab's start with gl...-.
_BARE_HOST = re.compile(r"(?!gl[a-z]{1,8}-)(?:\d{1,3}(?:\.\d{1,3}){3}|localhost"
                        r"|(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24})(?::\d{1,5})?(?:/\S*)?", re.IGNORECASE)


def bare_address(value: str) -> str | None:
    """`value` if it reads as an address missing its `https://` (host, port, path; user:password@, ?query and
    #fragment left out), else None.

    >>> bare_address("bot.example.com/webhook?token=x"), bare_address("u:pw@10.0.0.2:8080"), bare_address("abc")
    ('bot.example.com/webhook', '10.0.0.2:8080', None)
    """
    rest = _without_secrets(value.strip())
    return rest if _BARE_HOST.fullmatch(rest) else None


class ServerSettings(_Frozen):
    """The webhook web server."""

    host: str = "0.0.0.0"
    port: int = Field(8080, ge=1, le=65535)
    # GitLab's own cap: a note and its MR's description may each hold 1,000,000 characters (4 bytes each in
    # UTF-8, and an update carries the description twice); refusing a genuine delivery counts toward GitLab
    # disabling the hook
    max_body_bytes: int = Field(25 * 1024 * 1024, ge=1024)
    shutdown_timeout: float = Field(25.0, gt=0, le=30)
    # Deliveries accepted while the database is unavailable wait here (bot.spool); relative to the working directory.
    spool_dir: str = Field("reviewbot-spool", min_length=1)
    spool_max_files: int = Field(10_000, ge=0, le=1_000_000)  # 0: no spool (such deliveries are answered 503)
    spool_max_mb: int = Field(500, ge=1, le=1_000_000)


class DatabaseSettings(_Frozen):
    """Where events, history, comments and models are kept."""

    url: SecretStr = SecretStr(DEFAULT_DATABASE_URL)
    echo: StrictBool = False

    @field_validator("url", mode="before")
    @classmethod
    def _normalise(cls, value: Any) -> Any:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        return normalise_database_url(raw) if isinstance(raw, str) else value

    @field_validator("url")
    @classmethod
    def _supported(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("only SQLite (sqlite:///file) and PostgreSQL (postgresql://...) are supported")
        if url.startswith("postgresql+asyncpg://") and _at_past_password(url):
            raise FixedValueError("its password holds an `@` that is not percent-encoded, so the rest of the "
                                  "password would be read as the host, port or database (and shown in error "
                                  "messages): write `@` as %40 in the password (and `/` as %2F)")
        if url.startswith("postgresql+asyncpg://") and (unknown := _unknown_pg_params(url)):
            raise FixedValueError(_unknown_pg_params_fix(unknown))
        return value


class WorkerSettings(_Frozen):
    """The background loop that runs stored events.

    Upper bounds keep each value inside what it feeds: leases and retry delays become datetimes (a lease of
    1e12 s is past the year 9999), `max_attempts` an int4 column and the exponent of `2 ** attempts` (a float
    past 2 ** 1023), `retention_days` a timedelta subtracted from now.
    """

    concurrency: int = Field(2, ge=1, le=64)
    lease_seconds: float = Field(300.0, gt=0, le=DAY_SECONDS)
    dispatch_timeout: float = Field(120.0, gt=0)
    max_attempts: int = Field(6, ge=1, le=1000)
    outage_hours: float = Field(24.0, ge=0, le=CENTURY_DAYS * 24)  # GitLab down: retried this long, not counted
    backoff: float = Field(10.0, gt=0)
    backoff_max: float = Field(3600.0, gt=0, le=DAY_SECONDS)
    poll_interval: float = Field(2.0, gt=0, le=3600)
    retention_days: float = Field(7.0, ge=1, le=CENTURY_DAYS)
    prune_interval: float = Field(3600.0, gt=0, le=DAY_SECONDS)
    dead_retention_days: float = Field(30.0, ge=0, le=CENTURY_DAYS)  # 0: dead events are kept
    mr_retention_days: float = Field(365.0, ge=0, le=CENTURY_DAYS)   # 0: finished MRs' rows are kept
    max_projects: int = Field(32, ge=1, le=100_000)  # projects' recommenders a process keeps in memory
    idle_hours: float = Field(24.0, ge=0, le=CENTURY_DAYS * 24)  # unused this long: dropped; 0: kept

    @model_validator(mode="after")
    def _retention_floors(self) -> WorkerSettings:
        """0 keeps; anything else must leave what is still read: a day of dedupe keys, and of a finished merge
        request's rows `MR_RETENTION_MIN_DAYS` (the dashboard's 12 weeks, with room)."""
        if 0 < self.dead_retention_days < 1:
            raise ValueError(f"dead_retention_days ({self.dead_retention_days:g}) must be 0 (keep dead events) or "
                             "at least 1: their keys recognise deliveries GitLab re-sends")
        if 0 < self.mr_retention_days < MR_RETENTION_MIN_DAYS:
            raise ValueError(f"mr_retention_days ({self.mr_retention_days:g}) must be 0 (keep them) or at least "
                             f"{MR_RETENTION_MIN_DAYS}: the dashboard shows the last 12 weeks of merge requests")
        return self

    @model_validator(mode="after")
    def _lease_outlives_dispatch(self) -> WorkerSettings:
        if self.lease_seconds <= self.dispatch_timeout:
            raise ValueError(
                f"lease_seconds ({self.lease_seconds}) must exceed dispatch_timeout "
                f"({self.dispatch_timeout}), else a slow event is handed to a second worker"
            )
        return self

    @model_validator(mode="after")
    def _backoff_within_cap(self) -> WorkerSettings:
        """The first retry waits `backoff`, later ones at most `backoff_max`: a cap below the start is a typo."""
        if self.backoff > self.backoff_max:
            raise ValueError(f"backoff ({self.backoff}) must not exceed backoff_max ({self.backoff_max}): "
                             "raise backoff_max or lower backoff")
        return self


class DashboardSettings(_Frozen):
    """The read-only dashboard at GET /: off unless enabled, and then only behind a long token, GitLab sign-in
    or both. A token or a GitLab application given with `enabled` left unset turns it on
    (REVIEWBOT_DASHBOARD_TOKEN alone, on a platform configured by environment only); `enabled = false` keeps
    it off whatever they are.

    GitLab sign-in needs the OAuth application's id and secret and `public_url`, the address people open the
    dashboard at: the redirect URI sent to GitLab is `public_url` + /auth/gitlab/callback. It is a setting,
    not read from the request's Host header, which the client chooses (and a proxy may rewrite or leave as
    the bot's internal address): GitLab would refuse a mismatched redirect URI, but the bot would also mark its
    cookies Secure from it.
    """

    enabled: StrictBool = False
    token: SecretStr | None = None
    gitlab_app_id: str | None = None
    gitlab_app_secret: SecretStr | None = Field(None, validate_default=True)
    public_url: str | None = Field(None, validate_default=True)

    @property
    def https(self) -> bool:
        """Whether people open the dashboard over https (`public_url`): its cookies are Secure and its answers
        carry HSTS."""
        return (self.public_url or "").startswith("https://")

    @model_validator(mode="before")
    @classmethod
    def _on_with_a_token(cls, data: Any) -> Any:
        if isinstance(data, dict) and "enabled" not in data and (data.get("token") or data.get("gitlab_app_id")):
            return {**data, "enabled": True}
        return data

    @field_validator("gitlab_app_id")
    @classmethod
    def _app_id(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(c.isspace() for c in value)):
            raise ValueError("must be the Application ID GitLab shows, one word without spaces or line breaks")
        return value

    @field_validator("gitlab_app_secret")
    @classmethod
    def _app_secret(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        """Both halves of the application or neither; the message gives no part of the secret."""
        app_id = info.data.get("gitlab_app_id")
        if value is None:
            if app_id is not None:
                raise NeededError("is missing: GitLab sign-in needs the application's secret too",
                                  needed_by="gitlab_app_id", feature="GitLab sign-in")
            return value
        secret = value.get_secret_value()
        if not secret or any(c.isspace() for c in secret):
            raise ValueError("must be the application's Secret, one word without spaces or line breaks")
        if app_id is None:
            raise ValueError("is set without gitlab_app_id: GitLab sign-in needs the application's id too")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            if info.data.get("gitlab_app_id") is not None:
                raise NeededError("is missing: GitLab sign-in sends people back to "
                                  "<public_url>/auth/gitlab/callback", needed_by="gitlab_app_id",
                                  feature="GitLab sign-in")
            return value
        problem = _public_url_problem(value)
        if problem:
            raise ValueError(problem)
        return value.rstrip("/")

    @model_validator(mode="after")
    def _protected(self) -> DashboardSettings:
        """A token given is at least `DASHBOARD_TOKEN_MIN` long even beside GitLab sign-in: an empty one (`token =
        ""` in the file, meant as "no token") would be matched by an empty `Authorization: Bearer` or `?token=`
        and show every project to anyone. Only an absent token may rely on GitLab sign-in alone."""
        secret = self.token.get_secret_value() if self.token is not None else ""
        if not self.enabled or (self.token is None and self.gitlab_app_id is not None):
            return self
        if len(secret) < DASHBOARD_TOKEN_MIN:
            what = ("enabled needs GitLab sign-in or a token of" if self.token is None else
                    "the token is empty: it needs" if not secret else
                    "the token (which turns the dashboard on) needs")
            raise ValueError(
                f"{what} at least {DASHBOARD_TOKEN_MIN} characters "
                f"(got {'none' if not secret else len(secret)}): the dashboard shows who reviews what"
            )
        return self

    @property
    def gitlab_sign_in(self) -> bool:
        """Whether people may sign in with their GitLab account (the application is configured)."""
        return self.gitlab_app_id is not None and self.gitlab_app_secret is not None and self.public_url is not None


class LearningSettings(_Frozen):
    """When each project's ranker is refit from its history and feedback, and how new projects start."""

    retrain_labels: int = Field(50, ge=0)
    retrain_hours: float = Field(24.0, ge=0)
    holdout: int = Field(200, ge=10)
    prior: StrictBool = False


class ProjectSettings(_Frozen):
    """How the bot behaves on one project: [defaults] with that project's overrides applied.

    Booleans are strict (`mention = "yes"` is an error, not true).
    """

    assign: Literal["off", "top1", "top-k"] = "off"
    top_k: int = Field(3, ge=1, le=20)
    mention: StrictBool = False
    skip_drafts: StrictBool = True
    ignore_label: str = "no-reviewer-bot"
    max_open_reviews: int = Field(5, ge=0)
    min_access_level: int = 30
    half_life_days: float = Field(180.0, gt=0)
    inactive_days: int = Field(90, ge=1)
    bots: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    comment_on_update: StrictBool = True

    @field_validator("min_access_level")
    @classmethod
    def _known_level(cls, value: int) -> int:
        if value not in ACCESS_LEVELS:
            raise ValueError(f"must be one of {ACCESS_LEVELS} (GitLab access levels), got {value}")
        return value


class WebhookSecret(_Frozen):
    """A webhook secret token, valid for one project, one group (and its subgroups) or everything."""

    secret: SecretStr
    project: str | StrictInt | None = None
    group: str | None = None

    @field_validator("secret")
    @classmethod
    def _usable_secret(cls, value: SecretStr) -> SecretStr:
        """Long enough not to be guessed, and without spaces around it: HTTP drops them from the X-Gitlab-Token
        header, so such a secret could never match. The message gives lengths only, never the secret."""
        secret = value.get_secret_value()
        core = secret.strip()
        if core in EXAMPLE_SECRETS:
            raise ValueError(
                "secret is an example from config.example.toml, which anyone can read: choose your own "
                "(python -c 'import secrets; print(secrets.token_urlsafe(32))'), enter it as the webhook's Secret "
                "token in GitLab, and remove the [[webhook_secrets]] entries you do not use"
            )
        if len(core) < WEBHOOK_SECRET_MIN or core != secret:
            raise ValueError(
                f"secret must be at least {WEBHOOK_SECRET_MIN} characters with no spaces around them (got "
                f"{len(core)}{'' if core == secret else ' and surrounding spaces'}): choose a long random "
                "secret (python -c 'import secrets; print(secrets.token_urlsafe(32))') and enter the same as "
                "the webhook's Secret token in GitLab"
            )
        return value

    @field_validator("project", "group")
    @classmethod
    def _usable_scope(cls, value: str | int | None) -> str | int | None:
        """A scope that no delivery can match (an empty path, a negative id) would silently refuse everything."""
        if isinstance(value, int) and value < 1:
            raise ValueError(f"must be a positive project id such as 42, got {value}")
        if isinstance(value, str) and (not value.strip(" /") or value != value.strip()):
            raise ValueError(f"must be a path such as my-group/my-app, without spaces around it "
                             f"(got {value!r}); leave it out for a secret valid for every project")
        return value

    @model_validator(mode="after")
    def _one_scope(self) -> WebhookSecret:
        if self.project is not None and self.group is not None:
            raise ValueError("give either project or group, not both")
        return self

    def covers(self, project_id: int | None, path: str | None) -> bool:
        """True when a delivery for this project may be signed with this secret (paths compared without
        case, as GitLab resolves them: a payload keeps the path's capitals, `flightjs/Flight`)."""
        if self.project is None and self.group is None:
            return True
        path = path.casefold() if path else path
        if self.group is not None:
            group = self.group.strip("/").casefold()
            return bool(path) and (path == group or path.startswith(group + "/"))
        if isinstance(self.project, int):
            return project_id == self.project
        return path == self.project.casefold() or str(project_id) == self.project


class Settings(_Frozen):
    """Everything the bot needs, validated and frozen. Build it with `load_settings()`."""

    gitlab: GitLabSettings = GitLabSettings()
    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    worker: WorkerSettings = WorkerSettings()
    dashboard: DashboardSettings = DashboardSettings()
    learning: LearningSettings = LearningSettings()
    defaults: ProjectSettings = ProjectSettings()
    projects: dict[str, dict[str, Any]] = {}
    webhook_secrets: tuple[WebhookSecret, ...] = ()
    source: str = "built-in defaults"

    @model_validator(mode="after")
    def _overrides_valid(self) -> Settings:
        for key, overrides in self.projects.items():
            try:
                ProjectSettings.model_validate({**self._defaults_dict(), **overrides})
            except ValidationError as exc:
                raise ValueError(f"[projects.{_toml_key(key)}] {_first_error(exc, ProjectSettings)}") from None
        return self

    @model_validator(mode="after")
    def _one_table_per_project(self) -> Settings:
        """GitLab resolves paths without case, so [projects."A/b"] and [projects."a/b"] are the same project:
        which one `project_settings` would apply depends on their order in the file."""
        seen: dict[str, str] = {}
        for key in self.projects:
            other = seen.setdefault(key.casefold(), key)
            if other != key:
                raise ValueError(f"[projects.{_toml_key(other)}] and [projects.{_toml_key(key)}] name the same "
                                 "project (GitLab paths ignore case): merge them into one table")
        return self

    def _defaults_dict(self) -> dict[str, Any]:
        return self.defaults.model_dump()

    def project_settings(
        self, project_id: int | None, path_with_namespace: str | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> ProjectSettings:
        """[defaults], then [projects."path"] (any case, as GitLab resolves paths), then [projects.ID], then
        `overrides` (from the database)."""
        merged = self._defaults_dict()
        folded = {key.casefold(): key for key in self.projects}
        for key in (path_with_namespace, None if project_id is None else str(project_id)):
            key = folded.get(key.casefold()) if key is not None else None
            if key is not None:
                merged.update(self.projects[key])
        merged.update(overrides or {})
        try:
            return ProjectSettings.model_validate(merged)
        except ValidationError as exc:
            problem = _first_error(exc, ProjectSettings)
            raise ConfigError(f"project {path_with_namespace or project_id}: {problem}") from None

    def moved_warning(self, project_id: int, former_path: str, path: str | None) -> str | None:
        """What to log when a project's path changed from `former_path` to `path` (renamed or moved; its id
        stays) while a [projects."former/path"] table configured it and neither [projects.ID] nor its new path
        does: those settings silently stopped applying. None when nothing was left behind."""
        folded = {key.casefold(): key for key in self.projects}
        if str(project_id) in self.projects or (path is not None and path.casefold() in folded):
            return None
        key = folded.get(former_path.casefold())
        if key is None:
            return None
        return (f"project {project_id} was renamed or moved from {former_path!r} to {path!r}: the settings of "
                f"[projects.{_toml_key(key)}] no longer apply to it ([defaults] do); key them by the project's id, "
                f"which a rename or a move keeps: rename the table to [projects.{project_id}]")

    def secrets_for(self, project_id: int | None, path: str | None) -> list[bytes]:
        """The webhook secrets a delivery for this project may carry."""
        return [s.secret.get_secret_value().encode() for s in self.webhook_secrets if s.covers(project_id, path)]

    def all_secrets(self) -> list[bytes]:
        """Every configured webhook secret, whatever its scope."""
        return [s.secret.get_secret_value().encode() for s in self.webhook_secrets]

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL (with its password); never log it, use `describe()`."""
        return self.database.url.get_secret_value()

    def describe(self) -> dict[str, Any]:
        """The settings as plain data with every secret masked, for logs and bug reports."""
        data = self.model_dump(mode="json")
        data["database"]["url"] = redact_url(self.database_url)
        return data


def _toml_key(key: str) -> str:
    return key if key.isdigit() else f'"{key}"'


def _first_error(exc: ValidationError, model: type[BaseModel]) -> str:
    err = exc.errors()[0]
    if err["type"] == "extra_forbidden":
        return _unknown(err["loc"], model)
    where = ".".join(str(p) for p in err["loc"])
    allowed = _allowed(model, err["loc"])
    said = _reason(err)
    message = f"{said} ({allowed})" if allowed else said
    return f"{where}: {message}" if where else message


# The list settings a person may write as one string (`bots = "renovate"`): what each holds.
LIST_OF = {"bots": "usernames", "exclude": "usernames"}


def _reason(err: Mapping[str, Any]) -> str:
    """What is wrong with a value, in the words of the setting: pydantic's "Input should be a valid tuple" for a
    list given as a string says neither that a list is meant nor how to write one.

    >>> _reason({"type": "tuple_type", "loc": ("defaults", "bots"), "input": "renovate, dependabot", "msg": ""})
    'must be a list of usernames, e.g. bots = ["renovate", "dependabot"]'
    """
    key = str(err["loc"][-1]) if err["loc"] else ""
    if err["type"] in ("tuple_type", "list_type") and key in LIST_OF:
        names = [n for n in re.split(r"[\s,]+", err["input"]) if n] if isinstance(err["input"], str) else []
        if not names or not all(re.fullmatch(r"[\w.-]{1,255}", n) for n in names):
            names = ["renovate"] if key == "bots" else ["alice"]
        return f"must be a list of {LIST_OF[key]}, e.g. {key} = [{', '.join(json.dumps(n) for n in names)}]"
    return err["msg"].removeprefix("Value error, ")  # pydantic's prefix for a validator's own words


def _unknown(loc: tuple[int | str, ...], model: type[BaseModel]) -> str:
    """A key no setting has, and the nearest one that exists (a typo is the usual cause).

    >>> _unknown(("asign",), ProjectSettings)
    'unknown setting `asign`; did you mean `assign`?'
    >>> _unknown(("worker", "concurency"), Settings)
    'unknown setting `concurency`; did you mean `concurrency`?'
    """
    key = str(loc[-1]) if loc else ""
    near = difflib.get_close_matches(key, _keys_at(model, loc[:-1]), n=1)
    return f"unknown setting `{key}`" + (f"; did you mean `{near[0]}`?" if near else "")


def _keys_at(model: type[BaseModel] | None, path: tuple[int | str, ...]) -> Iterable[str]:
    """The settings a table at `path` may hold (the index of a list entry, `webhook_secrets.0`, is skipped)."""
    for part in path:
        field = model.model_fields.get(part) if model is not None and isinstance(part, str) else None
        if isinstance(part, int):
            continue
        if field is None:
            return ()
        kinds = (field.annotation, *get_args(field.annotation))
        model = next((k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)), None)
    return [k for k in model.model_fields if k not in INTERNAL_KEYS] if model is not None else ()


def _allowed(model: type[BaseModel], loc: tuple[int | str, ...]) -> str | None:
    """What a boolean or bounded number setting accepts, read from its `Field` so message and check agree.

    >>> _allowed(WorkerSettings, ("lease_seconds",))
    'allowed: more than 0 and at most 86400'
    """
    field = None
    for part in loc:
        fields = model.model_fields if isinstance(model, type) and issubclass(model, BaseModel) else {}
        field = fields.get(part) if isinstance(part, str) else None
        if field is None:
            return None
        model = field.annotation  # type: ignore[assignment]
    if field is None:
        return None
    if field.annotation is bool:
        return "allowed: true or false, without quotes"
    words = {"gt": "more than", "ge": "at least", "lt": "less than", "le": "at most"}
    bounds = [f"{word} {getattr(m, key)}" for m in field.metadata for key, word in words.items()
              if hasattr(m, key)]
    return "allowed: " + " and ".join(bounds) if bounds else None


def redact_url(url: str) -> str:
    """The URL with its password, and any query parameter that looks like one, replaced by ***.

    >>> redact_url("postgresql+asyncpg://u:pw@h/db?password=pw2&ssl=require")
    'postgresql+asyncpg://u:***@h/db?password=***&ssl=require'
    >>> redact_url("postgres://u:SEC@RET@h/db")  # an unescaped @ in the password: all of it hidden
    'postgres://u:***@h/db'
    """
    try:
        parsed = make_url(_mask_userinfo(url))
        query = {k: ("***" if _SECRET_PARAM.search(k) else v) for k, v in parsed.query.items()}
        return parsed.set(query=query).render_as_string(hide_password=True).replace("%2A%2A%2A", "***")
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as nothing rather than leaked
        return "<unparsable database URL>"


_SECRET_PARAM = re.compile(r"pass|secret|token|key", re.IGNORECASE)


def _mask_userinfo(url: str) -> str:
    """The password (everything between the user's `:` and the *last* `@` before the query) as ***: a
    password holding an unescaped `@` must not show its end as the host."""
    scheme, sep, rest = url.partition("://")
    end = len(rest.split("?", 1)[0])
    at = rest.rfind("@", 0, end)
    if not sep or at < 0 or ":" not in rest[:at]:
        return url
    user = rest[:at].split(":", 1)[0]
    return f"{scheme}{sep}{user}:***{rest[at:]}"


def normalise_database_url(url: str) -> str:
    """Accept Heroku's `postgres://` and plain `postgresql://`; use the async drivers.

    >>> normalise_database_url("postgres://u:p@h:5432/db?sslmode=require")
    'postgresql+asyncpg://u:p@h:5432/db?ssl=require'
    """
    url = url.strip()
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://", "postgresql+psycopg://"):
        if url.startswith(prefix):
            url = "postgresql+asyncpg://" + url[len(prefix):]
            break
    if url.startswith("sqlite://") and not url.startswith("sqlite+"):
        url = "sqlite+aiosqlite://" + url[len("sqlite://"):]
    if url.startswith("postgresql+asyncpg://") and "?" in url:
        url = _asyncpg_spelling(url)
    return url


def _asyncpg_spelling(url: str) -> str:
    """The URL with libpq's `sslmode` and `connect_timeout` renamed as asyncpg takes them. The query is read as
    SQLAlchemy reads it when it connects: a password may hold a `?` (or `&sslmode=`), which is no query. An
    unreadable URL is left as it is, for the engine to refuse with its reason."""
    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - said when the engine is made (`bot.storage.db.create_engine`)
        return url
    if not any(name in parsed.query for name in LIBPQ_PARAMS):
        return url
    query = {LIBPQ_PARAMS.get(name, name): value for name, value in parsed.query.items()}
    return parsed.set(query=query).render_as_string(hide_password=False)


# The query parameters of a PostgreSQL URL that reach the driver: asyncpg's `connect()` arguments (the numbers
# and application_name are passed typed, by `bot.storage.db`), SQLAlchemy's statement cache, and libpq's own
# spellings of two of them. Any other (`options`, `sslrootcert`) made every connection fail with a TypeError.
PG_URL_PARAMS = frozenset({
    "ssl", "timeout", "command_timeout", "application_name", "target_session_attrs", "user", "password",
    "passfile", "host", "port", "database", "statement_cache_size", "prepared_statement_cache_size",
    "max_cached_statement_lifetime", "max_cacheable_statement_size", "krbsrvname", "gsslib",
})
LIBPQ_PARAMS = {"sslmode": "ssl", "connect_timeout": "timeout"}


def _unknown_pg_params(url: str) -> list[str]:
    """The query parameters of a PostgreSQL URL that asyncpg does not take, as SQLAlchemy reads them (never a
    piece of a password holding a `?`); none for an unreadable URL, which the engine refuses with its reason."""
    try:
        names = set(make_url(url).query)
    except Exception:  # noqa: BLE001 - said when the engine is made
        return []
    return sorted(names - PG_URL_PARAMS)


def _at_past_password(url: str) -> bool:
    """Whether SQLAlchemy, which ends a password at its first `@`, finds another `@` in the host, port or
    database after it: a password holding an unescaped `@`, whose end the engine's and the server's errors
    would quote ("invalid literal for int() with base 10: 'end-of-password@db'").

    >>> _at_past_password("postgresql+asyncpg://u:p@ss:w@db/x"), _at_past_password("postgresql+asyncpg://u:p%40ss@db/x")
    (True, False)
    >>> _at_past_password("postgresql+asyncpg://u@db/x?application_name=a@b")  # (no password; a query's `@`)
    False
    """
    try:
        if make_url(url).password is None:
            return False
    except Exception:  # noqa: BLE001 - an unreadable URL is refused when the engine is made
        pass
    rest = url.partition("://")[2].partition(":")[2]  # the password and what follows (a user name holds no `:`)
    after = rest.partition("@")[2]
    return "@" in after.split("?", 1)[0]


def _unknown_pg_params_fix(unknown: list[str]) -> str:
    """What to do about them: libpq's certificate files are read from its environment variables instead. Not
    a key's password: asyncpg reads no PGSSLPASSWORD, so the key must be an unencrypted one."""
    files = [name for name in unknown if name in ("sslrootcert", "sslcert", "sslkey", "sslcrl")]
    where = (f"; give {', '.join(files)} as {', '.join('PG' + name.upper() for name in files)} in the environment "
             "instead, which the driver reads" if files else "")
    if "sslpassword" in unknown:
        where += "; the driver takes no password for the key from the environment: use an unencrypted key file"
    return (f"the PostgreSQL driver (asyncpg) takes no URL parameter {', '.join(f'`{n}`' for n in unknown)}: remove "
            f"it{where} (it takes sslmode or ssl, connect_timeout or timeout, command_timeout, application_name, "
            "target_session_attrs and a few more: see the README, Deploy)")


def _config_path(path: str | Path | None, environ: Mapping[str, str]) -> Path | None:
    if path is not None:
        origin = "--config"
    elif environ.get(ENV_CONFIG_PATH):
        path, origin = environ[ENV_CONFIG_PATH], ENV_CONFIG_PATH
    else:
        default = Path("config.toml")
        return default if default.is_file() else None
    resolved = Path(path)
    try:
        if resolved.is_dir():
            raise ConfigError(f"config file {str(resolved)!r} (from {origin}) is a directory: give the path of the "
                              f"TOML file, e.g. {str(resolved / 'config.toml')!r}")
        found = resolved.is_file()
    except OSError as exc:  # e.g. a directory on the way that the bot's user may not enter
        raise ConfigError(f"config file {str(resolved)!r} (from {origin}) cannot be read ({exc.strerror}): "
                          "make it and its directories readable by the bot's user, or fix the path") from None
    if not found:
        raise ConfigError(
            f"config file {str(resolved)!r} (from {origin}) does not exist: "
            "copy config.example.toml there or fix the path"
        )
    return resolved


def _read_toml(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}): fix the syntax, see config.example.toml") from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8; the message quotes one byte, never the text around it
        byte = f"byte 0x{exc.object[exc.start]:02x} at offset {exc.start}"
        raise ConfigError(f"{path} is not UTF-8 text ({byte}): save it as UTF-8 (without a UTF-16 byte order "
                          "mark)") from None
    except OSError as exc:
        raise ConfigError(f"{path} cannot be read ({exc.strerror or type(exc).__name__}): make it readable "
                          "by the bot's user (chmod, chown) or fix the path") from None


def _reject_internal_keys(data: Mapping[str, Any], source: str) -> None:
    """`source` is a field of `Settings` (where the settings came from), so pydantic's unknown-key check
    passes it; a file that sets it would be silently overwritten instead of refused."""
    for key in INTERNAL_KEYS:
        if key in data:
            raise ConfigError(f"setting {key} (from {source}): unknown setting: remove it, "
                              "see config.example.toml for the settings there are")


def _reject_quoted_numbers(data: Mapping[str, Any], source: str) -> None:
    """A number in quotes in the file (`top_k = "3"`) is refused, as a quoted boolean is: pydantic would read it
    as the number, so a file that reads as text worked by chance. (The environment's values are all strings:
    they are applied after this check.)"""
    for where, key, value in _quoted_numbers(data, Settings, ""):
        raise ConfigError(f"setting {where} (from {source}): a number in quotes ({json.dumps(value)[:40]}): "
                          f"write it without quotes, {key} = {value.strip()}, see config.example.toml")


def _quoted_numbers(data: Any, model: type[BaseModel], prefix: str) -> Iterable[tuple[str, str, str]]:
    """(where, key, text) of each number setting the file gives as a string that reads as a number (any other
    string is left to the validation, whose message does not repeat it: it may be a secret)."""
    if not isinstance(data, Mapping):
        return
    for key, value in data.items():
        field = model.model_fields.get(key) if isinstance(key, str) else None
        if key == "projects" and model is Settings and isinstance(value, Mapping):  # overrides of [defaults]
            for name, table in value.items():
                yield from _quoted_numbers(table, ProjectSettings, f"[projects.{_toml_key(str(name))}] ")
            continue
        if field is None:
            continue
        kinds = set(get_args(field.annotation)) or {field.annotation}
        if isinstance(value, str) and kinds & {int, float} and not kinds & {str, bool} and _is_number(value):
            yield f"{prefix}{key}", key, value
        inner = next((k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)), None)
        if inner is not None:
            yield from _quoted_numbers(value, inner, f"{prefix}{key}.")


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _apply_environment(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    """Copy environment overrides into the raw data; return which locations came from which variable."""
    origins: dict[str, str] = {}
    for var, (section, key) in ENV_OVERRIDES.items():
        if environ.get(var):
            if not isinstance(data.setdefault(section, {}), dict):
                raise ConfigError(f"setting {section}: must be a table ([{section}] with its keys below it), not "
                                  f"{type(data[section]).__name__} {section} = ...; see config.example.toml")
            data[section][key] = environ[var]
            origins[f"{section}.{key}"] = f"environment variable {var}"
    if environ.get(ENV_WEBHOOK_SECRET):
        if not isinstance(data.get("webhook_secrets", []), list):
            raise ConfigError("setting webhook_secrets: must be a list of tables ([[webhook_secrets]] with "
                              "secret = ...), see config.example.toml")
        secrets = list(data.get("webhook_secrets", []))
        secrets.append({"secret": environ[ENV_WEBHOOK_SECRET]})
        data["webhook_secrets"] = secrets
        origins[f"webhook_secrets.{len(secrets) - 1}"] = f"environment variable {ENV_WEBHOOK_SECRET}"
    return origins


def _validation_message(exc: ValidationError, origins: Mapping[str, str], source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "projects"
        if err["type"] == "extra_forbidden":
            what, fix = _unknown(err["loc"], Settings), "see config.example.toml for the settings there are"
        else:
            what, allowed = _reason(err), _allowed(Settings, err["loc"])
            fix = FIXES.get(loc, f"{allowed}, see config.example.toml" if allowed else
                            "see config.example.toml for the allowed values")
        # the nearest key is the fix, or the validator gave its own
        said = what if "did you mean" in what or _gives_its_fix(err) else f"{what}: {fix}"
        lines.append(f"setting {loc} ({_provenance(err, loc, origins, source)}): {said}")
    return "; ".join(lines)


def _provenance(err: Mapping[str, Any], loc: str, origins: Mapping[str, str], source: str) -> str:
    """"from" where the value came from; for a value nobody gave, what asks for it and where that was set (an
    operator who set only REVIEWBOT_GITLAB_APP_ID is told so, not "from built-in defaults")."""
    error = err.get("ctx", {}).get("error")
    if not isinstance(error, NeededError):
        return f"from {_origin(loc, origins, source)}"
    section = loc.rpartition(".")[0]
    variable = origins.get(f"{section}.{error.needed_by}")
    where = f"{variable} is set" if variable else f"[{section}] {error.needed_by} is set in {source}"
    return f"not set; {error.feature} is on because {where}"


def _gives_its_fix(err: Mapping[str, Any]) -> bool:
    return isinstance(err.get("ctx", {}).get("error"), FixedValueError)


_JUDGED = {"dashboard": "dashboard.token"}  # the key a check of a whole table judges, for where it came from


def _origin(loc: str, origins: Mapping[str, str], source: str) -> str:
    """Where the value at `loc` came from: the environment variable that set it or a key inside it, else the
    file or the defaults. The check of the whole [dashboard] table judges its token: REVIEWBOT_DASHBOARD_TOKEN
    when that set it, the file when it holds it, whatever variables set the table's other keys."""
    loc = _JUDGED.get(loc, loc)
    for key, origin in origins.items():
        if loc == key or loc.startswith(key + ".") or key.startswith(loc + "."):
            return origin
    return source


def _require_gitlab(settings: Settings) -> None:
    if settings.gitlab.token is None or not settings.gitlab.token.get_secret_value():
        raise ConfigError(f"GITLAB_TOKEN is not set: {FIXES['gitlab.token']}")
    if not settings.webhook_secrets:
        raise ConfigError(f"GITLAB_WEBHOOK_SECRET is not set: {FIXES['webhook_secrets']}")


def load_settings(
    path: str | Path | None = None, *, environ: Mapping[str, str] | None = None, require_gitlab: bool = True,
    listens: bool = True,
) -> Settings:
    """Build the settings from the TOML file (if any) and the environment, validate and freeze them.

    `path` is the `--config` option; without it REVIEWBOT_CONFIG, then ./config.toml if present.
    `require_gitlab=False` is for commands that only touch the database (`migrate`, `events`).
    `listens=False` is for commands that open no port (all but `serve`): PORT is neither read nor checked. A
    platform sets it for the web process, and a release or one-off command (`reviewbot migrate`) shares that
    environment; refusing to migrate over a port it never opens fixed nothing.
    Raises `ConfigError` naming the setting and the fix.
    """
    environ = os.environ if environ is None else environ
    if not listens:
        environ = {name: value for name, value in environ.items() if name != ENV_PORT}
    file = _config_path(path, environ)
    data = _read_toml(file)
    source = str(file) if file else "built-in defaults"
    _reject_internal_keys(data, source)
    _reject_quoted_numbers(data, source)
    origins = _apply_environment(data, environ)
    try:
        settings = Settings.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise ConfigError(_validation_message(exc, origins, source)) from None
    if require_gitlab:
        _require_gitlab(settings)
    return settings
