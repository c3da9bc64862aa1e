"""The test watchdog's report: printed whatever pytest's capture is."""
from __future__ import annotations

import types

from tests.hang_watch import _report


def test_the_report_is_printed_when_pytest_runs_without_its_capture_plugin(capfd):
    """`pytest -p no:capture` has no capture manager: the watchdog's thread died on None, saying nothing."""
    config = types.SimpleNamespace(pluginmanager=types.SimpleNamespace(getplugin=lambda name: None))
    _report(config, "tests/test_x.py::test_stuck")
    err = capfd.readouterr().err
    assert "tests/test_x.py::test_stuck still running after" in err and "Thread" in err
