"""Errors a user can act on.

Every error sizewise raises on purpose derives from :class:`SizewiseError`. The CLI prints such an error as one red
line (``message`` plus ``hint``) and exits with code 1; anything else is a bug and shows a traceback.
"""

from __future__ import annotations


class SizewiseError(Exception):
    """Base class: ``message`` says what happened (with the offending value), ``hint`` says how to fix it."""

    def __init__(self, message: str, hint: str | None = None):
        message = _one_line(message)
        super().__init__(message)
        self.message = message
        self.hint = None if hint is None else _one_line(hint)

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


def _one_line(text: str) -> str:
    """The message quotes values from files and flags as they are; a newline or other control character in one
    (a recipe value, a manifest field) is shown escaped, so the error stays the one line the CLI promises."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


class ModelReferenceError(SizewiseError):
    """A model reference could not be resolved or loaded."""


class UnsafePickleError(ModelReferenceError):
    """A whole-model pickle was given without the user saying they trust it."""


class DataError(SizewiseError):
    """A dataset path or name could not be read, or does not fit the model."""


class InputShapeError(SizewiseError):
    """The model rejected the example inputs it was given."""


class ConfigError(SizewiseError, ValueError):
    """A configuration value is out of range or of the wrong type."""


class MissingExtraError(SizewiseError, ImportError):
    """An optional dependency is not installed."""
