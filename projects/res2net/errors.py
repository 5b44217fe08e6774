# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Errors caused by input that the user can fix.

The tools print these as a single ``error: ...`` line and exit with status 2
instead of a traceback: the message itself names the cause and the fix.
"""


class UserError(Exception):
    """Bad input (config, file, argument) with a message that says the fix."""


class ConfigValueError(UserError, ValueError):
    """An invalid argument value, e.g. a backbone setting out of range.

    It is also a ``ValueError`` so that callers that build models
    programmatically can catch it the usual way. mmengine's registry re-raises
    build errors as ``type(err)(prefix + message)``, which keeps this type.
    """


class CheckpointError(UserError):
    """A checkpoint that is missing, unreachable or does not fit the model."""


class CheckpointMismatch(CheckpointError):
    """A checkpoint whose keys or shapes are not the model's."""


class NonFiniteLoss(UserError):
    """Training diverged: a loss term is NaN or infinite."""


def error_line(err: BaseException) -> str:
    """``Type: first line`` of an exception: what a one-line message says
    of an error met inside a library (a config mmengine cannot read, a model
    that does not build)."""
    first = (str(err).strip().splitlines() or [''])[0]
    return f'{type(err).__name__}: {first}'
