"""pytest-llmregress: golden-dataset regression testing for LLM model migrations."""

from __future__ import annotations

__version__ = "0.1.0"
