"""A name -> object registry whose lookup errors list what exists (as timm's ``create_model`` does)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from sizewise.core.errors import SizewiseError

T = TypeVar("T")


class UnknownNameError(SizewiseError, KeyError):
    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return SizewiseError.__str__(self)


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._items, n=1)
            guess = f"did you mean '{close[0]}'? " if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} '{name}'",
                hint=f"{guess}known: {', '.join(sorted(self._items))}",
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
