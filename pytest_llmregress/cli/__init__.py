"""The ``llmregress`` command: :func:`main` dispatches to one module per subcommand."""

from pytest_llmregress.cli.dispatch import SUBCOMMANDS, main

__all__ = ["SUBCOMMANDS", "main"]
