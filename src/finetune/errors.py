"""Errors a user can act on: the stage wrapper prints them as one line, without a traceback."""

from __future__ import annotations

from pathlib import Path


class FinetuneError(Exception):
    """A problem with the user's input, config or environment, explained in one line."""


class DataError(FinetuneError):
    """Bad input data, located by file, row (or line) and field."""

    def __init__(self, file: str | Path, problem: str, *, row: int | None = None, field: str | None = None,
                 where: str | None = None):
        self.file, self.row, self.field = str(file), row, field
        place = [self.file]
        if where is not None:
            place.append(where)
        elif row is not None:
            place.append(f"row {row}")
        if field is not None:
            place.append(f"field '{field}'")
        super().__init__(f"{', '.join(place)}: {problem}")


class MissingInputError(FinetuneError):
    """An earlier stage's output is missing; the message names the command that makes it."""
