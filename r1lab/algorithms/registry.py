"""A tiny name -> function registry, one per kind of algorithm piece.

Every member of one registry has the same signature, so a training loop looks a function up by
the name in its config and calls it, never branching on the name itself.
"""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

F = TypeVar("F", bound=Callable)


class Registry(Generic[F]):
    """Maps names to functions of one kind (e.g. ``"advantage estimator"``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._members: dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        """Decorator: make the decorated function available under ``name``."""

        def wrap(fn: F) -> F:
            if name in self._members:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._members[name] = fn
            return fn

        return wrap

    def get(self, name: str) -> F:
        """The function registered as ``name``; ``KeyError`` listing the valid names otherwise."""
        try:
            return self._members[name]
        except KeyError:
            raise KeyError(
                f"unknown {self.kind} {name!r}; valid names: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._members)

    def __contains__(self, name: object) -> bool:
        return name in self._members

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._members)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
