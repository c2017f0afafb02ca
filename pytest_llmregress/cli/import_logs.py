"""``llmregress import``: production logs to a golden file (the library is
:mod:`pytest_llmregress.authoring.importer`).

Exit status: 0 when at least one case was written, 1 when none was, 2 on usage errors. Users'
documentation: ``docs/importing-traffic.md``.
"""

from __future__ import annotations

import argparse
import math
import sys
import zlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from pytest_llmregress.authoring.importer import (
    DEFAULT_SIZE,
    FORMATS,
    KIND_NAMES,
    MAX_SHOWN_MALFORMED,
    MAX_SHOWN_STRATA,
    MISSING,
    PROG,
    SMALL_SET,
    ImportOptions,
    ImportResult,
    Malformed,
    UsageError,
    detectable_drop,
    import_logs,
    provenance_path,
    redaction_kinds,
    write_atomic,
)
from pytest_llmregress.authoring.redaction import RedactorError
from pytest_llmregress.cases.golden import CaseFileError, parse_jsonl


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of cases >= 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Turn production request/response logs (JSONL: OpenAI chat, Anthropic messages, "
            "OpenAI Responses API, LiteLLM gateway logs, or plain {input, output}) into a "
            "golden file: duplicates removed, sampled, secrets and personal data redacted, "
            "stable ids. What the import did is written next to it, in NAME.import.json."
        ),
        epilog="Exit status: 0 cases written, 1 no case written, 2 usage error. "
        "See docs/importing-traffic.md.",
    )
    parser.add_argument(
        "logs", nargs="+", metavar="LOGS", help="JSONL log files ('-' for stdin, .gz is read)"
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        type=Path,
        metavar="PATH",
        help="golden file (.jsonl); its provenance goes to NAME.import.json beside it",
    )
    parser.add_argument(
        "--format", choices=FORMATS, default="auto", help="log format (default: per line)"
    )
    parser.add_argument(
        "--size",
        type=_positive_int,
        default=DEFAULT_SIZE,
        metavar="N",
        help=f"number of cases to sample (default {DEFAULT_SIZE})",
    )
    parser.add_argument(
        "--stratify-by",
        metavar="FIELD",
        help="endpoint, tag, length (short/medium/long user input), model, or metadata.KEY",
    )
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument(
        "--id-prefix", metavar="NAME", help="case id prefix (default: the output file's stem)"
    )
    parser.add_argument(
        "--tag",
        action="append",
        default=[],
        dest="tags",
        metavar="TAG",
        help="tag every case (repeatable)",
    )
    parser.add_argument(
        "--no-redact", action="store_true", help="keep secrets and personal data as logged"
    )
    parser.add_argument(
        "--redactor",
        action="append",
        default=[],
        dest="redactors",
        metavar="MODULE:FUNCTION",
        help="also apply a team's function (text -> text) after the built-in rules "
        "(repeatable, applied in order)",
    )
    parser.add_argument(
        "--keep-user-ids", action="store_true", help="keep user id fields in metadata"
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite an existing output and provenance file"
    )
    return parser


def _report_malformed(malformed: Sequence[Malformed], err: TextIO) -> None:
    per_file: Counter[str] = Counter()
    hidden: Counter[str] = Counter()
    for item in malformed:
        per_file[item.path] += 1
        if per_file[item.path] <= MAX_SHOWN_MALFORMED:
            print(f"{PROG}: {item.format()}", file=err)
        else:
            hidden[item.path] += 1
    for path, count in hidden.items():
        print(f"{PROG}: {path}: {_plural(count, 'more malformed line')} not shown", file=err)


def _report(options: ImportOptions, result: ImportResult, out: TextIO, err: TextIO) -> None:
    read = result.read
    skipped = len(read.malformed)
    line = f"read {_plural(len(read.records), 'record')} from {_plural(read.files, 'file')}"
    if skipped:
        line += f" ({_plural(skipped, 'malformed line')} skipped)"
    print(line, file=out)
    print(f"removed {_plural(result.duplicates, 'duplicate')}", file=out)
    n = len(result.cases)
    if result.unique <= options.size:
        print(
            f"kept all {_plural(result.unique, 'unique record')} (--size is {options.size})",
            file=out,
        )
    else:
        how = f", stratified by {options.stratify_by}" if options.stratify_by else ""
        print(
            f"sampled {n} of {_plural(result.unique, 'unique record')}{how} (seed {options.seed})",
            file=out,
        )
    if options.stratify_by and result.strata:
        ordered = sorted(result.strata.items(), key=lambda kv: (-kv[1][1], kv[0]))
        width = max(len(name) for name, _ in ordered[:MAX_SHOWN_STRATA])
        print(f"  {options.stratify_by:<{width}}  selected of available", file=out)
        for name, (chosen, available) in ordered[:MAX_SHOWN_STRATA]:
            print(f"  {name:<{width}}  {chosen:>8} of {available}", file=out)
        if len(ordered) > MAX_SHOWN_STRATA:
            print(f"  ... and {len(ordered) - MAX_SHOWN_STRATA} more strata", file=out)
        if set(result.strata) == {MISSING}:
            print(
                f"{PROG}: warning: no record has the field {options.stratify_by!r}; "
                "the sample is not stratified",
                file=err,
            )
    if options.redact:
        found = [
            _plural(result.redactions[kind], *KIND_NAMES.get(kind, (kind.replace("_", " "),)))
            for kind in redaction_kinds(result.redactions)
            if result.redactions[kind]
        ]
        print("redacted: " + (", ".join(found) if found else "nothing found"), file=out)
    else:
        print(
            f"{PROG}: warning: redaction is off (--no-redact): the cases may hold secrets "
            "and personal data as logged",
            file=err,
        )
    if result.dropped_fields:
        names = ", ".join(sorted(result.dropped_fields))
        total = sum(result.dropped_fields.values())
        print(
            f"dropped {_plural(total, 'user-id field')} ({names}); --keep-user-ids keeps them",
            file=out,
        )


def _warn_small(n: int, err: TextIO) -> None:
    drop = detectable_drop(n)
    if math.isinf(drop):
        can = "no pass-rate drop can be reliably detected"
    else:
        can = f"only pass-rate drops of about {round(drop)} points or more are visible"
    print(
        f"{PROG}: warning: only {_plural(n, 'case')}: too small to see a regression of a few "
        f"points; with {n} cases {can} (80% power, assuming about 1 case in 10 changes "
        f"verdict between models). Aim for {SMALL_SET}-{DEFAULT_SIZE} cases or more: "
        f"{DEFAULT_SIZE} cases show drops of about {round(detectable_drop(DEFAULT_SIZE))} "
        "points.",
        file=err,
    )


def _options(args: argparse.Namespace) -> ImportOptions:
    return ImportOptions(
        logs=tuple(args.logs),
        output=args.output,
        format=args.format,
        size=args.size,
        stratify_by=args.stratify_by,
        seed=args.seed,
        id_prefix=args.id_prefix,
        tags=tuple(args.tags),
        redact=not args.no_redact,
        redactors=tuple(args.redactors),
        keep_user_ids=args.keep_user_ids,
        force=args.force,
    )


def main(argv: list[str] | None = None) -> int:
    """``llmregress import LOGS... -o FILE``; returns the exit status."""
    out, err = sys.stdout, sys.stderr
    try:
        args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    options = _options(args)
    try:
        result = import_logs(options)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=err)
        return 2
    except (OSError, EOFError, zlib.error) as exc:
        print(f"{PROG}: error: cannot read the logs: {exc}", file=err)
        return 1
    except RedactorError as exc:
        print(f"{PROG}: error: {exc}; nothing was written", file=err)
        return 1
    _report_malformed(result.read.malformed, err)
    _report(options, result, out, err)
    if not result.cases:
        print(f"{PROG}: error: no cases to write; {options.output} was not written", file=err)
        return 1
    try:
        parse_jsonl(result.text, str(options.output))
    except CaseFileError as exc:  # a bug here, not in the logs
        print(f"{PROG}: error: the generated cases do not load:\n{exc}", file=err)
        return 1
    sidecar = provenance_path(options.output)
    for path, text in ((options.output, result.text), (sidecar, result.provenance_text)):
        try:
            write_atomic(path, text, force=options.force)
        except FileExistsError as exc:
            print(f"{PROG}: error: {exc}", file=err)
            return 2
        except OSError as exc:
            print(f"{PROG}: error: cannot write {path}: {exc}", file=err)
            return 1
    print(
        f"wrote {_plural(len(result.cases), 'case')} to {options.output} (provenance in {sidecar})",
        file=out,
    )
    if len(result.cases) < SMALL_SET:
        _warn_small(len(result.cases), err)
    return 0
