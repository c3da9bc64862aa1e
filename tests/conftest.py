"""Shared fixtures: the GitLab simulator and client, and storage on SQLite and PostgreSQL."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

pytest_plugins = ["tests.gitlab_fixtures", "tests.storage_fixtures", "tests.hang_watch"]
