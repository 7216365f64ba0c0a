"""Errors that end a run with a one-line message (never a traceback)."""


class GpuvalidError(Exception):
    """Base class: the message is shown to the user as one line."""


class InputError(GpuvalidError):
    """The input map, its metadata or the options cannot be used."""


class BackendError(GpuvalidError):
    """The requested compute device is not available."""


class NotMeasurable(GpuvalidError):
    """An analysis could not be measured on this map; the message says why."""
