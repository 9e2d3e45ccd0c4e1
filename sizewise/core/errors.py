"""Errors a user can act on.

Every error sizewise raises on purpose derives from :class:`SizewiseError`. The CLI prints such an error as one red
line (``message`` plus ``hint``) and exits with code 1; anything else is a bug and shows a traceback.
"""

from __future__ import annotations


class SizewiseError(Exception):
    """Base class: ``message`` says what happened (with the offending value), ``hint`` says how to fix it."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


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
