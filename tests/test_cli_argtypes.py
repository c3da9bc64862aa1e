"""Numbers on the command line (`bot.cli.argtypes`): refused by argparse with the reason, before any work."""
import json

import pytest

from bot.cli import main


@pytest.fixture
def history(tmp_path):
    path = tmp_path / "tiny.jsonl"
    path.write_text(json.dumps({"id": "1", "time": 1, "author": "ann", "reviewers": ["bob"], "files": ["a"]}) + "\n")
    return path


@pytest.mark.parametrize("args, message", [
    (["simulate", "--top", "0"], "argument --top: must be a whole number from 1 to"),
    (["simulate", "--leaver-rank", "-1"], "argument --leaver-rank: must be a whole number from 0 to"),
    (["simulate", "--open-days", "nan"], "argument --open-days: must be a number of days from 0 to 180"),
    (["simulate", "--open-days", "-1"], "argument --open-days: must be a number of days from 0 to 180"),
    (["evaluate", "--jobs", "two"], "argument --jobs: must be a whole number from 1 to 9223372036854775807, got 'two'"),
])
def test_bad_numbers_are_refused_before_any_work(history, capsys, args, message):
    with pytest.raises(SystemExit) as exit_:
        main([*args, str(history)])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["events", "requeue", "99999999999999999999999"], "argument ID: must be a whole number from 1 to"),
    (["events", "show", "-3"], "argument id: must be a whole number from 1 to"),
    (["events", "prune", "--older-than-days", "1e308"], "must be a number of days from 0 to 36525"),
    (["serve", "--port", "70000"], "argument --port: must be a whole number from 0 to 65535"),
    (["demo", "--gitlab-port", "-1"], "argument --gitlab-port: must be a whole number from 0 to 65535"),
])
def test_ids_ports_and_days_out_of_range_are_refused(capsys, args, message):
    """They overflowed the database's integers (a traceback) or a date, or reached the socket."""
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2 and message in capsys.readouterr().err
