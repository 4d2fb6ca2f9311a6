"""The library's one error type for bad input, with no knowledge of the command line.

Library functions raise :class:`InputError` with the logical argument the bad value belongs to (an argument
dataclass field name such as ``"model_name_or_path"``, or None for a file's own content) and the value itself. The
script layer (:mod:`langadapt.cli`) turns it into ``error: --<flag>: <message>`` and exit status 2; other callers
(tests, notebooks, other tools) get a normal exception whose ``arg`` and ``value`` they can inspect.
"""

from __future__ import annotations

from typing import Any


class InputError(Exception):
    """Bad input from the user: a missing or malformed file, or a value out of range.

    ``message`` says what is wrong and what to do, and names the file when there is one. ``arg`` is the argument
    field the value came from (rendered as a flag by the script layer), ``value`` the offending value.
    """

    def __init__(self, message: str, *, arg: str | None = None, value: Any = None):
        super().__init__(message)
        self.message = message
        self.arg = arg
        self.value = value

    def render(self, flag: str | None = None) -> str:
        """The one-line message a user sees: ``--flag: message`` when the error belongs to an argument."""
        name = flag or (f"--{self.arg}" if self.arg else None)
        if name and not self.message.startswith(name):
            return f"{name}: {self.message}"
        return self.message
