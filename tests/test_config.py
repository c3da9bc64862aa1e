"""Settings: file + environment, validation messages that name the fix, secrets never shown."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from sqlalchemy.engine import make_url

from bot.config import ConfigError, Settings, load_settings, normalise_database_url
from bot.storage import Storage

EXAMPLE = Path(__file__).resolve().parents[1] / "config.example.toml"
ENV = {"GITLAB_TOKEN": "glpat-secret-token", "GITLAB_WEBHOOK_SECRET": "hook-secret-123"}


@pytest.fixture(autouse=True)
def _no_config_in_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bot.toml"
    path.write_text(text)
    return path


def with_project_tables_uncommented(text: str) -> str:
    """The example's per-project tables as an operator writes them: each `# [projects...]` line and the
    commented lines below it, up to a line that is no comment, with their `# ` taken off."""
    lines, inside = [], False
    for line in text.splitlines():
        inside = line.startswith("# [projects.") or (inside and line.startswith("#"))
        lines.append(line.removeprefix("#").removeprefix(" ") if inside else line)
    return "\n".join(lines) + "\n"


def test_the_example_file_is_valid_and_documents_every_setting(tmp_path):
    settings = load_settings(EXAMPLE, environ=ENV)
    text = EXAMPLE.read_text()
    for section in ("gitlab", "server", "database", "worker", "dashboard", "learning", "defaults"):
        for key in type(getattr(settings, section)).model_fields:
            assert f"{key} =" in text or f"# {key} =" in text, f"[{section}] {key} is not documented"
    overridden = load_settings(write(tmp_path, with_project_tables_uncommented(text)), environ=ENV)
    assert overridden.project_settings(7, "my-group/my-app").assign == "top1"
    assert overridden.project_settings(42, "other/app").skip_drafts is False


def test_the_example_file_copied_as_it_is_overrides_no_project():
    """Copied as config.toml, the example's sample tables would change a real project 42 or my-group/my-app:
    they are commented out, as the optional settings are."""
    settings = load_settings(EXAMPLE, environ=ENV)
    assert settings.projects == {}
    assert settings.project_settings(42, "my-group/my-app") == settings.defaults


def test_learning_settings_reach_the_engine(tmp_path):
    from bot.handlers import make_engine

    path = write(tmp_path, "[learning]\nretrain_labels = 0\nretrain_hours = 2\nholdout = 50\nprior = true\n")
    engine = make_engine(load_settings(path, environ=ENV), storage=None, max_projects=3)
    assert (engine.retrain_labels, engine.retrain_seconds, engine.holdout, engine.use_prior) == (None, 7200, 50, True)
    engine = make_engine(load_settings(environ=ENV), storage=None, max_projects=3)
    assert (engine.retrain_labels, engine.retrain_seconds, engine.use_prior) == (50, 86400, False)
    assert make_engine(load_settings(environ=ENV), storage=None).max_projects == 32
    path = write(tmp_path, "[worker]\nmax_projects = 4\n")  # a small machine holds fewer projects in memory
    assert make_engine(load_settings(path, environ=ENV), storage=None).max_projects == 4
    with pytest.raises(ConfigError, match="max_projects"):
        load_settings(write(tmp_path, "[worker]\nmax_projects = 0\n"), environ=ENV)
    assert make_engine(load_settings(environ=ENV), storage=None).idle_seconds == 24 * 3600
    path = write(tmp_path, "[worker]\nidle_hours = 0\n")  # idle projects are kept until pushed out
    assert make_engine(load_settings(path, environ=ENV), storage=None).idle_seconds is None
    with pytest.raises(ConfigError, match="idle_hours"):
        load_settings(write(tmp_path, "[worker]\nidle_hours = -1\n"), environ=ENV)
    with pytest.raises(ConfigError, match="holdout"):
        load_settings(write(tmp_path, "[learning]\nholdout = 1\n"), environ=ENV)


def test_defaults_without_any_file():
    settings = load_settings(environ=ENV)
    assert settings.database_url == "sqlite+aiosqlite:///reviewbot.sqlite3"
    assert settings.server.port == 8080 and settings.source == "built-in defaults"
    assert settings.defaults.ignore_label == "no-reviewer-bot" and settings.defaults.min_access_level == 30


def test_environment_overrides_the_file(tmp_path):
    path = write(tmp_path, '[gitlab]\nurl = "https://file.example"\ntoken = "from-file"\n[server]\nport = 1\n')
    env = {**ENV, "GITLAB_URL": "https://env.example/", "PORT": "5000", "DATABASE_URL": "postgres://u:p@db/x"}
    settings = load_settings(path, environ=env)
    assert settings.gitlab.url == "https://env.example"
    assert settings.gitlab.token.get_secret_value() == "glpat-secret-token"
    assert settings.server.port == 5000
    assert settings.database_url == "postgresql+asyncpg://u:p@db/x"


def test_the_gitlab_url_is_said_to_be_the_default_unless_the_file_or_the_environment_gave_it(tmp_path):
    """A newcomer who forgot GITLAB_URL sends a self-hosted GitLab's token to gitlab.com: the start-up line and
    the commands' messages say where the address came from."""
    default = "https://gitlab.com (the default: set GITLAB_URL for a self-hosted GitLab)"
    assert load_settings(environ=ENV).gitlab.address == default
    assert load_settings(write(tmp_path, '[gitlab]\nbot_username = "rb"\n'), environ=ENV).gitlab.address == default
    given = load_settings(write(tmp_path, '[gitlab]\nurl = "https://gitlab.com/"\n'), environ=ENV)
    assert given.gitlab.address == "https://gitlab.com"  # the default's value, given on purpose
    env = {**ENV, "GITLAB_URL": "https://gitlab.example.com"}
    assert load_settings(environ=env).gitlab.address == "https://gitlab.example.com"
    assert "glpat-secret-token" not in default


def test_config_path_comes_from_reviewbot_config_then_the_working_directory(tmp_path):
    path = write(tmp_path, "[server]\nport = 9001\n")
    assert load_settings(environ={**ENV, "REVIEWBOT_CONFIG": str(path)}).server.port == 9001
    (tmp_path / "config.toml").write_text("[server]\nport = 9002\n")
    assert load_settings(environ=ENV).server.port == 9002


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@h:5432/d", "postgresql+asyncpg://u:p@h:5432/d"),
        ("postgresql://u@h/d?sslmode=require", "postgresql+asyncpg://u@h/d?ssl=require"),
        ("postgresql+asyncpg://u@h/d", "postgresql+asyncpg://u@h/d"),
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ],
)
def test_database_urls_are_normalised_for_the_async_drivers(url, expected):
    assert normalise_database_url(url) == expected


def test_secrets_are_redacted_everywhere():
    env = {**ENV, "DATABASE_URL": "postgres://bot:db-password@db/x"}
    settings = load_settings(environ=env)
    for shown in (repr(settings), str(settings), str(settings.describe())):
        for secret in ("glpat-secret-token", "hook-secret-123", "db-password"):
            assert secret not in shown
    assert settings.describe()["database"]["url"] == "postgresql+asyncpg://bot:***@db/x"


def test_a_password_given_as_a_query_parameter_is_redacted_too():
    settings = load_settings(environ={**ENV, "DATABASE_URL": "postgresql://bot@db/x?password=pw-in-query&ssl=on"})
    assert settings.describe()["database"]["url"] == "postgresql+asyncpg://bot@db/x?password=***&ssl=on"
    assert "pw-in-query" not in repr(Storage(settings.database_url))


@pytest.mark.parametrize(
    ("env", "toml", "message"),
    [
        ({"GITLAB_WEBHOOK_SECRET": "hook-secret-123"}, "", "GITLAB_TOKEN is not set: create a personal"),
        ({"GITLAB_TOKEN": "t"}, "", "GITLAB_WEBHOOK_SECRET is not set"),
        ({**ENV, "PORT": "http"}, "", "setting server.port (from environment variable PORT)"),
        (ENV, "[server]\nport = 70000\n", "a port number from 1 to 65535 in PORT (which wins) or [server] port"),
        (ENV, "[server]\nprot = 1\n", "setting server.prot (from "),
        (ENV, "[worker]\nconcurrency = 0\n", "setting worker.concurrency"),
        (ENV, "[worker]\nlease_seconds = 10\ndispatch_timeout = 20\n", "must exceed dispatch_timeout"),
        (ENV, '[defaults]\nassign = "all"\n', "setting defaults.assign"),
        (ENV, "[defaults]\nmin_access_level = 35\n", "GitLab access levels"),
        (ENV, '[projects."g/p"]\ntop_kk = 2\n', '[projects."g/p"] unknown setting `top_kk`; did you mean `top_k`?'),
        (ENV, '[[webhook_secrets]]\nsecret = "ssssssss"\nproject = 1\ngroup = "g"\n', "either project or group"),
        (ENV, '[database]\nurl = "mysql://x"\n', "only SQLite"),
        (ENV, "[gitlab\n", "is not valid TOML"),
        (ENV, '[gitlab]\nurl = "gitlab.com"\n', "must start with http"),
        ({**ENV, "GITLAB_URL": "https://bot:pw@gitlab.example.com"}, "", "no user:password@"),
        (ENV, '[defaults]\nbots = "renovate"\n', 'must be a list of usernames, e.g. bots = ["renovate"]'),
        (ENV, '[projects."g/p"]\nexclude = "alice, bob"\n', 'exclude = ["alice", "bob"]'),
        (ENV, '[defaults]\ntop_k = "3"\n', 'setting defaults.top_k (from '),
        (ENV, '[defaults]\ntop_k = "3"\n', 'a number in quotes ("3"): write it without quotes, top_k = 3'),
        (ENV, '[projects.42]\nhalf_life_days = "30.5"\n', "[projects.42] half_life_days (from "),
        (ENV, '[worker]\nconcurrency = "2"\n', "write it without quotes, concurrency = 2"),
    ],
)
def test_a_wrong_or_missing_setting_names_the_setting_and_the_fix(tmp_path, env, toml, message):
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, toml), environ=env)
    assert message in str(info.value)


def test_a_missing_config_file_is_an_error_naming_its_origin(tmp_path):
    with pytest.raises(ConfigError, match="from REVIEWBOT_CONFIG"):
        load_settings(environ={**ENV, "REVIEWBOT_CONFIG": str(tmp_path / "nope.toml")})
    with pytest.raises(ConfigError, match="from --config"):
        load_settings(tmp_path / "nope.toml", environ=ENV)


def test_a_number_from_the_environment_is_a_string_and_taken(tmp_path):
    settings = load_settings(write(tmp_path, "[server]\nport = 8080\n"), environ={**ENV, "PORT": "8081"})
    assert settings.server.port == 8081


def test_only_a_command_that_listens_reads_port():
    """A platform sets PORT for the web process; `reviewbot migrate` in the same environment opens no port."""
    settings = load_settings(environ={**ENV, "PORT": "http"}, listens=False)
    assert settings.server.port == 8080
    with pytest.raises(ConfigError, match="setting server.port"):
        load_settings(environ={**ENV, "PORT": "http"})


def test_database_only_commands_need_no_gitlab_settings():
    assert load_settings(environ={}, require_gitlab=False).gitlab.token is None


def test_project_settings_resolve_defaults_then_path_then_id_then_database_overrides(tmp_path):
    path = write(tmp_path, """
[defaults]
top_k = 4
mention = true
[projects."g/app"]
top_k = 2
assign = "top1"
[projects.7]
top_k = 1
""")
    settings = load_settings(path, environ=ENV)
    assert settings.project_settings(99, "g/other").top_k == 4
    by_path = settings.project_settings(99, "g/app")
    assert (by_path.top_k, by_path.assign, by_path.mention) == (2, "top1", True)
    assert settings.project_settings(7, "g/app").top_k == 1
    assert settings.project_settings(7, "g/app", overrides={"top_k": 9}).top_k == 9
    with pytest.raises(ConfigError, match="top_k"):
        settings.project_settings(7, "g/app", overrides={"top_k": 0})


def test_webhook_secrets_are_scoped_to_projects_and_groups():
    settings = Settings(webhook_secrets=[
        {"secret": "all-0123"}, {"secret": "grp-0123", "group": "g"}, {"secret": "id-01234", "project": 5},
        {"secret": "path-0123", "project": "g/sub/app"},
    ])
    assert settings.secrets_for(5, "g/sub/app") == [b"all-0123", b"grp-0123", b"id-01234", b"path-0123"]
    assert settings.secrets_for(6, "gg/app") == [b"all-0123"]
    assert settings.secrets_for(None, None) == [b"all-0123"]
    assert len(settings.all_secrets()) == 4
    assert settings.secrets_for(7, "G/Sub/App") == [b"all-0123", b"grp-0123", b"path-0123"]  # paths ignore case


def test_project_settings_match_the_path_in_any_case():
    settings = Settings(defaults={"top_k": 3}, projects={"flightjs/flight": {"top_k": 2}})
    assert settings.project_settings(6, "flightjs/Flight").top_k == 2


def test_settings_keyed_by_a_former_path_are_named_when_the_project_moves():
    """Settings keyed by path stop applying when GitLab renames or moves the project (its id stays): the
    warning names the table and the id to key it by, unless an id or the new path configures the project."""
    settings = Settings(projects={"Group/App": {"top_k": 2}, "9": {"top_k": 1}, "g/new": {"top_k": 4}})
    warning = settings.moved_warning(5, "group/app", "platform/app")
    assert warning is not None and '[projects."Group/App"]' in warning and "[projects.5]" in warning
    assert settings.moved_warning(9, "group/app", "platform/app") is None  # keyed by id too
    assert settings.moved_warning(5, "group/app", "g/new") is None  # the new path is configured
    assert settings.moved_warning(5, "group/app", "group/App") is None  # a change of case only: still matches
    assert settings.moved_warning(5, "other/app", "platform/app") is None  # nothing configured it


def test_settings_are_frozen():
    settings = load_settings(environ=ENV)
    with pytest.raises(Exception, match="frozen"):
        settings.server.port = 1  # type: ignore[misc]


def test_the_dashboard_is_off_by_default_and_needs_a_long_token_when_on(tmp_path):
    assert load_settings(environ=ENV).dashboard.enabled is False
    path = write(tmp_path, "[dashboard]\nenabled = true\n")
    with pytest.raises(ConfigError, match=r"setting dashboard .*token of at least 16 .*REVIEWBOT_DASHBOARD_TOKEN"):
        load_settings(path, environ=ENV)
    settings = load_settings(path, environ={**ENV, "REVIEWBOT_DASHBOARD_TOKEN": "dashboard-token-0123456789"})
    assert settings.dashboard.token.get_secret_value() == "dashboard-token-0123456789"
    assert "dashboard-token-0123456789" not in repr(settings) + str(settings.describe())


# --- files that cannot be read, values that break the bot at run time, secrets in messages ------------------

def unreadable_file(tmp_path: Path) -> Path:
    """A config file whose read fails: mode 000, or (as root, who reads anything) a kernel file that refuses."""
    path = write(tmp_path, "[server]\nport = 8080\n")
    path.chmod(0)
    for candidate in (path, Path("/proc/sys/vm/drop_caches")):
        try:
            if candidate.is_file():
                candidate.read_bytes()
        except OSError:
            return candidate
    pytest.skip("no unreadable file here (running as root without /proc)")


def test_a_config_file_that_is_not_utf8_or_cannot_be_read_is_a_config_error(tmp_path):
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe[gitlab]\n")  # saved as UTF-16 by a Windows editor
    with pytest.raises(ConfigError, match=rf"{binary} is not UTF-8 text .*: save it as UTF-8"):
        load_settings(binary, environ=ENV)
    unreadable = unreadable_file(tmp_path)
    with pytest.raises(ConfigError, match=rf"{unreadable} cannot be read \(.+\): make it readable"):
        load_settings(unreadable, environ=ENV)


@pytest.mark.parametrize("command", [["serve"], ["worker"], ["migrate"], ["events", "list"]])
def test_every_command_reports_an_unreadable_config_in_one_line(tmp_path, capsys, command):
    from bot.cli import main

    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe[gitlab]\n")
    assert main([*command, "--config", str(binary)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"reviewbot {command[0]}: {binary} is not UTF-8") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[worker]\nlease_seconds = 1e12\n", "setting worker.lease_seconds (from {file}): Input should be less "
                                            "than or equal to 86400: allowed: more than 0 and at most 86400"),
        ("[worker]\nlease_seconds = inf\n", "setting worker.lease_seconds (from {file}): Input should be a finite"),
        ("[worker]\nretention_days = 1e10\n", "worker.retention_days (from {file}): Input should be less than or "
                                              "equal to 36525: allowed: at least 1 and at most 36525"),
        ("[worker]\nretention_days = inf\n", "worker.retention_days (from {file}): Input should be a finite"),
        ("[worker]\nbackoff = 100\nbackoff_max = 1\n", "backoff (100.0) must not exceed backoff_max (1.0)"),
        ("[worker]\nbackoff_max = 1e300\n", "worker.backoff_max (from {file}): Input should be less than or equal"),
        ("[worker]\nmax_attempts = 100000\n", "worker.max_attempts (from {file}): Input should be less than or equal"),
        ("[worker]\npoll_interval = nan\n", "worker.poll_interval (from {file}): Input should be a finite"),
        ("[worker]\nprune_interval = inf\n", "worker.prune_interval (from {file}): Input should be a finite"),
        ("[learning]\nretrain_hours = inf\n", "learning.retrain_hours (from {file}): Input should be a finite"),
        ("[defaults]\nhalf_life_days = inf\n", "defaults.half_life_days (from {file}): Input should be a finite"),
        ('[projects."g/p"]\nhalf_life_days = 0\n', '[projects."g/p"] half_life_days: Input should be greater'),
        # values that used to pass silently
        ('source = "elsewhere"\n', "setting source (from {file}): unknown setting"),
        ('[[webhook_secrets]]\nsecret = "x"\n', "setting webhook_secrets.0.secret (from {file}): "
                                                "secret must be at least 8 characters"),
        ('[[webhook_secrets]]\nsecret = "          "\n', "webhook_secrets.0.secret (from {file})"),
        ('[[webhook_secrets]]\nsecret = " hook-secret-456 "\n', "(got 15 and surrounding spaces)"),
        ('[[webhook_secrets]]\nsecret = "hook-secret-456"\ngroup = ""\n', "webhook_secrets.0.group (from {file})"),
        ('[[webhook_secrets]]\nsecret = "hook-secret-456"\nproject = ""\n', "webhook_secrets.0.project (from"),
        ('[[webhook_secrets]]\nsecret = "hook-secret-456"\nproject = -5\n', "must be a positive project id"),
        ('[projects."A/b"]\ntop_k = 1\n[projects."a/b"]\ntop_k = 2\n',
         '[projects."A/b"] and [projects."a/b"] name the same project'),
        ('[defaults]\nmention = "yes"\n', "setting defaults.mention (from {file}): Input should be a valid boolean: "
                                          "allowed: true or false, without quotes"),
        ("[projects.5]\nskip_drafts = 0\n", "[projects.5] skip_drafts: Input should be a valid boolean"),
        ("[dashboard]\nenabled = 1\n", "setting dashboard.enabled (from {file})"),
    ],
)
def test_values_that_would_overflow_or_used_to_pass_silently_are_refused(tmp_path, toml, message):
    path = write(tmp_path, toml)
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ=ENV)
    assert message.format(file=path) in str(info.value)
    assert "hook-secret-456" not in str(info.value)


async def test_the_largest_allowed_worker_values_still_fit_the_database(tmp_path, storage):
    from bot.storage.events import backoff_delay
    from bot.worker import retention

    cfg = load_settings(write(tmp_path, "[worker]\nlease_seconds = 86400\ndispatch_timeout = 86399\n"
                                        "max_attempts = 1000\nbackoff = 86400\nbackoff_max = 86400\n"
                                        "retention_days = 36525\ndead_retention_days = 36525\n"
                                        "mr_retention_days = 36525\n"), environ=ENV).worker
    await storage.events.store_event(dedupe_key="k", kind="Merge Request Hook", action="open", project_id=7,
                                     mr_iid=1, headers={}, body={"object_kind": "merge_request"})
    [row] = await storage.events.claim("w", cfg.lease_seconds, 1, max_attempts=cfg.max_attempts)
    delay = backoff_delay(cfg.max_attempts, cfg.backoff, cfg.backoff_max)
    status = await storage.events.retry_later(row.id, "boom", delay, max_attempts=cfg.max_attempts, owner="w")
    assert status == "failed"
    assert await storage.events.prune(timedelta(days=cfg.retention_days)) == 0
    assert set((await storage.prune(**retention(cfg))).values()) == {0}


def test_an_address_without_its_scheme_is_named_with_the_fix_and_without_its_secrets():
    with pytest.raises(ConfigError) as info:
        load_settings(environ={**ENV, "GITLAB_URL": "bot:pw-in-url@gitlab.example.com:8443?private_token=tok"})
    assert "'gitlab.example.com:8443' (no scheme: add https://)" in str(info.value)
    assert "pw-in-url" not in str(info.value) and "tok" not in str(info.value)
    for token in ("glpat-SECRET.example.com", "SECRETTOKEN", "eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJlMTIz"):
        with pytest.raises(ConfigError) as info:
            load_settings(environ={**ENV, "GITLAB_URL": token})
        assert "not a URL (not shown" in str(info.value) and "SECRET" not in str(info.value)
        assert token not in str(info.value)


def test_a_value_given_as_gitlab_url_is_echoed_only_when_it_is_a_url(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_settings(environ={**ENV, "GITLAB_URL": "glpat-SECRETTOKEN"})
    assert "must start with http:// or https://" in str(info.value) and "SECRETTOKEN" not in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_settings(environ={**ENV, "GITLAB_URL": "ftp://bot:pa/ss@gitlab.example.com/x?private_token=tok"})
    assert "got 'ftp://gitlab.example.com/x'" in str(info.value)
    assert not any(leak in str(info.value) for leak in ("pa/ss", "bot:", "private_token"))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://gitlab.example.com/api/v4", "give the base URL without /api/v4"),
        ("https://gitlab.example.com/API/v4/", "give the base URL without /api/v4"),
        ("https://", "has no host name"),
        ("https://:443/", "has no host name"),
        ("https://git lab", "must not contain spaces"),
        ("https://gitlab.example.com:glpat-secret", "is not a valid URL"),
        ("https://gitlab.example.com/#x", "no user:password@, no ?query"),
    ],
)
def test_a_gitlab_url_that_is_not_a_base_url_is_refused(tmp_path, url, message):
    path = write(tmp_path, f'[gitlab]\nurl = "{url}"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ=ENV)
    assert f"setting gitlab.url (from {path}): " in str(info.value) and "Value error" not in str(info.value)
    assert message in str(info.value) and "glpat-secret" not in str(info.value)


def test_an_instance_under_a_path_is_a_base_url():
    assert load_settings(environ={**ENV, "GITLAB_URL": "https://example.com/gitlab/"}).gitlab.url == (
        "https://example.com/gitlab")


def test_a_short_webhook_secret_from_the_environment_is_named_but_not_shown():
    with pytest.raises(ConfigError) as info:
        load_settings(environ={**ENV, "GITLAB_WEBHOOK_SECRET": "tiny7ch"})
    assert "webhook_secrets.0.secret (from environment variable GITLAB_WEBHOOK_SECRET)" in str(info.value)
    assert "tiny7ch" not in str(info.value)


def test_a_token_with_a_line_break_is_named_at_start(tmp_path):
    """An env file or a pasted secret keeps the last newline: the HTTP library refused the header later, in a
    traceback that named no setting."""
    with pytest.raises(ConfigError) as info:
        load_settings(None, environ={**ENV, "GITLAB_TOKEN": "glpat-abc\n"})
    said = str(info.value)
    assert said.startswith("setting gitlab.token (from environment variable GITLAB_TOKEN): holds whitespace")
    assert "glpat-abc" not in said
    # the fix is to drop the line break, not to create another token
    assert "the token alone" in said and "create a personal" not in said


@pytest.mark.parametrize("text, name", [('gitlab = "https://gitlab.example.com"\n', "gitlab"),
                                        ('database = 3\n', "database"),
                                        ('webhook_secrets = "abcdefghijk"\n', "webhook_secrets")])
def test_a_section_written_as_a_value_is_a_config_error_beside_the_environment(tmp_path, text, name):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=f"setting {name}: must be a"):
        load_settings(path, environ={**ENV, "GITLAB_URL": "https://gitlab.example.com",
                                     "DATABASE_URL": "sqlite:///x.sqlite3"})


@pytest.mark.parametrize("text", ['[defaults]\nmax_open_reviews = true\n', '[projects."acme/tiny"]\ntop_k = true\n',
                                  '[projects."acme/tiny"]\nhalf_life_days = false\n', '[worker]\nconcurrency = true\n'])
def test_true_or_false_for_a_number_is_refused(tmp_path, text):
    """`max_open_reviews = true` ("turn the limit on") was read as a limit of 1 review, silently."""
    with pytest.raises(ConfigError, match="must be a number, not true or false"):
        load_settings(write(tmp_path, text), environ=ENV)


def test_true_for_a_number_in_a_stored_override_is_refused():
    with pytest.raises(ConfigError, match="must be a number, not true or false"):
        load_settings(None, environ=ENV).project_settings(1, "a/b", overrides={"max_open_reviews": True})


def test_the_examples_secrets_are_refused(tmp_path):
    """config.example.toml is public: its sample secrets, copied along with the file, would let anyone in."""
    path = write(tmp_path, '[[webhook_secrets]]\nsecret = "change-me-to-a-long-random-string"\n')
    with pytest.raises(ConfigError, match=r"webhook_secrets.*example from config.example.toml.*choose your own"):
        load_settings(path, environ=ENV)
    assert "webhook_secrets" not in (line.partition("#")[0] for line in EXAMPLE.read_text().splitlines())


def test_a_dashboard_token_alone_turns_the_dashboard_on(tmp_path):
    """On a platform configured by environment only, REVIEWBOT_DASHBOARD_TOKEN is all an operator can set."""
    env = {**ENV, "REVIEWBOT_DASHBOARD_TOKEN": "dashboard-token-0123456789"}
    assert load_settings(environ=env).dashboard.enabled is True
    assert load_settings(write(tmp_path, "[dashboard]\nenabled = false\n"), environ=env).dashboard.enabled is False
    assert load_settings(EXAMPLE, environ=env).dashboard.enabled is True


def test_a_short_dashboard_token_names_the_variable_it_came_from():
    with pytest.raises(ConfigError) as info:
        load_settings(environ={**ENV, "REVIEWBOT_DASHBOARD_TOKEN": "short"})
    assert str(info.value).startswith("setting dashboard (from environment variable REVIEWBOT_DASHBOARD_TOKEN): ")
    assert "short" not in str(info.value).replace("(got 5)", "")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[projects."a/b"]\nasign = "top1"\n', '[projects."a/b"] unknown setting `asign`; did you mean `assign`?'),
        ("[projects.7]\nmax_open_review = 2\n", "unknown setting `max_open_review`; did you mean `max_open_reviews`?"),
        ("[worker]\nconcurency = 3\n", "setting worker.concurency (from {file}): unknown setting `concurency`; "
                                       "did you mean `concurrency`?"),
        ("[servr]\nport = 9000\n", "setting servr (from {file}): unknown setting `servr`; did you mean `server`?"),
        ('[[webhook_secrets]]\nsecret = "hook-secret-456"\nprojet = "a/b"\n',
         "unknown setting `projet`; did you mean `project`?"),
        ("zzzz = 1\n", "setting zzzz (from {file}): unknown setting `zzzz`: see config.example.toml"),
    ],
)
def test_an_unknown_key_is_named_with_the_nearest_known_one(tmp_path, toml, message):
    path = write(tmp_path, toml)
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ=ENV)
    assert message.format(file=path) in str(info.value)
    assert "Extra inputs" not in str(info.value)


def test_an_unknown_key_among_a_projects_stored_settings_is_named_too():
    with pytest.raises(ConfigError, match=r"^project g/p: unknown setting `top_kk`; did you mean `top_k`\?$"):
        load_settings(environ=ENV).project_settings(1, "g/p", {"top_kk": 2})


def test_a_config_path_that_is_a_directory_says_so(tmp_path):
    for settings in ({"path": tmp_path}, {"environ": {**ENV, "REVIEWBOT_CONFIG": str(tmp_path)}}):
        with pytest.raises(ConfigError, match=r"is a directory: give the path of the TOML file, e\.g\. .*config\.toml"):
            load_settings(**{"environ": ENV, **settings})


# --- GitLab sign-in for the dashboard ---------------------------------------------------------------------------
APP_SECRET = "gloas-0123456789abcdef-application-secret"
SIGN_IN = {"REVIEWBOT_GITLAB_APP_ID": "a1b2c3d4e5f6", "REVIEWBOT_GITLAB_APP_SECRET": APP_SECRET,
           "REVIEWBOT_PUBLIC_URL": "https://reviewbot.example.com/"}


def test_gitlab_sign_in_alone_turns_the_dashboard_on_and_its_secret_is_never_shown(tmp_path):
    settings = load_settings(environ={**ENV, **SIGN_IN})
    dashboard = settings.dashboard
    assert dashboard.enabled and dashboard.token is None and dashboard.gitlab_sign_in
    assert dashboard.public_url == "https://reviewbot.example.com"  # the callback is appended to it
    assert APP_SECRET not in repr(settings) + str(settings.describe()) + str(settings)
    off = write(tmp_path, "[dashboard]\nenabled = false\n")
    assert load_settings(off, environ={**ENV, **SIGN_IN}).dashboard.enabled is False
    both = load_settings(environ={**ENV, **SIGN_IN, "REVIEWBOT_DASHBOARD_TOKEN": "dashboard-token-0123456789"})
    assert both.dashboard.gitlab_sign_in and both.dashboard.token is not None


@pytest.mark.parametrize(("drop", "change", "message"), [
    ("REVIEWBOT_GITLAB_APP_SECRET", {},
     "setting dashboard.gitlab_app_secret (not set; GitLab sign-in is on because environment variable "
     "REVIEWBOT_GITLAB_APP_ID is set): is missing: GitLab sign-in needs the application's secret too"),
    ("REVIEWBOT_GITLAB_APP_ID", {}, "setting dashboard.gitlab_app_secret (from environment variable "
                                    "REVIEWBOT_GITLAB_APP_SECRET): is set without gitlab_app_id"),
    ("REVIEWBOT_PUBLIC_URL", {},
     "setting dashboard.public_url (not set; GitLab sign-in is on because environment variable "
     "REVIEWBOT_GITLAB_APP_ID is set): is missing: GitLab sign-in sends people back to "
     "<public_url>/auth/gitlab/callback: export REVIEWBOT_PUBLIC_URL="),
    (None, {"REVIEWBOT_PUBLIC_URL": "reviewbot.example.com"},
     "setting dashboard.public_url (from environment variable REVIEWBOT_PUBLIC_URL): must start with http:// or "
     "https://"),
    (None, {"REVIEWBOT_PUBLIC_URL": "https://u:pw@reviewbot.example.com"},
     "setting dashboard.public_url (from environment variable REVIEWBOT_PUBLIC_URL): must be the dashboard's "
     "address alone"),
    (None, {"REVIEWBOT_PUBLIC_URL": "https://example.com/reviewbot/"},
     "setting dashboard.public_url (from environment variable REVIEWBOT_PUBLIC_URL): must be a host name without a "
     "path (got /reviewbot/)"),
    (None, {"REVIEWBOT_GITLAB_APP_SECRET": APP_SECRET + "\n"},
     "setting dashboard.gitlab_app_secret (from environment variable REVIEWBOT_GITLAB_APP_SECRET): must be the "
     "application's Secret, one word"),
    (None, {"REVIEWBOT_DASHBOARD_TOKEN": "short"},
     "setting dashboard (from environment variable REVIEWBOT_DASHBOARD_TOKEN): the token (which turns the "
     "dashboard on) needs at least 16"),
])
def test_a_wrong_gitlab_sign_in_setting_stops_start_up_naming_it_and_the_fix(drop, change, message):
    env = {**ENV, **{k: v for k, v in SIGN_IN.items() if k != drop}, **change}
    with pytest.raises(ConfigError) as info:
        load_settings(environ=env)
    said = str(info.value)
    assert said.startswith(message), said
    assert APP_SECRET not in said and "pw@" not in said
    assert "Applications" in said or "REVIEWBOT_PUBLIC_URL=" in said or "token" in said  # the fix


def test_a_sign_in_setting_missing_names_what_turned_the_sign_in_on(tmp_path):
    """The missing secret and address come from nowhere: the message names the setting that asks for them, in
    the file or in the environment, rather than "(from built-in defaults)" or the file that does not hold them."""
    path = write(tmp_path, '[dashboard]\ngitlab_app_id = "a1b2c3d4e5f6"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ=ENV)
    said = str(info.value)
    assert said.startswith(f"setting dashboard.gitlab_app_secret (not set; GitLab sign-in is on because [dashboard] "
                           f"gitlab_app_id is set in {path}): is missing: "), said
    assert f"setting dashboard.public_url (not set; GitLab sign-in is on because [dashboard] gitlab_app_id is set " \
           f"in {path}): is missing: " in said
    assert "REVIEWBOT_GITLAB_APP_SECRET (or [dashboard] gitlab_app_secret)" in said  # the fix, either way
    assert "REVIEWBOT_PUBLIC_URL=https://reviewbot.example.com (or [dashboard] public_url)" in said
    assert "built-in defaults" not in said


def test_a_short_token_in_the_file_is_said_to_come_from_the_file_beside_sign_in_variables(tmp_path):
    """The check of the whole [dashboard] table judges the token: the variables that set other keys of the
    table are not where it came from."""
    path = write(tmp_path, '[dashboard]\ntoken = "short"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={**ENV, **SIGN_IN})
    assert str(info.value).startswith(f"setting dashboard (from {path}): the token (which turns the dashboard on) "
                                      "needs at least 16 characters (got 5)"), str(info.value)


def test_enabled_without_a_token_names_gitlab_sign_in_as_a_fix(tmp_path):
    with pytest.raises(ConfigError, match=r"enabled needs GitLab sign-in or a token of at least 16 .*gitlab_app_id"):
        load_settings(write(tmp_path, "[dashboard]\nenabled = true\n"), environ=ENV)


def test_an_empty_token_beside_gitlab_sign_in_stops_start_up(tmp_path):
    """`token = ""` meant as "no token" would be matched by an empty Bearer or ?token= and show every project."""
    with pytest.raises(ConfigError, match=r"setting dashboard .*the token is empty: it needs at least 16"):
        load_settings(write(tmp_path, '[dashboard]\ntoken = ""\n'), environ={**ENV, **SIGN_IN})
    assert load_settings(environ={**ENV, **SIGN_IN}).dashboard.token is None  # no token at all: GitLab alone


@pytest.mark.parametrize("password", ["pa?ss", "p?x&sslmode=y", "a%3Fb"])
def test_a_password_holding_a_question_mark_is_no_query(password):
    """The query of a PostgreSQL URL starts where SQLAlchemy (which connects) says, not at the first `?`: a
    password holding one was refused at start as an unknown URL parameter, named by the password's end, and
    the real `sslmode` after it went to the driver unrespelled."""
    url = f"postgresql://bot:{password}@db/x?sslmode=require&connect_timeout=5"
    settings = load_settings(environ={**ENV, "DATABASE_URL": url})
    parsed = make_url(settings.database_url)
    assert parsed.password == password.replace("%3F", "?")
    assert dict(parsed.query) == {"ssl": "require", "timeout": "5"}


def test_an_unknown_url_parameter_is_named_without_the_password():
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={**ENV, "DATABASE_URL": "postgresql://bot:sec?Zq9w@db/x?options=-c%20x"})
    assert "`options`" in str(caught.value) and "Zq9w" not in str(caught.value)


@pytest.mark.parametrize("url", ["postgresql://bot@db/x?sslrootcert=/ca.pem", "postgresql://bot:p@ss@db/x"])
def test_a_database_url_refused_for_its_parameters_or_password_gets_its_own_fix_alone(url):
    """Only that fix: the general one after it ("use e.g. sqlite+aiosqlite:///reviewbot.sqlite3 or ...") told
    someone who had to move a certificate path into PGSSLROOTCERT to switch databases."""
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={**ENV, "DATABASE_URL": url})
    said = str(caught.value)
    assert ("PGSSLROOTCERT" in said or "%40" in said) and "sqlite" not in said


def test_a_database_url_of_another_kind_still_gets_the_example():
    with pytest.raises(ConfigError, match="use e.g. sqlite"):
        load_settings(environ={**ENV, "DATABASE_URL": "mysql://bot@db/x"})


def test_a_key_password_in_the_url_is_not_sent_to_an_environment_variable_the_driver_never_reads():
    """asyncpg reads PGSSLROOTCERT, PGSSLCERT, PGSSLKEY and PGSSLCRL, but no PGSSLPASSWORD: the advice to set
    it left an encrypted key unreadable, with no word of why."""
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={**ENV, "DATABASE_URL": "postgresql://bot@db/x?sslkey=/k.pem&sslpassword=Zq9w"})
    said = str(caught.value)
    assert "PGSSLKEY" in said and "PGSSLPASSWORD" not in said and "Zq9w" not in said
    assert "unencrypted" in said


@pytest.mark.parametrize("url", ["postgresql://bot:p@ss:Zq9w@db.example/x", "postgres://bot:p@127.0.0.1/Zq9w@db/x",
                                 "postgresql://bot:p@ss:Zq9w@db.example:5432/x?sslmode=require"])
def test_a_password_holding_an_unescaped_at_is_refused_without_showing_it(url):
    """SQLAlchemy ends the password at its first `@` and reads the rest as host, port or database: start-up then
    failed showing that rest, a piece of the password ("invalid literal for int() with base 10: 'Zq9w@db.example'",
    "create it (createdb Zq9w@db/x)")."""
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={**ENV, "DATABASE_URL": url})
    assert "%40" in str(caught.value) and "Zq9w" not in str(caught.value)
    assert load_settings(environ={**ENV, "DATABASE_URL": url.replace("p@ss", "p%40ss").replace("p@127.0.0.1/Zq9w",
                                                                                               "p%40127.0.0.1%2FZq9w")})
