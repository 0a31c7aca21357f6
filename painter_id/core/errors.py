"""The one kind of error a user is shown: a one-line message that says what to fix."""

from __future__ import annotations

import reprlib


class PipelineError(Exception):
    """A problem the user can fix: bad input, a bad param, a missing file or service.

    The message is shown as one line, without a traceback, so it must name the file or
    param at fault and say what to do.
    """


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name when the message is empty."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def show(value: object) -> str:
    """A short ``repr`` of a user's value for an error message, whatever its size (never unbounded)."""
    short = reprlib.Repr()
    short.maxlevel, short.maxlist, short.maxdict, short.maxtuple = 2, 4, 4, 4
    short.maxstring, short.maxother, short.maxlong = 60, 60, 40
    return short.repr(value)
