"""Import optional packages inside the function that needs them, with an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from sizewise.core.errors import MissingExtraError


def package_version(distribution: str) -> str:
    """The installed version of ``distribution`` (a pip name), or "?" when it is not installed."""
    import importlib.metadata

    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def require(module: str, extra: str, purpose: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` telling which ``sizewise[extra]`` provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        what = f" for {purpose}" if purpose else ""
        raise MissingExtraError(
            f"the optional package '{module.split('.')[0]}' is needed{what} but is not installed ({exc})",
            hint=f"pip install 'sizewise[{extra}]'",
        ) from exc


def available(module: str) -> bool:
    """True when ``module`` can be imported (without importing it twice if it already is)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
