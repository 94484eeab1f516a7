"""A small generic registry: name -> lazily imported object.

Entries are registered as ``"module:attr"`` strings so that optional heavy dependencies load
only when the entry is used. Unknown names raise `UserError` with a "did you mean" suggestion.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Generic, TypeVar

from dps_cli.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps lowercase kebab-case names to objects, importing them on first use."""

    def __init__(self, kind: str, entries: dict[str, str]) -> None:
        self.kind = kind
        self._targets: dict[str, str] = {}
        for name, target in entries.items():
            self.register(name, target)

    def register(self, name: str, target: str) -> None:
        """Add ``name`` pointing at ``"module:attr"``; a duplicate name is a bug."""
        if name in self._targets:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._targets[name] = target

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._targets)

    def __contains__(self, name: object) -> bool:
        return name in self._targets

    def get(self, name: str) -> T:
        """Import and return the object registered under ``name``."""
        if name not in self._targets:
            close = difflib.get_close_matches(name, self._targets, n=1)
            hint = f"Did you mean {close[0]!r}? " if close else ""
            raise UserError(
                f"Unknown {self.kind} {name!r}.",
                f"{hint}Available: {', '.join(self.names())}.",
            )
        module_name, attr = self._targets[name].split(":")
        obj: T = getattr(importlib.import_module(module_name), attr)
        return obj
