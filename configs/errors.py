"""The root of the project's known errors: a message the user can act on, and no traceback for it."""

from __future__ import annotations


class AppError(Exception):
    """A known error (bad input, settings, data, or a model or store that cannot be used).

    Every project error derives from it, so one place (`configs.cli`) turns them into one line and exit status 2.
    """
