"""Argument types for the command line: a bad number is refused by argparse with the reason, before any work.

>>> whole(1)("3"), days()("0.5")
(3, 0.5)
>>> days(least=90)("30")
Traceback (most recent call last):
argparse.ArgumentTypeError: must be a number of days from 90 to 36525, got '30'
>>> whole(1)("0")
Traceback (most recent call last):
argparse.ArgumentTypeError: must be a whole number from 1 to 9223372036854775807, got '0'
>>> days()("nan")
Traceback (most recent call last):
argparse.ArgumentTypeError: must be a number of days from 0 to 36525, got 'nan'
"""
from __future__ import annotations

import argparse
import math
from typing import Callable

__all__ = ["whole", "days", "MOST_DAYS", "LARGEST_ID"]

MOST_DAYS = 36525       # a century: more overflows a date (`timedelta`) and means nothing here
# bot.storage.db.LARGEST_ID, which costs SQLAlchemy to import (tests/test_cli_imports.py checks they agree)
LARGEST_ID = 2**63 - 1


def whole(minimum: int, maximum: int = LARGEST_ID) -> Callable[[str], int]:
    """An int from `minimum` to `maximum`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be a whole number from {minimum} to {maximum}, got {text!r}")
        return value

    parse.__name__ = f"whole number from {minimum}"
    return parse


def days(most: float = MOST_DAYS, *, least: float = 0) -> Callable[[str], float]:
    """A number of days from `least` to `most`."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not least <= value <= most:  # NaN fails too
            raise argparse.ArgumentTypeError(f"must be a number of days from {least:g} to {most:g}, got {text!r}")
        return value

    parse.__name__ = "number of days"
    return parse
