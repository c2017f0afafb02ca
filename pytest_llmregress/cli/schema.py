"""``llmregress schema``: the golden-file format as JSON Schema, for editors.

Prints the schema of a YAML golden file (draft 2020-12) on stdout, or writes it with
``-o PATH``; ``--case`` gives the schema of one case, a line of a JSONL golden file. Editors
that read JSON Schema (VS Code with the YAML extension, PyCharm) then complete field names and
flag wrong values as people type; see "Editor completion" in ``docs/golden-files.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pytest_llmregress.cases.json_schema import case_schema, golden_file_schema
from pytest_llmregress.core.files import atomic_write_text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmregress schema",
        description="Print the JSON Schema of golden files, for editor completion and checks.",
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="write the schema to PATH instead of printing it",
    )
    parser.add_argument(
        "--case",
        action="store_true",
        help="the schema of one case (a line of a JSONL golden file) instead of a YAML file",
    )
    return parser


def main(argv: list[str]) -> int:
    """Run ``llmregress schema``; 0 on success, 1 when the file cannot be written."""
    args = _parser().parse_args(argv)
    schema = case_schema() if args.case else golden_file_schema()
    text = json.dumps(schema, indent=2) + "\n"
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        atomic_write_text(Path(args.output), text)
    except OSError as exc:
        print(
            f"llmregress schema: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr
        )
        return 1
    print(f"wrote the golden-file schema to {args.output}")
    return 0
