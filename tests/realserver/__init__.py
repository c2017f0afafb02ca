"""Tests against a real OpenAI-compatible server (see conftest.py and docs/self-hosted.md)."""
