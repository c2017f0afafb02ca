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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Final, TextIO, get_args

from pytest_llmregress.core.masking import mask_url, mask_urls_in
from pytest_llmregress.models.config import ModelConfig, ModelConfigError, load_model_config
from pytest_llmregress.models.gitignore import (
    GITIGNORE,
    IgnoreRules,
    ancestor_rules,
    parse_rules,
    read_rules,
)
from pytest_llmregress.models.ids import ModelInfo, looks_like_id, parse_model_id
from pytest_llmregress.models.lifecycle import (
    DEFAULT_WARNING_DAYS,
    FindingCode,
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
#: Notebooks carry their outputs (images), so they may be larger.
MAX_NOTEBOOK_BYTES: Final = 50_000_000

#: The per-line suppression comment: ``llmregress: ignore`` anywhere on the line silences
#: every finding of that line, ``llmregress: ignore[alias,bypasses-config]`` only those codes.
SUPPRESSION: Final = "llmregress: ignore"
_SUPPRESS = re.compile(r"llmregress:\s*ignore(?:\[(?P<codes>[^\]]*)\])?")

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

_STATUS_ORDER: Final = tuple(code for code in get_args(FindingCode) if code != "bypasses-config")

# -- lint ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LintFinding:
    """One problem with one hard-coded model id at ``path:line``."""

    path: str
    line: int
    """The line in the file; in a notebook, the line in the cell."""
    id: str
    level: str
    code: str
    message: str
    cell: int | None = None
    """In a notebook: the cell, counted from 1 over all cells (as ruff counts them)."""

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}"
        if self.cell is not None:
            where = f"{self.path}:cell {self.cell}:{self.line}"
        return f"{where}: {self.id}: {self.level}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_JS_SUFFIXES: Final = (".ts", ".tsx", ".mts", ".cts", ".js", ".jsx", ".mjs", ".cjs")


def _file_kind(path: Path) -> str | None:
    name = path.name
    if name.endswith((".py", ".pyi")):
        return "python"
    if name.endswith(".ipynb"):
        return "notebook"
    if name.endswith(_JS_SUFFIXES):
        return "javascript"
    if name.endswith((".sh", ".bash", ".zsh")):
        return "shell"
    if (
        name in ("Dockerfile", "Containerfile")
        or name.startswith(("Dockerfile.", "Containerfile."))
        or name.endswith((".dockerfile", ".Dockerfile"))
    ):
        return "dockerfile"
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


def exclude_rules(globs: Iterable[str], base: Path) -> IgnoreRules:
    """``--exclude`` globs (gitignore syntax) as rules relative to ``base``."""
    return IgnoreRules(tuple(parse_rules("\n".join(globs), base.resolve())))


def iter_lint_files(
    paths: Iterable[Path],
    *,
    exclude: Iterable[Path] = (),
    exclude_globs: Sequence[str] = (),
    gitignore: bool = True,
) -> Iterator[Path]:
    """Files ``lint`` reads under ``paths``, in order: a folder's files (sorted), then its
    folders. Never entered: VCS, virtualenv, cache and build folders; with ``gitignore``,
    what ``.gitignore`` files (and ``.git/info/exclude``) ignore; what ``exclude_globs``
    match (gitignore syntax, relative to the current directory). ``exclude`` lists files
    left out by path.

    A file named explicitly is read even when its type is unknown (as plain text) or a
    ``.gitignore`` ignores it; ``exclude_globs`` still apply to it.
    """
    excluded = {p.resolve() for p in exclude}
    cwd = Path.cwd().resolve()
    globs = exclude_rules(exclude_globs, cwd) if exclude_globs else IgnoreRules()
    for root in paths:
        real = root.resolve()
        if globs and not real.is_relative_to(cwd):
            # a path outside the current directory: globs are relative to the path given
            here = real if root.is_dir() else real.parent
            globs_here = exclude_rules(exclude_globs, here)
        else:
            globs_here = globs
        if root.is_file():
            if real not in excluded and not globs_here.ignored_here_or_above(real, is_dir=False):
                yield root
            continue
        if globs_here.ignored_here_or_above(real, is_dir=True):
            continue
        inherited = ancestor_rules(real) if gitignore else IgnoreRules()
        yield from _walk(root, real, inherited, globs_here, excluded, gitignore=gitignore)


def _walk(
    shown: Path,
    real: Path,
    rules: IgnoreRules,
    globs: IgnoreRules,
    excluded: set[Path],
    *,
    gitignore: bool,
) -> Iterator[Path]:
    if gitignore:
        rules = rules + read_rules(real / GITIGNORE)
    try:
        entries = sorted(os.scandir(real), key=lambda entry: entry.name)
    except OSError:
        return
    folders: list[str] = []
    for entry in entries:
        path = real / entry.name
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
            is_file = not is_dir and entry.is_file()
        except OSError:
            continue
        if not (is_dir or is_file):
            continue
        if rules.ignored(path, is_dir=is_dir) or globs.ignored(path, is_dir=is_dir):
            continue
        if is_dir:
            if not _skip_dir(path):
                folders.append(entry.name)
        elif _file_kind(path) and not (excluded and path.resolve() in excluded):
            yield shown / entry.name
    for name in folders:
        yield from _walk(shown / name, real / name, rules, globs, excluded, gitignore=gitignore)


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


def _shell_values(text: str) -> Iterator[tuple[int, str]]:
    """Shell scripts and Dockerfiles: id-shaped words outside ``#`` comments, with the
    default of ``${VAR:-default}`` apart from the variable name."""
    for number, value in _tokens(text):
        for part in re.split(r":[-=?+]", value):
            if part:
                yield number, part


def _js_literals(text: str) -> Iterator[tuple[int, str]]:
    """String literals of JavaScript / TypeScript: ``'...'``, ``"..."`` and template
    literals without ``${...}``, outside ``//`` and ``/* */`` comments. A small scanner,
    not a parser: a quote inside a regex literal can hide the rest of its line."""
    i, n, line = 0, len(text), 1
    while i < n:
        char = text[i]
        if char == "\n":
            line += 1
            i += 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            line += text.count("\n", i, end)
            i = end
        elif char in "'\"":
            start, i = i + 1, i + 1
            while i < n and text[i] not in (char, "\n"):
                i += 2 if text[i] == "\\" else 1
            if i < n and text[i] == char:
                yield line, text[start:i]
                i += 1
            line += text.count("\n", start, min(i, n))  # a line continued with a backslash
        elif char == "`":
            start, i, static = i + 1, i + 1, True
            while i < n and text[i] != "`":
                if text.startswith("${", i):
                    static = False
                    i = _skip_template_expression(text, i + 2)
                else:
                    i += 2 if text[i] == "\\" else 1
            if static and i < n:
                yield line, text[start:i]
            line += text.count("\n", start, min(i, n))
            i += 1
        else:
            i += 1


def _skip_template_expression(text: str, i: int) -> int:
    """The index after the ``}`` closing a ``${`` whose body starts at ``i``."""
    depth = 1
    while i < len(text) and depth:
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
        i += 1
    return i


def _python_source(source: str) -> str:
    """Notebook cell source as Python: IPython magics (``%pip``, ``!ls``) become blank lines,
    so the rest still parses and keeps its line numbers."""
    lines = source.splitlines()
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in lines)


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


_READERS: Final[dict[str, Callable[[str], Iterator[tuple[int, str]]]]] = {
    "python": _python_literals,
    "yaml": _yaml_values,
    "json": _json_values,
    "toml": _toml_values,
    "env": _env_values,
    "javascript": _js_literals,
    "shell": _shell_values,
    "dockerfile": _shell_values,
}


@dataclass(frozen=True)
class Candidate:
    """A string found in a file that may be a model id, with the text of its line."""

    line: int
    value: str
    text: str
    """The physical line (for the suppression comment)."""
    cell: int | None = None
    """In a notebook: the cell (from 1); ``line`` and ``text`` are then the cell's."""


def _with_text(
    found: Iterable[tuple[int, str]], lines: Sequence[str], cell: int | None = None
) -> list[Candidate]:
    return [
        Candidate(line, value, lines[line - 1] if 0 < line <= len(lines) else "", cell)
        for line, value in sorted(set(found))
    ]


def _notebook_candidates(text: str) -> list[Candidate]:
    """Code cells of a Jupyter notebook, read as the kernel's language (Python unless the
    notebook says JavaScript or TypeScript); markdown and raw cells are prose."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return _with_text(_tokens(text), text.splitlines())
    if not isinstance(document, dict) or not isinstance(document.get("cells"), list):
        return []
    metadata = document.get("metadata")
    language = ""
    if isinstance(metadata, dict):
        for key in ("kernelspec", "language_info"):
            info = metadata.get(key)
            if isinstance(info, dict):
                language = str(info.get("language") or info.get("name") or language)
                if language:
                    break
    found: list[Candidate] = []
    for number, cell in enumerate(document["cells"], 1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(str(part) for part in source)
        if not isinstance(source, str):
            continue
        if source.lstrip().startswith("%%"):
            literals: Iterable[tuple[int, str]] = _tokens(source)  # a cell magic: not Python
        elif language.lower() in ("javascript", "typescript"):
            literals = _js_literals(source)
        elif language.lower() in ("", "python", "python3"):
            literals = _python_literals(_python_source(source))
        else:
            literals = _tokens(source)
        found += _with_text(literals, source.splitlines(), number)
    return found


def candidates_in_file(path: Path, text: str) -> list[Candidate]:
    """Strings in one file that may be model ids: Python and JavaScript/TypeScript string
    literals, values of YAML/JSON/TOML/.env files, code cells of notebooks, words of shell
    scripts and Dockerfiles, id-shaped tokens of other files."""
    kind = _file_kind(path) or ""
    if kind == "notebook":
        return _notebook_candidates(text)
    reader = _READERS.get(kind, _tokens)
    return _with_text(reader(text), text.splitlines())


def literals_in_file(path: Path, text: str) -> list[tuple[int, str]]:
    """(line, string) pairs of :func:`candidates_in_file` (in a notebook, lines of cells)."""
    return sorted({(c.line, c.value) for c in candidates_in_file(path, text)})


def suppressed_codes(line: str) -> frozenset[str] | None:
    """The finding codes the line's suppression comment silences: None without one, an
    empty set for ``llmregress: ignore`` (every code)."""
    match = _SUPPRESS.search(line)
    if match is None:
        return None
    codes = match["codes"]
    if codes is None:
        return frozenset()
    return frozenset(code.strip() for code in codes.split(",") if code.strip())


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
    exclude_globs: Sequence[str] = (),
    gitignore: bool = True,
) -> list[LintFinding]:
    """Hard-coded model ids under ``paths`` and their problems.

    Each id found gets the :meth:`LifecycleData.check` findings (retired: error; retiring,
    deprecated, alias, preview: warning) and, when ``config`` defines roles and the id is
    none of their ids or fallbacks, a ``bypasses-config`` warning. The config file itself and
    its lifecycle files should be passed in ``exclude``. ``exclude_globs`` and ``gitignore``
    are as in :func:`iter_lint_files`. A line with the suppression comment
    (:data:`SUPPRESSION`) reports nothing, or nothing of the codes it names.
    """
    config = config or ModelConfig()
    data = data or config.lifecycle()
    today = today or date.today()
    configured = {parse_model_id(mid).name for mid in config.model_ids()}
    where = _display(config.path) if config.path else ""
    findings: list[LintFinding] = []
    cache: dict[str, list[LifecycleFinding]] = {}
    files = iter_lint_files(
        paths, exclude=exclude, exclude_globs=exclude_globs, gitignore=gitignore
    )
    for path in files:
        limit = MAX_NOTEBOOK_BYTES if _file_kind(path) == "notebook" else MAX_FILE_BYTES
        try:
            if path.stat().st_size > limit:
                continue
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        shown = _display(path)
        for found in candidates_in_file(path, text):
            value = found.value
            if not looks_like_id(value) or not data.is_model_id(value):
                continue
            silenced = suppressed_codes(found.text)
            if silenced is not None and not silenced:
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
                LintFinding(shown, found.line, value, p.level, p.code, p.message, found.cell)
                for p in cache[value]
                if not silenced or p.code not in silenced
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
        help="aliases, previews and self-hosted ids that no lifecycle entry pins are errors, "
        "not warnings",
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
        exclude_globs=args.exclude,
        gitignore=args.gitignore,
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
            "digest": info.digest,
            "version": info.version,
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
    """The ``check`` table; a PINNED TO column (a self-hosted model's version and digest)
    only when a project entry pins one of the rows."""
    pinned = any(row.info.pinned_to for row in rows)
    header = ["ROLE", "ID", "KIND", "RESOLVES TO", "RETIRES ON", "DAYS LEFT", "STATUS"]
    body = [
        [
            row.role,
            row.info.id,
            row.info.kind,
            row.info.resolves_to or "-",
            str(row.info.retires_on or "-"),
            "-" if row.info.days_left is None else str(row.info.days_left),
            row.status,
        ]
        for row in rows
    ]
    if pinned:
        header.insert(3, "PINNED TO")
        for line, row in zip(body, rows, strict=True):
            line.insert(3, row.info.pinned_to or "-")
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
        if info.pinned_to:  # a model the project serves: the date is the project's
            what = (
                f"{model_id} ({info.pinned_to}) retires on {info.retires_on}, the project's date."
            )
        else:
            what = f"{model_id} retires on {info.retires_on}: every request to it fails after that."
        description = [what, f"Configured roles: {roles}."]
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
        try:
            args.ics.parent.mkdir(parents=True, exist_ok=True)
            args.ics.write_bytes(calendar.encode("utf-8"))
        except OSError as exc:
            raise _UsageError(f"cannot write {args.ics}: {exc}") from None
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
        print(f"{PROG} refresh: cannot list models: {mask_urls_in(str(exc))}", file=sys.stderr)
        return 1
    for entry in entries:  # each names the URL it came from; it is printed or written
        entry["source"] = mask_urls_in(entry["source"])
    if args.output is None:
        json.dump({"lifecycle": entries}, out, indent=2)
        out.write("\n")
        return 0
    # the path as given is relative to where the command ran, usually the config's folder
    include = args.output.name if args.output.is_absolute() else args.output.as_posix()
    header = (
        f"Lifecycle overrides for pytest-llmregress, written by `{PROG} refresh` on {today}\n"
        f"from GET {mask_url(args.openai_base_url.rstrip('/'))}/models (shutdown_date).\n"
        "Include it from your config: [[tool.llmregress.lifecycle]] (or [[lifecycle]] in "
        f'llmregress.toml) with file = "{include}"'
    )
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        dump_overrides(entries, args.output, header=header)
    except OSError as exc:
        raise _UsageError(f"cannot write {args.output}: {exc}") from None
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
        help="find hard-coded model ids (Python, JS/TS, notebooks, YAML, JSON, TOML, .env, "
        "shell, Dockerfiles)",
        description="Find hard-coded model ids and report aliases/previews, retired or "
        "retiring ids, and ids that bypass the model config. Exit 1 on errors (retired "
        "ids; aliases, previews and unpinned self-hosted ids with --require-pinned), or on "
        "any finding with --strict. "
        f"A line with the comment '{SUPPRESSION}' (or '{SUPPRESSION}[CODE,...]') is not "
        "reported.",
    )
    lint.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="default: .")
    lint.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="skip files and folders matching GLOB (gitignore syntax, relative to the "
        "current directory; a GLOB without '/' matches a name at any depth); repeatable",
    )
    lint.add_argument(
        "--no-gitignore",
        dest="gitignore",
        action="store_false",
        help="also read files that .gitignore files ignore",
    )
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
    "SUPPRESSION",
    "Candidate",
    "CheckRow",
    "LintFinding",
    "candidates_in_file",
    "check_rows",
    "exclude_rules",
    "format_table",
    "iter_lint_files",
    "lint_paths",
    "literals_in_file",
    "main",
    "retirement_calendar",
    "suppressed_codes",
]
