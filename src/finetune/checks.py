"""Value checks for config keys: each is a test with the words that say what it accepts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Check:
    """A value test with the words that say what it accepts."""

    def __init__(self, expected: str, test: Callable[[Any], bool]) -> None:
        self.expected, self.test = expected, test

    def __call__(self, value: Any) -> bool:
        try:
            return bool(self.test(value))
        except (TypeError, ValueError):
            return False


def is_number(value: Any) -> bool:
    """An int or float, not a bool (YAML's true is no count)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def integer(low: int | None = None, *, also: tuple[Any, ...] = ()) -> Check:
    words = "an integer" + (f" >= {low}" if low is not None else "")
    words += "".join(f" or {'null' if a is None else repr(a)}" for a in also)
    return Check(words, lambda v: v in also if not _is_int(v) else low is None or v >= low)


def number(low: float | None = None, high: float | None = None, *, low_open: bool = False,
           high_open: bool = False, also: tuple[Any, ...] = ()) -> Check:
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        bounds.append(f"{'<' if high_open else '<='} {high:g}")
    words = "a number" + (" " + " and ".join(bounds) if bounds else "")
    words += "".join(f" or {'null' if a is None else repr(a)}" for a in also)

    def test(v: Any) -> bool:
        if not is_number(v):
            return v in also
        return (low is None or (v > low if low_open else v >= low)) and \
            (high is None or (v < high if high_open else v <= high))
    return Check(words, test)


def boolean(*, also: tuple[Any, ...] = ()) -> Check:
    words = "true or false" + "".join(f" or {'null' if a is None else repr(a)}" for a in also)
    return Check(words, lambda v: isinstance(v, bool) or v in also)


def one_of(*values: Any) -> Check:
    return Check("one of " + ", ".join("null" if v is None else str(v) for v in values),
                 lambda v: not isinstance(v, (list, dict)) and v in values)


def per_label(check: Check) -> Check:
    """`check`'s value, or a list of them (one per label)."""
    return Check(f"{check.expected}, or a list of them (one per label)",
                 lambda v: all(check(x) for x in v) if isinstance(v, list) else check(v))


def text(*, null: bool = False) -> Check:
    return Check("a non-empty string" + (" or null" if null else ""),
                 lambda v: (isinstance(v, str) and v.strip() != "") or (null and v is None))


CHARACTER_NAMES = {"tab": "\t", "\\t": "\t", "space": " "}  # for command lines, where a tab is awkward


def character(*, null: bool = False) -> Check:
    """One character (a space too), or tab / space by name."""
    return Check("one character, tab or space" + (" or null" if null else ""),
                 lambda v: (isinstance(v, str) and (len(v) == 1 or v in CHARACTER_NAMES)) or (null and v is None))
