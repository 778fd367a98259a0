"""One registry type for every kind of part, and discovery of parts from other packages.

Rewards, advantage estimators and losses, tasks, tools, rollout engines and stage kinds each live
in a :class:`Registry` keyed by the names configs use. A part registers itself where it is
defined (``@REWARDS.register("countdown")`` or the kind's own decorator), so adding one is one
file; a lookup of an unknown name lists the valid ones.

A package outside r1lab adds parts without editing r1lab: it declares modules in the entry-point
group ``r1lab.plugins`` and each one registers its parts on import::

    # the user's pyproject.toml
    [project.entry-points."r1lab.plugins"]
    my_reward = "my_package.my_reward"

Every registry loads the plugins (once per process) before its first lookup, so start-up
validation, the pipeline and the evaluation see a plugin's parts like r1lab's own. A registry
made with ``package=`` also imports every public module of that package before its first lookup
(the stage kinds: ``r1lab.stages``, whose modules are too heavy for the package's ``__init__``
to import them all). This module imports nothing of r1lab: every layer may use it.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
from typing import Any, Generic, Iterator, TypeVar

T = TypeVar("T")

PLUGIN_GROUP = "r1lab.plugins"

_plugins_loaded = False


class PluginError(ImportError):
    """An entry point of ``r1lab.plugins`` that cannot be imported."""


def load_plugins() -> list[str]:
    """Import every module of the ``r1lab.plugins`` entry-point group once; their names.

    A module that fails to import stops the run with a :class:`PluginError` naming the entry point
    and its package (uninstall it or fix the module): a part silently missing would only surface
    later as an unknown name."""
    global _plugins_loaded
    if _plugins_loaded:
        return []
    _plugins_loaded = True  # first: a plugin that looks a registry up while it loads must not recurse
    loaded = []
    for entry in importlib.metadata.entry_points(group=PLUGIN_GROUP):
        try:
            entry.load()
        except Exception as err:  # noqa: BLE001 - any failure of a third-party module is reported the same way
            dist = getattr(entry.dist, "name", "?")
            raise PluginError(
                f"r1lab plugin {entry.name!r} = {entry.value!r} (package {dist}) failed to import: "
                f"{type(err).__name__}: {err}; fix the module or uninstall the package"
            ) from err
        loaded.append(entry.name)
    return loaded


def reload_plugins() -> list[str]:
    """Load the entry points again (a package installed after the first lookup; tests)."""
    global _plugins_loaded
    _plugins_loaded = False
    return load_plugins()


def import_package(package: str) -> list[str]:
    """Import every public module (no leading ``_``) of ``package``, sorted; their names."""
    root = importlib.import_module(package)
    names = sorted(m.name for m in pkgutil.iter_modules(root.__path__) if not m.name.startswith("_"))
    for name in names:
        importlib.import_module(f"{package}.{name}")
    return names


class Registry(Generic[T]):
    """Maps names to parts of one kind (e.g. ``"advantage estimator"``), each with optional metadata.

    Every member of one registry has the same signature, so the caller looks a part up by the
    name in its config and calls it, never branching on the name itself. ``package``: a package
    whose public modules register the members; they are imported before the first lookup."""

    def __init__(self, kind: str, package: str | None = None) -> None:
        self.kind = kind
        self.package = package
        self._package_loaded = package is None
        self._members: dict[str, T] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    def _load(self) -> None:
        """The plugins, then (once) the modules of ``package``: what every lookup sees."""
        load_plugins()
        if not self._package_loaded:
            self._package_loaded = True  # first: a module that looks this registry up while it loads must not recurse
            try:
                import_package(self.package)
            except BaseException:
                self._package_loaded = False  # the next lookup tries again (and fails the same way)
                raise

    def register(self, name: str, obj: T | None = None, **meta: Any) -> Any:
        """Make ``obj`` available under ``name`` (returns it), or, without ``obj``, a decorator
        that does so. ``meta``: what else the kind records of a member (``meta(name)``)."""

        def wrap(member: T) -> T:
            if name in self._members:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._members[name] = member
            self._meta[name] = dict(meta)
            return member

        return wrap if obj is None else wrap(obj)

    def replace(self, name: str, obj: T, **meta: Any) -> None:
        """Swap the member registered as ``name`` (kept metadata, updated by ``meta``)."""
        self.get(name)
        self._members[name] = obj
        self._meta[name].update(meta)

    def unregister(self, name: str) -> None:
        self._members.pop(name, None)
        self._meta.pop(name, None)

    def get(self, name: str) -> T:
        """The member registered as ``name``; ``KeyError`` listing the valid names otherwise."""
        self._load()
        try:
            return self._members[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; valid names: {', '.join(self.names())}") from None

    def meta(self, name: str) -> dict[str, Any]:
        """What was registered with ``name`` besides the member."""
        self.get(name)
        return self._meta[name]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        self._load()
        return sorted(self._members)

    def items(self) -> list[tuple[str, T]]:
        """(name, member) pairs in registration order."""
        self._load()
        return list(self._members.items())

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._members

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._members)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._members)})"

