"""How the commands that work on the database (`events`, `prune`) end on a failure: the same exit codes and
words as `serve` and `worker` (2 for a wrong setting, 1 when the database fails), written once.

    return exits_for("reviewbot prune", "prune", lambda: ...)
"""
from __future__ import annotations

import sys
from typing import Callable

from sqlalchemy.exc import SQLAlchemyError

from bot.config import ConfigError
from bot.storage import StorageError
from bot.storage.facade import cause_of

__all__ = ["exits_for"]


def exits_for(command: str, action: str, work: Callable[[], int]) -> int:
    """Run `work` (which returns the exit code); a failure is printed naming the cause and the fix. A database
    error after connecting (a read-only replica or file, a lock held) is told apart from an unreachable one."""
    try:
        return work()
    except ConfigError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return 2
    except StorageError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return 1
    except (SQLAlchemyError, OSError) as exc:
        print(f"{command}: {action} failed in the database ({cause_of(exc)[:300]}): check that it accepts "
              "writes (not a read-only replica or file, no other process holding a lock) and run it again",
              file=sys.stderr)
        return 1
