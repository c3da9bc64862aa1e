"""Argument types for the command line: a bad number is refused by argparse with the reason, before any work.

>>> whole(1)("3"), days("0.5")
(3, 0.5)
>>> whole(1)("0")
Traceback (most recent call last):
argparse.ArgumentTypeError: must be a whole number of at least 1, got '0'
>>> days("nan")
Traceback (most recent call last):
argparse.ArgumentTypeError: must be a number of days, 0 or more, got 'nan'
"""
from __future__ import annotations

import argparse
import math
from typing import Callable

__all__ = ["whole", "days"]


def whole(minimum: int) -> Callable[[str], int]:
    """An int of at least `minimum`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be a whole number of at least {minimum}, got {text!r}")
        return value

    parse.__name__ = f"whole number ≥ {minimum}"
    return parse


def days(text: str) -> float:
    """A finite number of days, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a number of days, 0 or more, got {text!r}")
    return value
