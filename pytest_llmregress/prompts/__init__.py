"""Prompt files versioned per model: loading, lookup and rendering (``library.py``).

The names application code uses are importable from here; every other name of
:mod:`pytest_llmregress.prompts.library` is too (``pytest_llmregress.prompts`` was one module
until 0.2).
"""

from __future__ import annotations

import importlib

from pytest_llmregress.prompts.library import (
    PromptError,
    PromptFileError,
    PromptLibrary,
    PromptTask,
    PromptVersion,
    ResolvedPrompt,
    check_prompt_model,
    prompts_digest,
    prompts_metadata,
    render,
    resolve_system,
)

__all__ = [
    "PromptError",
    "PromptFileError",
    "PromptLibrary",
    "PromptTask",
    "PromptVersion",
    "ResolvedPrompt",
    "check_prompt_model",
    "prompts_digest",
    "prompts_metadata",
    "render",
    "resolve_system",
]


def __getattr__(name: str) -> object:
    try:
        return getattr(importlib.import_module("pytest_llmregress.prompts.library"), name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
