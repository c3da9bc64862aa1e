"""Where the tests find the shared samples (../shared: real review histories, GitLab's webhook bodies and REST
answers). They are not part of the project: a test that reads them skips when they are absent.

Why one place: the folder sits beside the project's checkout on a developer's machine (`../shared`), while a clean
clone made elsewhere (CI's) finds it at `/work/shared`. Each test naming one of the two on its own skipped in the
other place.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["SHARED", "DATA", "GITLAB_API", "GITLAB_WEBHOOKS"]

SHARED = next((p for p in (Path(__file__).resolve().parents[2] / "shared", Path("/work/shared")) if p.is_dir()),
              Path("/work/shared"))
DATA = SHARED / "data"
GITLAB_API = SHARED / "gitlab" / "api"
GITLAB_WEBHOOKS = SHARED / "gitlab" / "webhooks"
