"""Every compression method: a frozen config dataclass and the function that applies it (torchao's pattern)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sizewise.core.registry import Registry


@dataclass(frozen=True)
class Method:
    name: str
    config: type
    apply: Callable  # (loaded, config, dataset, finetune) -> details dict; changes loaded.module in place
    structured: bool  # changes the architecture (shapes), not just values
    summary: str
    encoding: str | None = None  # the artifact's weight encoding (see sizewise.models.artifact.save_model)


METHODS: Registry[Method] = Registry("compression method")


def register(name: str, config: type, apply: Callable, structured: bool, summary: str,
             encoding: str | None = None) -> None:
    METHODS.register(name)(Method(name, config, apply, structured, summary, encoding))


def list_methods() -> list[str]:
    return METHODS.names()
