"""``llmregress models``: lint a codebase for hard-coded model ids, check the configured models,
refresh lifecycle dates from a provider's models endpoint.

``main(argv) -> int`` is called by the ``llmregress`` dispatcher. Exit status: 0 clean,
1 problems (see each command), 2 usage or config errors.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Final, TextIO

from pytest_llmregress.models.config import ModelConfig, ModelConfigError, load_model_config
from pytest_llmregress.models.ids import ModelInfo, looks_like_id, parse_model_id
from pytest_llmregress.models.lifecycle import (
    DEFAULT_WARNING_DAYS,
    LifecycleData,
    LifecycleError,
    LifecycleFinding,
    dump_overrides,
    load_overrides_file,
    refresh_from_openai_models,
)

PROG: Final = "llmregress models"
DEFAULT_REMIND_DAYS: Final = 30
MAX_FILE_BYTES: Final = 5_000_000

#: Directories ``lint`` never enters (plus any directory holding a ``pyvenv.cfg``).
SKIP_DIRS: Final = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        "node_modules",
        "__pycache__",
        ".tox",
        ".nox",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        ".eggs",
        "site-packages",
        "build",
        "dist",
    }
)

_STATUS_ORDER: Final = (
    "retired",
    "retiring",
    "deprecated",
    "alias",
    "preview",
    "unknown-kind",
)

# -- lint ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LintFinding:
    """One problem with one hard-coded model id at ``path:line``."""

    path: str
    line: int
    id: str
    level: str
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.id}: {self.level}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _file_kind(path: Path) -> str | None:
    name = path.name
    if name.endswith((".py", ".pyi")):
        return "python"
    if name.endswith((".yaml", ".yml")):
        return "yaml"
    if name.endswith(".json"):
        return "json"
    if name.endswith(".toml"):
        return "toml"
    if name == ".env" or name.startswith(".env.") or name.endswith(".env"):
        return "env"
    return None


def _skip_dir(directory: Path) -> bool:
    return (
        directory.name in SKIP_DIRS
        or directory.name.endswith(".egg-info")
        or (directory / "pyvenv.cfg").is_file()
    )


def iter_lint_files(paths: Iterable[Path], *, exclude: Iterable[Path] = ()) -> Iterator[Path]:
    """Files ``lint`` reads under ``paths`` (sorted; skipped dirs and ``exclude`` left out).

    A file named explicitly is read even when its type is unknown (as plain text).
    """
    excluded = {p.resolve() for p in exclude}
    for root in paths:
        if root.is_file():
            if root.resolve() not in excluded:
                yield root
            continue
        for current, dirs, files in os.walk(root):
            here = Path(current)
            dirs[:] = sorted(d for d in dirs if not _skip_dir(here / d))
            for name in sorted(files):
                path = here / name
                if _file_kind(path) and path.resolve() not in excluded:
                    yield path


_TOKEN = re.compile(r"(?<![A-Za-z0-9:@/._-])[A-Za-z0-9][A-Za-z0-9:@/._-]*[A-Za-z0-9]")
_JSON_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"(\s*:)?')
_TOML_PART = re.compile(r'"((?:[^"\\]|\\.)*)"(\s*=)?|\'([^\']*)\'(\s*=)?|(#)')
_PY_STRING = re.compile(r"""(?P<q>["'])(?P<value>[A-Za-z0-9][A-Za-z0-9:@/._-]*)(?P=q)""")


def _strip_comment(line: str) -> str:
    if line.lstrip().startswith("#"):
        return ""
    return re.split(r"\s#", line, maxsplit=1)[0]


def _tokens(text: str) -> Iterator[tuple[int, str]]:
    """Fallback for files that do not parse: id-shaped tokens outside ``#`` comments."""
    for number, line in enumerate(text.splitlines(), 1):
        for match in _TOKEN.finditer(_strip_comment(line)):
            yield number, match.group(0)


def _python_literals(text: str) -> Iterator[tuple[int, str]]:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        for number, line in enumerate(text.splitlines(), 1):
            for match in _PY_STRING.finditer(line):
                yield number, match["value"]
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def _json_values(text: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(text.splitlines(), 1):
        for match in _JSON_STRING.finditer(line):
            if match.group(2):
                continue  # an object key
            try:
                value = json.loads(f'"{match.group(1)}"')
            except json.JSONDecodeError:
                continue
            if isinstance(value, str):
                yield number, value


def _toml_values(text: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(text.splitlines(), 1):
        for match in _TOML_PART.finditer(line):
            if match.group(5):
                break  # a comment: the rest of the line
            if match.group(1) is not None and not match.group(2):
                try:
                    value = json.loads(f'"{match.group(1)}"')
                except json.JSONDecodeError:
                    continue
                if isinstance(value, str):
                    yield number, value
            elif match.group(3) is not None and not match.group(4):
                yield number, match.group(3)


def _yaml_values(text: str) -> Iterator[tuple[int, str]]:
    import yaml

    def walk(node: yaml.Node) -> Iterator[tuple[int, str]]:
        if isinstance(node, yaml.ScalarNode):
            if isinstance(node.value, str):
                yield node.start_mark.line + 1, node.value
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                yield from walk(item)
        elif isinstance(node, yaml.MappingNode):
            for _key, value in node.value:
                yield from walk(value)

    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError:
        yield from _tokens(text)
        return
    for root in nodes:
        if root is not None:
            yield from walk(root)


def _env_values(text: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("export "):
            stripped = stripped[len("export ") :].lstrip()
        _key, sep, value = stripped.partition("=")
        if not sep:
            continue
        value = value.strip()
        if value[:1] in ("'", '"'):
            end = value.find(value[0], 1)
            value = value[1:end] if end > 0 else value[1:]
        else:
            value = re.split(r"\s+#", value, maxsplit=1)[0].strip()
        yield number, value


def literals_in_file(path: Path, text: str) -> list[tuple[int, str]]:
    """(line, string) candidates in one file: Python string literals via the AST, values of
    YAML/JSON/TOML/.env files, id-shaped tokens for other files."""
    readers = {
        "python": _python_literals,
        "yaml": _yaml_values,
        "json": _json_values,
        "toml": _toml_values,
        "env": _env_values,
    }
    reader = readers.get(_file_kind(path) or "", _tokens)
    return sorted(set(reader(text)))


def _display(path: Path) -> str:
    """``path`` as given when relative; relative to the current directory when under it."""
    if not path.is_absolute():
        return str(path)
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def lint_paths(
    paths: Sequence[Path],
    *,
    config: ModelConfig | None = None,
    data: LifecycleData | None = None,
    today: date | None = None,
    warning_days: int = DEFAULT_WARNING_DAYS,
    require_pinned: bool = False,
    exclude: Iterable[Path] = (),
) -> list[LintFinding]:
    """Hard-coded model ids under ``paths`` and their problems.

    Each id found gets the :meth:`LifecycleData.check` findings (retired: error; retiring,
    deprecated, alias, preview: warning) and, when ``config`` defines roles and the id is
    none of their ids or fallbacks, a ``bypasses-config`` warning. The config file itself and
    its lifecycle files should be passed in ``exclude``.
    """
    config = config or ModelConfig()
    data = data or config.lifecycle()
    today = today or date.today()
    configured = {parse_model_id(mid).name for mid in config.model_ids()}
    where = _display(config.path) if config.path else ""
    findings: list[LintFinding] = []
    cache: dict[str, list[LifecycleFinding]] = {}
    for path in iter_lint_files(paths, exclude=exclude):
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                continue
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        shown = _display(path)
        for line, value in literals_in_file(path, text):
            if not looks_like_id(value) or not data.is_model_id(value):
                continue
            if value not in cache:
                problems = data.check(
                    value, None, today, warning_days, require_pinned=require_pinned
                )
                if configured and parse_model_id(value).name not in configured:
                    problems.append(
                        LifecycleFinding(
                            level="warning",
                            code="bypasses-config",
                            model_id=value,
                            role=None,
                            message=(
                                f"{value} bypasses the config: not a role or fallback in "
                                f"{where}; read it from there "
                                '(load_model_config().resolve("@<role>"))'
                            ),
                        )
                    )
                cache[value] = problems
            findings += [
                LintFinding(shown, line, value, p.level, p.code, p.message) for p in cache[value]
            ]
    return findings


def _summary(findings: Sequence[LintFinding]) -> str:
    if not findings:
        return "No problems found."
    errors = sum(1 for f in findings if f.level == "error")
    warnings = len(findings) - errors
    files = len({f.path for f in findings})
    return (
        f"Found {_count(len(findings), 'problem')} ({_count(errors, 'error')}, "
        f"{_count(warnings, 'warning')}) in {_count(files, 'file')}."
    )


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# -- shared options -----------------------------------------------------------------------


def _iso_date(text: str) -> date:
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of days >= 0, got {text!r}")
    return value


def _add_lifecycle_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="model config file (default: llmregress.toml or pyproject.toml found upward)",
    )
    parser.add_argument(
        "--overrides",
        type=Path,
        action="append",
        default=[],
        metavar="PATH",
        help="extra lifecycle overrides file (TOML [[lifecycle]] or JSON); repeatable",
    )
    parser.add_argument(
        "--today", type=_iso_date, metavar="YYYY-MM-DD", help="check as of this date"
    )
    parser.add_argument(
        "--warning-days",
        type=_non_negative,
        default=DEFAULT_WARNING_DAYS,
        metavar="N",
        help=f"warn this many days before a retirement (default {DEFAULT_WARNING_DAYS})",
    )
    parser.add_argument(
        "--require-pinned",
        action="store_true",
        help="aliases and previews are errors, not warnings",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    parser.add_argument("--format", choices=("text", "json"), default="text")


def _load(args: argparse.Namespace, start: Path | None) -> tuple[ModelConfig, LifecycleData]:
    config = load_model_config(start, path=args.config)
    data = config.lifecycle()
    for path in args.overrides:
        data = data.with_overrides(load_overrides_file(path))
    return config, data


def _exit_status(levels: Iterable[str], strict: bool) -> int:
    levels = list(levels)
    if "error" in levels or (strict and levels):
        return 1
    return 0


def _cmd_lint(args: argparse.Namespace, out: TextIO) -> int:
    paths: list[Path] = args.paths or [Path(".")]
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise _UsageError(f"no such file or directory: {missing[0]}")
    start = paths[0] if paths[0].is_dir() else paths[0].parent
    config, data = _load(args, start)
    exclude = [*args.overrides]
    if config.path is not None:
        exclude += [config.path, *config.lifecycle_files]
    findings = lint_paths(
        paths,
        config=config,
        data=data,
        today=args.today,
        warning_days=args.warning_days,
        require_pinned=args.require_pinned,
        exclude=exclude,
    )
    if args.format == "json":
        json.dump([f.to_dict() for f in findings], out, indent=2)
        out.write("\n")
    else:
        for finding in findings:
            out.write(f"{finding}\n")
        out.write(_summary(findings) + "\n")
    return _exit_status((f.level for f in findings), args.strict)


# -- check --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckRow:
    role: str
    info: ModelInfo
    findings: tuple[LifecycleFinding, ...]

    @property
    def status(self) -> str:
        codes = {f.code for f in self.findings}
        for code in _STATUS_ORDER:
            if code in codes:
                return "unknown" if code == "unknown-kind" else code
        return "unknown" if self.info.kind == "unknown" else "ok"

    def to_dict(self) -> dict[str, Any]:
        info = self.info
        return {
            "role": self.role,
            "id": info.id,
            "kind": info.kind,
            "resolves_to": info.resolves_to,
            "retires_on": info.retires_on.isoformat() if info.retires_on else None,
            "days_left": info.days_left,
            "status": self.status,
            "surface": info.surface,
            "source": info.source,
        }


def check_rows(
    config: ModelConfig,
    data: LifecycleData,
    *,
    today: date,
    warning_days: int = DEFAULT_WARNING_DAYS,
    require_pinned: bool = False,
) -> list[CheckRow]:
    """One row per configured id: each role's id, then its fallbacks."""
    rows = []
    for role in config.roles.values():
        for index, model_id in enumerate(role.chain):
            label = role.name if index == 0 else f"{role.name} fallback {index}"
            findings = data.check(
                model_id, label, today, warning_days, require_pinned=require_pinned
            )
            info = data.classify(model_id, today=today)
            rows.append(CheckRow(label, info, tuple(findings)))
    return rows


def format_table(rows: Sequence[CheckRow]) -> str:
    header = ("ROLE", "ID", "KIND", "RESOLVES TO", "RETIRES ON", "DAYS LEFT", "STATUS")
    body = [
        (
            row.role,
            row.info.id,
            row.info.kind,
            row.info.resolves_to or "-",
            str(row.info.retires_on or "-"),
            "-" if row.info.days_left is None else str(row.info.days_left),
            row.status,
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in (header, *body)
    )


def _ics_escape(text: str) -> str:
    return (
        text.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
    )


def _ics_fold(line: str) -> str:
    """RFC 5545 §3.1: lines of at most 75 octets; continuation lines start with a space."""
    parts: list[str] = []
    current, size = "", 0
    for char in line:
        width = len(char.encode("utf-8"))
        if size + width > 75:
            parts.append(current)
            current, size = " ", 1
        current += char
        size += width
    parts.append(current)
    return "\r\n".join(parts)


def retirement_calendar(
    rows: Sequence[CheckRow],
    *,
    today: date,
    remind_days: int = DEFAULT_REMIND_DAYS,
    config_path: Path | None = None,
) -> str:
    """An iCalendar (RFC 5545) document: one all-day VEVENT per known retirement date of the
    configured models, each with a display VALARM ``remind_days`` before. UIDs depend only on
    the id and the date, so re-exports update events instead of duplicating them."""
    by_id: dict[str, list[CheckRow]] = {}
    for row in rows:
        if row.info.retires_on is not None:
            by_id.setdefault(row.info.id, []).append(row)
    stamp = f"{today:%Y%m%d}T000000Z"
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//pytest-llmregress//llmregress models check//EN",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        "X-WR-CALNAME:Model retirements",
    ]
    events = sorted(by_id.items(), key=lambda item: (item[1][0].info.retires_on, item[0]))
    for model_id, id_rows in events:
        info = id_rows[0].info
        assert info.retires_on is not None
        roles = ", ".join(row.role for row in id_rows)
        digest = hashlib.sha256(f"{model_id}|{info.retires_on}".encode()).hexdigest()[:20]
        description = [
            f"{model_id} retires on {info.retires_on}: every request to it fails after that.",
            f"Configured roles: {roles}.",
        ]
        if config_path is not None:
            description.append(f"Config: {config_path}.")
        if info.source:
            description.append(f"Source: {info.source}")
        lines += [
            "BEGIN:VEVENT",
            f"UID:{digest}@pytest-llmregress",
            f"DTSTAMP:{stamp}",
            f"DTSTART;VALUE=DATE:{info.retires_on:%Y%m%d}",
            f"DTEND;VALUE=DATE:{info.retires_on + timedelta(days=1):%Y%m%d}",
            f"SUMMARY:{_ics_escape(f'Model retirement: {model_id} ({roles})')}",
            f"DESCRIPTION:{_ics_escape(chr(10).join(description))}",
            "TRANSP:TRANSPARENT",
            "BEGIN:VALARM",
            "ACTION:DISPLAY",
            f"DESCRIPTION:{_ics_escape(f'{model_id} retires in {remind_days} days')}",
            f"TRIGGER:-P{remind_days}D",
            "END:VALARM",
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    return "".join(_ics_fold(line) + "\r\n" for line in lines)


def _cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    config, data = _load(args, None)
    if config.path is None:
        raise _UsageError(
            "no model config found: add [tool.llmregress.models.<role>] to pyproject.toml "
            "or [models.<role>] to llmregress.toml, or pass --config PATH"
        )
    today = args.today or date.today()
    rows = check_rows(
        config,
        data,
        today=today,
        warning_days=args.warning_days,
        require_pinned=args.require_pinned,
    )
    findings = [f for row in rows for f in row.findings]
    if args.ics is not None:
        calendar = retirement_calendar(
            rows, today=today, remind_days=args.remind_days, config_path=config.path
        )
        args.ics.write_bytes(calendar.encode("utf-8"))
    if args.format == "json":
        report = {
            "config": str(config.path),
            "today": today.isoformat(),
            "lifecycle_data_as_of": data.as_of.isoformat(),
            "models": [row.to_dict() for row in rows],
            "findings": [f.to_dict() for f in findings],
        }
        json.dump(report, out, indent=2)
        out.write("\n")
    else:
        out.write(f"Models in {_display(config.path)} on {today} ({data.describe()})\n\n")
        out.write(format_table(rows) + "\n")
        if findings:
            out.write("\n" + "\n".join(str(f) for f in findings) + "\n")
        if args.ics is not None:
            events = len({row.info.id for row in rows if row.info.retires_on})
            out.write(f"\nWrote {_count(events, 'retirement event')} to {args.ics}\n")
    return _exit_status((f.level for f in findings), args.strict)


# -- refresh ------------------------------------------------------------------------------


def _cmd_refresh(args: argparse.Namespace, out: TextIO) -> int:
    api_key = args.api_key or os.environ.get("OPENAI_API_KEY")
    if not api_key:
        raise _UsageError("no API key: pass --api-key or set OPENAI_API_KEY")
    today = args.today or date.today()
    try:
        entries = refresh_from_openai_models(args.openai_base_url, api_key, today=today)
    except Exception as exc:  # the SDK's connection/status errors
        print(f"{PROG} refresh: cannot list models: {exc}", file=sys.stderr)
        return 1
    if args.output is None:
        json.dump({"lifecycle": entries}, out, indent=2)
        out.write("\n")
        return 0
    header = (
        f"Lifecycle overrides for pytest-llmregress, written by `{PROG} refresh` on {today}\n"
        f"from GET {args.openai_base_url.rstrip('/')}/models (shutdown_date).\n"
        "Include it from your config: [[tool.llmregress.lifecycle]] (or [[lifecycle]] in "
        f'llmregress.toml) with file = "{args.output.name}"'
    )
    dump_overrides(entries, args.output, header=header)
    out.write(f"Wrote {_count(len(entries), 'lifecycle entry')} to {args.output}\n")
    return 0


# -- entry point --------------------------------------------------------------------------


class _UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Model ids against lifecycle data: lint a codebase, check the config.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    lint = commands.add_parser(
        "lint",
        help="find hard-coded model ids (Python, YAML, JSON, TOML, .env)",
        description="Find hard-coded model ids and report aliases/previews, retired or "
        "retiring ids, and ids that bypass the model config. Exit 1 on errors (retired "
        "ids; aliases/previews with --require-pinned), or on any finding with --strict.",
    )
    lint.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="default: .")
    _add_lifecycle_options(lint)

    check = commands.add_parser(
        "check",
        help="the configured models against the lifecycle data",
        description="Table of the configured roles and their lifecycle; exit 1 if any "
        "configured model is retired.",
    )
    _add_lifecycle_options(check)
    check.add_argument("--ics", type=Path, metavar="PATH", help="write an .ics calendar")
    check.add_argument(
        "--remind-days",
        type=_non_negative,
        default=DEFAULT_REMIND_DAYS,
        metavar="N",
        help=f"calendar reminder N days before each retirement (default {DEFAULT_REMIND_DAYS})",
    )

    refresh = commands.add_parser(
        "refresh",
        help="write lifecycle overrides from an OpenAI-format GET /models (shutdown_date)",
    )
    refresh.add_argument("--openai-base-url", required=True, metavar="URL")
    refresh.add_argument("--api-key", metavar="KEY", help="default: $OPENAI_API_KEY")
    refresh.add_argument(
        "-o", "--output", type=Path, metavar="PATH", help=".toml or .json (default: stdout)"
    )
    refresh.add_argument("--today", type=_iso_date, metavar="YYYY-MM-DD")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``llmregress models ...``; returns the exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_usage(sys.stderr)
        return 2
    handlers = {"lint": _cmd_lint, "check": _cmd_check, "refresh": _cmd_refresh}
    try:
        return handlers[args.command](args, sys.stdout)
    except (_UsageError, ModelConfigError, LifecycleError) as exc:
        print(f"{PROG} {args.command}: {exc}", file=sys.stderr)
        return 2


__all__ = [
    "CheckRow",
    "LintFinding",
    "check_rows",
    "format_table",
    "iter_lint_files",
    "lint_paths",
    "literals_in_file",
    "main",
    "retirement_calendar",
]
