"""pytest-llmregress: golden-dataset regression testing for LLM model migrations."""

from __future__ import annotations

from pytest_llmregress import _moved

__version__ = "0.1.0"

_moved.install()
