"""Errors the pipeline reports to the person running it."""
from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad input found while planning, before any GPU time is spent.

    The message names the file, the place in it (chapter, line, offset, ...),
    what is wrong, and what to do about it.
    """

    def __init__(self, path: str | Path, place: str, problem: str, hint: str) -> None:
        self.path = str(path)
        self.place = place
        self.problem = problem
        self.hint = hint
        where = f"{self.path}: {place}" if place else self.path
        super().__init__(f"{where}: {problem}. What to do: {hint}")
