"""The ``llmregress`` command: a thin dispatcher to subcommands that live beside their library.

Each subcommand is a ``main(argv: list[str]) -> int`` function in its own module, imported only
when that subcommand runs, so ``llmregress --help`` stays instant.
"""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "serve": (
        "pytest_llmregress.cli.serve",
        "run the local provider server (Anthropic + OpenAI)",
    ),
    "models": ("pytest_llmregress.cli.models", "lint and check model ids against lifecycle data"),
    "compare": ("pytest_llmregress.cli.compare", "compare two results files, no model calls"),
    "history": ("pytest_llmregress.cli.compare", "pass rate and mean score per model over time"),
    "canary": ("pytest_llmregress.cli.canary", "canary ramp: status, advance, rollback"),
    "import": ("pytest_llmregress.cli.import_logs", "turn production logs into golden cases"),
    "schema": ("pytest_llmregress.cli.schema", "print the golden-file JSON Schema for editors"),
    "judge": ("pytest_llmregress.cli.judge", "measure the judge against human labels"),
    "report": ("pytest_llmregress.cli.report", "an HTML report from a results file"),
    "merge": ("pytest_llmregress.cli.merge", "merge the results of a run's shards into one"),
    "batches": ("pytest_llmregress.cli.batches", "list or cancel a --llm-batch run's batches"),
}


def _usage() -> str:
    lines = ["usage: llmregress <command> [options]", "", "commands:"]
    width = max(len(name) for name in SUBCOMMANDS)
    for name, (_, summary) in SUBCOMMANDS.items():
        lines.append(f"  {name:<{width}}  {summary}")
    lines += ["", "Run 'llmregress <command> --help' for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``llmregress`` console script."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        from pytest_llmregress import __version__

        print(f"llmregress {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"llmregress: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    # A module serving several commands takes the command's name as argv[0].
    shared = sum(1 for target, _ in SUBCOMMANDS.values() if target == SUBCOMMANDS[name][0]) > 1
    result: int = module.main([name, *rest] if shared else rest)
    return result


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
