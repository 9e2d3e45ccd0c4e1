"""Let ``sizewise.measure(...)`` work although ``sizewise/measure/`` is a package.

Importing a submodule rebinds the parent package's attribute of the same name to the module, so a function
``sizewise.measure`` would be replaced by the package ``sizewise.measure`` as soon as anything imports from it. Making
the package itself callable (delegating to its verb) keeps both the layer name and the verb.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any


def make_callable(module_name: str, fn: Callable[..., Any]) -> None:
    module = sys.modules[module_name]

    class _CallableModule(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

    _CallableModule.__call__.__doc__ = fn.__doc__
    module.__class__ = _CallableModule
