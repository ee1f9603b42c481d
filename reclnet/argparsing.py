"""The argument parser of every ``reclnet`` command: errors as one line, exit status 2.

:class:`ArgumentParser` is :class:`argparse.ArgumentParser` whose errors are one
line on stderr naming the problem (``reclnet export: error: ... (see reclnet
export --help)``) instead of the usage block, and the ``type=`` converters here
refuse out-of-range numbers while parsing, so that a bad value stops the
command before any work with that one line, never with a traceback later.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = ["ArgumentParser", "finite_float", "int_at_least", "nonnegative_int", "positive_int"]


class ArgumentParser(argparse.ArgumentParser):
    """argparse with errors as one line naming the problem (exit status 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def int_at_least(minimum: int) -> Callable[[str], int]:
    """A ``type=`` converter: a decimal integer ``>= minimum``."""

    def convert(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    convert.__name__ = f"int >= {minimum}"
    return convert


#: ``type=`` converter: an integer >= 1.
positive_int = int_at_least(1)
#: ``type=`` converter: an integer >= 0.
nonnegative_int = int_at_least(0)


def finite_float(text: str) -> float:
    """A ``type=`` converter: a finite real number (no nan, no inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value
