"""Errors that ferkit reports to users without a traceback."""


class FerkitError(Exception):
    """A user-facing error: bad input, a bad option, a missing file.

    The CLI prints ``error: <message>`` and exits with :attr:`exit_code` (2 by default,
    the usual code for a usage error).

    Example:
        >>> raise FerkitError("data.csv: line 3: expected 2304 pixels, found 2303")
        Traceback (most recent call last):
        ...
        ferkit.utils.errors.FerkitError: data.csv: line 3: expected 2304 pixels, found 2303
    """

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


class DataError(FerkitError):
    """A dataset file or folder that ferkit cannot read as faces and labels."""


class FerkitWarning(UserWarning):
    """Something the user should know that does not stop the work (e.g. a detector fallback).

    The CLI prints these as one ``warning: <message>`` line.
    """
