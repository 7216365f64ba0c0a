"""Errors that end a run with a one-line message (never a traceback)."""


class GpuvalidError(Exception):
    """Base class: the message is shown to the user as one line."""


class InputError(GpuvalidError):
    """The input map, its metadata or the options cannot be used."""


class BackendError(GpuvalidError):
    """The requested compute device is not available."""


class NotMeasurable(GpuvalidError):
    """An analysis could not be measured on this map; the message says why."""


def one_line(message) -> str:
    """``message`` with every run of white space (newlines included) collapsed to one space."""
    return " ".join(str(message).split())


def fail(message, code: int = 2):
    """Command-line exit: print ``gpuvalid: error: <message>`` as one line on stderr, exit with ``code``."""
    import typer
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True).print(f"[bold red]gpuvalid: error:[/] {escape(one_line(message))}", highlight=False,
                               soft_wrap=True)
    raise typer.Exit(code)
