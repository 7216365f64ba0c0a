"""Errors that end a run with a one-line message (never a traceback)."""

import sys
import unicodedata


def one_line(message) -> str:
    r"""Return ``message`` as one printable line.

    Whitespace runs are collapsed, control characters and undecodable bytes (surrogate escapes of odd file
    names) shown as escapes, and the line is at most 500 characters.

    Examples
    --------
    >>> one_line("cannot read map.mrc:\n  the header is\ttruncated")
    'cannot read map.mrc: the header is truncated'
    >>> one_line("bad\x07name")
    'bad\\x07name'
    """
    text = " ".join(str(message).split())
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    text = "".join(c if unicodedata.category(c)[0] != "C" else ascii(c)[1:-1] for c in text)
    return text if len(text) <= 500 else text[:480] + " …"


def print_error(message) -> None:
    """Write ``gpuvalid: error: <message>`` as one plain line to stderr (no markup, no colour)."""
    sys.stderr.write(f"gpuvalid: error: {one_line(message)}\n")
    sys.stderr.flush()


class GpuvalidError(Exception):
    """Base class: the message is shown to the user as one line."""


class InputError(GpuvalidError):
    """The input map, its metadata or the options cannot be used."""


class BackendError(GpuvalidError):
    """The requested compute device is not available."""


class NotMeasurable(GpuvalidError):
    """An analysis could not be measured on this map; the message says why."""


def fail(message, code: int = 2):
    """Exit the command line: print ``gpuvalid: error: <message>`` as one line on stderr, exit with ``code``.

    Raises
    ------
    typer.Exit
        Always, with exit status ``code``.
    """
    import typer

    print_error(message)
    raise typer.Exit(code)
