"""Golden cases: the schema of a case and the loaders of golden files (``golden.py``).

Every name of :mod:`pytest_llmregress.cases.golden` is importable from here
(``pytest_llmregress.cases`` was one module until 0.2).
"""

from __future__ import annotations

import importlib


def __getattr__(name: str) -> object:
    try:
        return getattr(importlib.import_module("pytest_llmregress.cases.golden"), name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
