"""The ground floor: one typed registry class and one instance per kind of component.

A registry indexes implementations by name for `python -m r1lab list`, error messages and the test that
every registered name has an option file (and the reverse). It is not a second config system: option
files under conf/<group>/ name their implementation with `_target_` and Hydra builds it.
"""

from __future__ import annotations

import difflib
import inspect
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

CORE = "r1lab"
_current_distribution: list[str] = [CORE]


@contextmanager
def registering_for(distribution: str) -> Iterator[None]:
    """Attribute every registration made inside the block to `distribution` (a plugin's name)."""
    _current_distribution.append(distribution)
    try:
        yield
    finally:
        _current_distribution.pop()


class RegistryError(KeyError):
    """An unknown or clashing name; the message lists what is allowed."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    distribution: str
    description: str
    aliases: tuple[str, ...] = ()

    @property
    def target(self) -> str:
        """The dotted path an option file's `_target_` uses for this entry."""
        return f"{self.obj.__module__}.{self.obj.__qualname__}"


def _first_doc_line(obj: object) -> str:
    """The first line of `obj`'s own docstring: a class without one says nothing rather than its base's."""
    own = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    doc = inspect.cleandoc(own) if isinstance(own, str) else ""
    return doc.splitlines()[0] if doc else ""


class Registry(Generic[T]):
    """Names → implementations of one kind (rewards, advantage estimators, ...)."""

    def __init__(self, kind: str, group: str):
        self.kind = kind  # human name, e.g. "advantage estimator"
        self.group = group  # the Hydra config group that exposes it, e.g. "advantage"
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}
        self.ignored_clashes: list[tuple[str, str]] = []  # (name, distribution) that lost to an earlier one

    def register(self, name: str, *, aliases: tuple[str, ...] = (), description: str | None = None
                 ) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            self.add(name, obj, aliases=aliases, description=description)
            return obj

        return decorator

    def add(self, name: str, obj: T, *, aliases: tuple[str, ...] = (), description: str | None = None) -> None:
        distribution = _current_distribution[-1]
        for key in (name, *aliases):
            owner = self._entries.get(self._aliases.get(key, key))
            if owner is None:
                continue
            if owner.obj is obj:  # re-import of the same module: harmless
                return
            if owner.distribution == CORE and distribution != CORE:
                # Core wins name clashes: a plugin cannot replace a built-in component.
                self.ignored_clashes.append((key, distribution))
                warnings.warn(f"plugin {distribution!r} registers {self.kind} {key!r}, which r1lab already "
                              f"provides; keeping r1lab's ({owner.target})", stacklevel=3)
                return
            raise RegistryError(
                f"{self.kind} name {key!r} is registered twice: by {owner.distribution} ({owner.target}) "
                f"and by {distribution} ({obj.__module__}.{getattr(obj, '__qualname__', obj)}). Rename one."
            )
        entry = Entry(name, obj, distribution, description or _first_doc_line(obj), tuple(aliases))
        self._entries[name] = entry
        for alias in aliases:
            self._aliases[alias] = name

    def entry(self, name: str) -> Entry[T]:
        key = self._aliases.get(name, name)
        if key not in self._entries:
            raise RegistryError(self._unknown_message(name))
        return self._entries[key]

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def _unknown_message(self, name: str) -> str:
        choices = sorted(self._entries) + sorted(self._aliases)
        close = difflib.get_close_matches(name, choices, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        return f"Unknown {self.kind} {name!r}.{hint} Available: {', '.join(sorted(self._entries)) or '(none)'}."

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


REWARDS: Registry = Registry("reward", "reward")
ADVANTAGES: Registry = Registry("advantage estimator", "advantage")
LOSSES: Registry = Registry("loss", "loss")
SAMPLERS: Registry = Registry("sampler", "sampler")
CURRICULA: Registry = Registry("curriculum", "curriculum")

REGISTRIES: dict[str, Registry] = {r.group: r for r in (REWARDS, ADVANTAGES, LOSSES, SAMPLERS, CURRICULA)}


def registry_for(group: str) -> Registry:
    if group not in REGISTRIES:
        close = difflib.get_close_matches(group, list(REGISTRIES), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise RegistryError(f"Unknown component kind {group!r}.{hint} Kinds: {', '.join(REGISTRIES)}.")
    return REGISTRIES[group]
