"""What the command line imports before it runs a command: `--help` must not load the libraries the commands use
(5-6 s on a 2-core machine), nor the webhook app the recommender's."""
import subprocess
import sys

from bot.cli import commands

HEAVY = ("sklearn", "scipy", "numpy", "sqlalchemy", "aiohttp", "pydantic", "gitlab", "rich", "networkx",
         "bot.storage", "bot.config", "graph")


def imported_after(code: str) -> set[str]:
    """The modules a fresh interpreter has imported after running `code`."""
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def heavy_in(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_help_of_reviewbot_and_of_every_subcommand_imports_none_of_the_commands_libraries():
    code = """
import contextlib, io
from bot.cli import build_parser, main
parser = build_parser()
names = list(parser._subparsers._group_actions[0].choices)
assert len(names) == 12, names
for argv in [["--help"], *([name, "--help"] for name in names), ["events", "list", "--help"]]:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        main(argv)
"""
    assert heavy_in(imported_after(code)) == []


def test_a_command_imports_its_own_module_only():
    modules = imported_after("from bot.cli import build_parser\n"
                             "build_parser().parse_args(['migrate']).func.resolve()")
    assert "bot.cli.migrate" in modules
    assert not {"bot.cli.serve", "bot.cli.demo", "bot.cli.evaluate", "sklearn"} & modules


def test_the_webhook_app_does_not_import_the_recommender():
    """`serve` listens once bot.web is imported; the handlers (and scikit-learn) come after."""
    modules = imported_after("import bot.web")
    assert not {"sklearn", "scipy", "bot.learning", "bot.engine"} & modules


def test_the_constants_the_arguments_repeat_agree_with_their_sources():
    from bot.cli import argtypes
    from bot.config import MR_RETENTION_MIN_DAYS
    from bot.storage.db import LARGEST_ID
    from bot.storage.models import MODELS_KEPT

    assert argtypes.LARGEST_ID == LARGEST_ID
    assert (commands.MR_RETENTION_MIN_DAYS, commands.MODELS_KEPT) == (MR_RETENTION_MIN_DAYS, MODELS_KEPT)
