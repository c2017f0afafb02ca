"""Old import paths of modules that moved into folders in 0.2, kept working.

``import pytest_llmregress.canary`` (and every other path in :data:`MOVED`) gives the module at
its new path, the very same module object, with a :class:`DeprecationWarning` that names the
new path. Installed by the package's ``__init__``; costs one dictionary lookup per import of a
name under ``pytest_llmregress``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Final

MOVED: Final[dict[str, str]] = {
    f"pytest_llmregress.{old}": f"pytest_llmregress.{new}"
    for old, new in {
        "url_masking": "core.masking",
        "items": "collect.items",
        "llm_client": "collect.llm_fixture",
        "snapshot": "collect.snapshot",
        "scheduler": "collect.scheduling",
        "runner": "engine.runner",
        "runner_process": "engine.runner_process",
        "cache": "engine.cache",
        "retries": "providers.retries",
        "providers.fallback": "runtime.fallback",
        "canary": "runtime.canary",
        "results": "verdict.results",
        "gate": "verdict.gate",
        "stats": "verdict.stats",
        "compare": "verdict.compare",
        "recording": "authoring.recording",
        "importer": "authoring.importer",
        "redaction": "authoring.redaction",
        "canary_cli": "cli.canary",
        "compare_cli": "cli.compare",
        "models.cli": "cli.models",
        "testing.serve": "cli.serve",
    }.items()
}
"""Old module path -> new module path. (``cases`` and ``prompts`` became packages of the same
name whose ``__init__`` gives every name of the module they were.)"""


class _MovedLoader(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new
        self.spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(
            f"{spec.name} moved to {self.new}; import it from there",
            DeprecationWarning,
            stacklevel=2,
        )
        module = importlib.import_module(self.new)
        self.spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The import system stamped the old name's spec on the module; give it its own back.
        module.__spec__ = self.spec


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _MovedLoader(new))


def install() -> None:
    """Put the finder on ``sys.meta_path`` once."""
    if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
