"""``llmregress batches``: the provider batches a ``--llm-batch`` run journaled::

    llmregress batches RESULTS.json [--cancel] [--anthropic-base-url URL] [--openai-base-url URL]

Lists each batch of the run's journal (``RESULTS.partial/batches.jsonl``) with its state at the
provider, asked now: how many of its requests are processed. ``--cancel`` cancels those still
running (a run given up for good; what they processed stays, and a resumed run makes their
unprocessed requests errors, or sends them online with ``--llm-batch-failed=online``). Keys
come from the environment, as for a run. Exit 0; 1 when a batch could not be asked or
canceled; 2 when there is no journal.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from pytest_llmregress.engine.batch import BatchJournal
from pytest_llmregress.verdict.results import BATCH_JOURNAL, journal_dir

TIMEOUT_S = 60.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmregress batches",
        description="List (or cancel) the provider batches of a --llm-batch run.",
    )
    parser.add_argument("results", metavar="RESULTS.json", help="the run's results file")
    parser.add_argument("--cancel", action="store_true", help="cancel the batches still running")
    parser.add_argument("--anthropic-base-url", metavar="URL", help="as --llm-anthropic-base-url")
    parser.add_argument("--openai-base-url", metavar="URL", help="as --llm-openai-base-url")
    return parser


async def _ask(entries: list[dict[str, Any]], args: argparse.Namespace) -> tuple[list[str], bool]:
    from pytest_llmregress.providers.base import ProviderError
    from pytest_llmregress.providers.registry import ModelSpecError, endpoints_from_environment

    endpoints = endpoints_from_environment(args.anthropic_base_url, args.openai_base_url)
    providers: dict[str, Any] = {}
    lines: list[str] = []
    ok = True
    try:
        for entry in entries:
            name = str(entry.get("provider"))
            where = (
                f"{entry['batch']}  {name}:{entry.get('model')}  {entry.get('kind')}  "
                f"{len(entry['requests'])} requests, created {entry.get('created')}"
            )
            try:
                if name not in providers:
                    providers[name] = endpoints.build(name, TIMEOUT_S)
                provider = providers[name]
                state = await provider.batch_state(entry["batch"])
                said = f"{state.status}, {state.done}/{state.total} processed"
                if args.cancel and not state.ended:
                    await provider.batch_cancel(entry["batch"])
                    said += "; cancel requested"
            except (ProviderError, ModelSpecError) as error:
                ok = False
                said = f"not known: {error}"
            lines.append(f"{where}: {said}")
    finally:
        for provider in providers.values():
            await provider.aclose()
    return lines, ok


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    path = journal_dir(args.results) / BATCH_JOURNAL
    entries = BatchJournal.read(path)
    if not entries:
        print(
            f"llmregress batches: no batches journaled at {path} (a --llm-batch run with "
            "--llm-report journals them; a complete run removes its journal)",
            file=sys.stderr,
        )
        return 2
    lines, ok = asyncio.run(_ask(entries, args))
    for line in lines:
        print(line)
    return 0 if ok else 1
