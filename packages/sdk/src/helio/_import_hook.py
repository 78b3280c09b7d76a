"""Run a callback right after a module is imported, for libraries instrumented before their import.

A ``sys.meta_path`` finder that answers for a fixed set of top-level module names: it asks the
other finders for the real spec and wraps its loader, so the callback runs once the module has
executed. The module keeps its real loader (``__loader__``, ``__spec__.loader``), so nothing in it
can tell. Names it does not watch, and modules already imported, are never touched.
"""

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

OnImport = Callable[[ModuleType], None]


class PostImportHook(importlib.abc.MetaPathFinder):
    """Calls ``on_import(module)`` after each watched module is imported, then stops watching it."""

    def __init__(self, names: Sequence[str], on_import: OnImport) -> None:
        self._names = set(names)
        self._on_import = on_import

    @property
    def watching(self) -> frozenset[str]:
        """The module names still waited for."""
        return frozenset(self._names)

    def install(self) -> None:
        """Put the hook first on ``sys.meta_path`` (once)."""
        if self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def remove(self) -> None:
        """Take the hook off ``sys.meta_path``; later imports are left alone."""
        self._names.clear()
        while self in sys.meta_path:
            sys.meta_path.remove(self)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self._names:
            return None
        spec = _find_elsewhere(self, fullname, path, target)
        loader: Any = spec.loader if spec is not None else None
        if spec is None or loader is None or not hasattr(loader, "exec_module"):
            return spec
        self._names.discard(fullname)
        spec.loader = _CallbackLoader(loader, self._on_import)
        return spec


def _find_elsewhere(
    hook: PostImportHook, fullname: str, path: Sequence[str] | None, target: ModuleType | None
) -> importlib.machinery.ModuleSpec | None:
    for finder in list(sys.meta_path):
        find_spec: Any = getattr(finder, "find_spec", None)
        if finder is hook or find_spec is None:
            continue
        spec: importlib.machinery.ModuleSpec | None = find_spec(fullname, path, target)
        if spec is not None:
            return spec
    return None


class _CallbackLoader(importlib.abc.Loader):
    """Delegates to the real loader, then runs the callback on the executed module."""

    def __init__(self, loader: Any, on_import: OnImport) -> None:
        self._loader = loader
        self._on_import = on_import

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self._loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        # Give the module its real loader back before it runs (importlib.resources, pkgutil and
        # friends read it), so that only this wrapper's own call ever sees the wrapper.
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        self._on_import(module)
