"""Registries keyed by Caffe's own names (layer types, lr policies, solver types)."""

from __future__ import annotations

import difflib
from typing import Any, Callable


class Registry:
    """A name -> object table whose unknown-name error gives a hint and lists the known names."""

    def __init__(self, what: str):
        self.what = what
        self.entries: dict[str, Any] = {}

    def register(self, name: str) -> Callable:
        def deco(obj):
            if name in self.entries:
                raise RuntimeError(f"{self.what} {name!r} registered twice")
            self.entries[name] = obj
            return obj
        return deco

    def __getitem__(self, name: str) -> Any:
        try:
            return self.entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self.entries, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise KeyError(f"unknown {self.what} '{name}'{hint}; known: "
                           + ", ".join(sorted(self.entries))) from None

    def names(self) -> list[str]:
        return sorted(self.entries)
