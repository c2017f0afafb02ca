"""Recording reference outputs into golden files, editing the text rather than re-writing it.

:func:`record_references` writes reference answers into the cases of one golden file, by case
id. It fills only the cases without a reference unless asked to overwrite, never a case none of
whose scorers uses a reference (``exact`` with its own ``value``), and it changes only the
lines of the cases it records: every other byte of the file (comments, blank lines, key order,
quoting, escapes, line endings) stays as it was, so ``git diff`` shows exactly the recorded
references.

- **JSONL**: the ``reference`` value of a case line is spliced into the line's text (after
  ``user`` / ``messages``, or replacing the old value), with the line's own separators and its
  ``\\uXXXX`` style for non-ASCII text.
- **YAML**: the file is composed with PyYAML to find each case mapping and its ``reference``
  entry; a ``reference:`` entry is inserted after ``user`` / ``messages`` (or replaces the old
  one) at the case's indentation, as a plain, quoted or literal block scalar (``|-``, ``|``,
  ``|+``, with an indentation indicator for text that starts with spaces), whichever represents
  the text exactly in its place. Flow-style case mappings (``- {id: a, user: ...}``) and
  references written with anchors or aliases are refused with a :class:`RecordError`.

Before replacing the file, the new text is loaded with the golden file loader and every case
is compared with the old one: the recorded cases must hold exactly the given references and
nothing else may change. The write is atomic (a temporary file in the same directory, then
:func:`os.replace`) and keeps the file's mode. A :class:`RecordError` leaves the file untouched.

The user documentation is ``docs/recording-references.md``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from pytest_llmregress.cases.golden import CaseFileError, GoldenCase, parse_jsonl, parse_yaml
from pytest_llmregress.core.files import FileChangedError, atomic_write_bytes
from pytest_llmregress.scoring.scorers import needs_reference

if TYPE_CHECKING:
    import yaml

__all__ = [
    "RecordError",
    "RecordReport",
    "record_many",
    "record_references",
    "unified_diff",
]

_BOM: Final = "\ufeff"
_JSON_WS: Final = " \t\n\r"
# Characters PyYAML accepts unescaped in a document (its Reader's printable set), minus the
# ones YAML reads as line breaks or that editors mangle; the rest is escaped in double quotes.
_YAML_UNSAFE: Final = re.compile(
    "[^\x09\x0a\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"
)
# Non-ASCII characters written as \uXXXX in a JSON line (ASCII control escapes do not count).
_JSON_NON_ASCII_ESCAPE: Final = re.compile(r"\\u(?:00[89a-fA-F]|0[1-9a-fA-F]|[1-9a-fA-F])")
# Raw characters some tools read as line breaks; escaped in JSON lines too.
_JSON_LINE_BREAKS: Final = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_BLOCK_HEADER: Final = re.compile(r"[|>](?:[1-9][+-]?|[+-][1-9]?)?")
_PLAIN_SAFE: Final = re.compile(r"[A-Za-z0-9(][^\t\n\r#:]*[^\s:]|[A-Za-z0-9]")


# --------------------------------------------------------------------------------------------
# Results and errors
# --------------------------------------------------------------------------------------------


class RecordError(Exception):
    """A reference could not be recorded; the file was left untouched.

    ``str()`` is ``path:line: case 'id': message``, leaving out the parts not known.
    """

    def __init__(
        self, path: str, message: str, *, line: int | None = None, case_id: str | None = None
    ) -> None:
        self.path = path
        self.message = message
        self.line = line
        self.case_id = case_id
        super().__init__(path, message, line, case_id)

    def __str__(self) -> str:
        parts = [f"{self.path}:{self.line}" if self.line is not None else self.path]
        if self.case_id is not None:
            parts.append(f"case {self.case_id!r}")
        parts.append(self.message)
        return ": ".join(parts)


@dataclass
class RecordReport:
    """What :func:`record_references` did to one golden file.

    The id lists are in file order (``unknown_ids`` in the order given). ``before`` and
    ``after`` are the file's text (``after == before`` when nothing changed); :meth:`diff` shows
    the change. ``error`` is only set by :func:`record_many`, for a file it could not record.
    """

    path: str
    filled: list[str] = field(default_factory=list)
    """Cases that had no reference (missing or null) and got one."""
    overwritten: list[str] = field(default_factory=list)
    """Cases whose different reference was replaced (``overwrite=True`` only)."""
    skipped_existing: list[str] = field(default_factory=list)
    """Cases that kept their reference because ``overwrite`` was false."""
    unknown_ids: list[str] = field(default_factory=list)
    """Ids given that no case of the file has."""
    unchanged: list[str] = field(default_factory=list)
    """Cases whose reference already was the given text (``overwrite=True`` only)."""
    not_needed: list[str] = field(default_factory=list)
    """Cases left alone because none of their scorers uses a reference (``exact`` with its
    own ``value``, ``contains``, ``regex``, ``json``)."""
    written: bool = False
    """Whether the file was replaced (false when nothing changed, on a dry run or an error)."""
    error: RecordError | None = None
    before: str = field(default="", repr=False)
    after: str = field(default="", repr=False)

    @property
    def changed(self) -> bool:
        """Whether recording changes the file's text."""
        return self.after != self.before

    def diff(self, context: int = 3) -> str:
        """The change as a unified diff (empty when nothing changed)."""
        return unified_diff(self.before, self.after, self.path, context=context)

    def summary(self) -> str:
        """One line for a terminal summary, e.g. ``golden/a.jsonl: 3 filled, 1 unknown id (x)``."""
        if self.error is not None:
            return f"{self.path}: not recorded: {self.error.message}"
        parts = [f"{len(self.filled)} filled"]
        if self.overwritten:
            parts.append(f"{len(self.overwritten)} overwritten")
        if self.unchanged:
            parts.append(f"{len(self.unchanged)} already up to date")
        if self.not_needed:
            parts.append(
                f"{len(self.not_needed)} left alone (their scorers need no reference: "
                f"{', '.join(self.not_needed[:5])}{', ...' if len(self.not_needed) > 5 else ''})"
            )
        if self.skipped_existing:
            parts.append(
                f"{len(self.skipped_existing)} kept their existing reference (overwrite to replace)"
            )
        if self.unknown_ids:
            shown = ", ".join(self.unknown_ids[:5]) + (", ..." if len(self.unknown_ids) > 5 else "")
            parts.append(f"{len(self.unknown_ids)} unknown id(s) ({shown})")
        return f"{self.path}: " + ", ".join(parts)


def unified_diff(before: str, after: str, path: str = "golden file", *, context: int = 3) -> str:
    """A ``git diff``-like unified diff of two versions of a file's text ("" if equal)."""
    if before == after:
        return ""
    lines = difflib.unified_diff(_lines(before), _lines(after), f"a/{path}", f"b/{path}", n=context)
    out: list[str] = []
    for line in lines:
        if line.endswith("\n"):
            out.append(line)
        else:
            out.append(line + "\n\\ No newline at end of file\n")
    return "".join(out)


def _lines(text: str) -> list[str]:
    """Lines of ``text`` ending with ``\\n`` (not :meth:`str.splitlines`: no U+2028 breaks)."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def record_references(
    path: str | os.PathLike[str],
    references: Mapping[str, str],
    *,
    overwrite: bool = False,
    dry_run: bool = False,
    display_path: str | None = None,
) -> RecordReport:
    """Write ``references`` (case id to reference text) into the golden file at ``path``.

    A case gets its reference when it has none (missing or null), or when ``overwrite`` is
    true; cases not named in ``references`` are never touched, nor are cases none of whose
    scorers uses a reference (``exact`` with its own ``value``, ``contains``, ``regex``,
    ``json``: :func:`~pytest_llmregress.scoring.scorers.needs_reference`). The text of the
    file changes only in the recorded cases' lines; the new text must load, give the recorded
    cases exactly the given references and leave every other case as it was, or
    :class:`RecordError` is raised and the file is left untouched. With ``dry_run`` nothing
    is written (the report's ``after`` and :meth:`RecordReport.diff` show what would be).
    ``display_path`` is how the report and errors name the file (default: ``path``).
    """
    plan = _plan(path, references, overwrite=overwrite, display_path=display_path)
    if not dry_run:
        _commit(plan)
    return plan.report


def record_many(
    references_by_path: Mapping[str | os.PathLike[str], Mapping[str, str]],
    *,
    overwrite: bool = False,
    dry_run: bool = False,
    all_or_nothing: bool = False,
    display_paths: Mapping[str | os.PathLike[str], str] | None = None,
) -> list[RecordReport]:
    """:func:`record_references` for several files; one report per file, in the order given.

    Every file is prepared and verified first. A file that cannot be recorded gets a report
    with ``error`` set and is left untouched; the other files are written, unless
    ``all_or_nothing`` is true, in which case nothing is written when any file failed. Two
    paths naming the same file are merged (the same id with two different texts is an error).
    ``display_paths`` maps a path to how reports and errors name it (default: the path).
    """
    names = display_paths or {}
    merged: dict[str, tuple[str | os.PathLike[str], dict[str, str]]] = {}
    errors: dict[str, RecordError] = {}
    for path, references in references_by_path.items():
        real = os.path.realpath(path)
        if real not in merged:
            merged[real] = (path, dict(references))
            continue
        first, known = merged[real]
        for case_id, text in references.items():
            if case_id in known and known[case_id] != text:
                errors[real] = RecordError(
                    names.get(first, os.fspath(first)),
                    f"two different references given (the file is also named {os.fspath(path)!r})",
                    case_id=case_id,
                )
            known[case_id] = text

    reports: list[RecordReport] = []
    plans: list[_Plan] = []
    for real, (path, references) in merged.items():
        error = errors.get(real)
        if error is None:
            try:
                plan = _plan(path, references, overwrite=overwrite, display_path=names.get(path))
            except RecordError as exc:
                error = exc
            else:
                plans.append(plan)
                reports.append(plan.report)
                continue
        reports.append(RecordReport(names.get(path, os.fspath(path)), error=error))
    if dry_run or (all_or_nothing and any(r.error is not None for r in reports)):
        return reports
    for plan in plans:
        try:
            _commit(plan)
        except RecordError as exc:
            plan.report.error = exc
            plan.report.after = plan.report.before
    return reports


# --------------------------------------------------------------------------------------------
# Planning: what to record, the new text, its verification
# --------------------------------------------------------------------------------------------


@dataclass
class _Plan:
    report: RecordReport
    real_path: str
    original: bytes
    new_bytes: bytes | None  # None: nothing to write


def _plan(
    path: str | os.PathLike[str],
    references: Mapping[str, str],
    *,
    overwrite: bool,
    display_path: str | None,
) -> _Plan:
    name = display_path or os.fspath(path)
    for case_id, value in references.items():
        if not isinstance(value, str):
            raise TypeError(
                f"reference of case {case_id!r} must be a string, got {type(value).__name__}"
            )
    suffix = os.path.splitext(name)[1].lower()
    if suffix not in (".jsonl", ".yaml", ".yml"):
        raise RecordError(name, f"unsupported file type {suffix or name!r}")
    real = os.path.realpath(path)
    try:
        with open(real, "rb") as handle:
            original = handle.read()
    except OSError as exc:
        raise RecordError(name, f"cannot read file: {exc.strerror or exc}") from None
    try:
        decoded = original.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(
            name, f"file is not valid UTF-8: {exc.reason} at byte {exc.start}"
        ) from None
    bom = _BOM if decoded.startswith(_BOM) else ""
    text = decoded.removeprefix(_BOM)
    parse = parse_jsonl if suffix == ".jsonl" else parse_yaml
    try:
        cases = parse(_universal_newlines(text), name)
    except CaseFileError as exc:
        raise RecordError(
            name, f"the file does not load, fix it first:\n{exc}", line=_first_line(exc)
        ) from None

    report = RecordReport(name, before=text, after=text)
    known = {case.id for case in cases}
    report.unknown_ids = [case_id for case_id in references if case_id not in known]
    changes: dict[str, str] = {}
    for case in cases:
        if case.id not in references:
            continue
        value = references[case.id]
        if not any(needs_reference(spec) for spec in case.scorers):
            report.not_needed.append(case.id)
            continue
        if case.reference is None:
            report.filled.append(case.id)
        elif not overwrite:
            report.skipped_existing.append(case.id)
            continue
        elif case.reference == value:
            report.unchanged.append(case.id)
            continue
        else:
            report.overwritten.append(case.id)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise RecordError(
                name,
                "the reference is not valid Unicode text (it holds a lone surrogate)",
                line=case.line,
                case_id=case.id,
            ) from None
        changes[case.id] = value
    if not changes:
        return _Plan(report, real, original, None)

    if suffix == ".jsonl":
        new_text = _edit_jsonl(text, cases, changes, name)
    else:
        new_text = _edit_yaml(text, cases, changes, name)
    _verify(new_text, cases, changes, parse, name)
    report.after = new_text
    return _Plan(report, real, original, (bom + new_text).encode("utf-8"))


def _universal_newlines(text: str) -> str:
    """``text`` as :func:`~pytest_llmregress.cases.golden.load_cases` reads it (universal
    newlines)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _first_line(error: CaseFileError) -> int | None:
    return error.problems[0].line if error.problems else None


def _verify(
    new_text: str,
    old_cases: list[GoldenCase],
    changes: Mapping[str, str],
    parse: Callable[[str, str], list[GoldenCase]],
    path: str,
) -> None:
    """Raise :class:`RecordError` unless ``new_text`` loads as ``old_cases`` plus ``changes``."""
    try:
        new_cases = parse(_universal_newlines(new_text), path)
    except CaseFileError as exc:  # a bug of the editor, never the user's fault
        raise RecordError(
            path, f"internal error: the edited file would not load, nothing written:\n{exc}"
        ) from None
    if [c.id for c in new_cases] != [c.id for c in old_cases]:
        raise RecordError(path, "internal error: the edited file has different cases")
    for old, new in zip(old_cases, new_cases, strict=True):
        expected = dataclasses.replace(
            old, reference=changes.get(old.id, old.reference), line=new.line
        )
        if new == expected:
            continue
        if new.reference != expected.reference and old.id in changes:
            raise RecordError(
                path,
                "the recorded reference would not load back unchanged "
                f"(it would read {_short(new.reference)}); nothing written",
                line=old.line,
                case_id=old.id,
            )
        fields = [
            f.name
            for f in dataclasses.fields(GoldenCase)
            if getattr(new, f.name) != getattr(expected, f.name)
        ]
        raise RecordError(
            path,
            f"recording would also change this case ({', '.join(fields)}), probably through a "
            "YAML anchor, alias or merge key; record it by hand. Nothing written",
            line=old.line,
            case_id=old.id,
        )


def _short(value: str | None, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _commit(plan: _Plan) -> None:
    """Replace the file with the planned bytes atomically, keeping its mode."""
    if plan.new_bytes is None:
        return
    path = plan.report.path
    try:
        atomic_write_bytes(plan.real_path, plan.new_bytes, expected=plan.original)
    except FileChangedError:
        raise RecordError(
            path, "the file changed while references were recorded; nothing written"
        ) from None
    except OSError as exc:
        raise RecordError(path, f"cannot write file: {exc.strerror or exc}") from None
    plan.report.written = True


# --------------------------------------------------------------------------------------------
# JSONL: splice the value into the case's line
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Member:
    """One top-level ``"key": value`` of a JSON object line, as character offsets."""

    key: str
    key_start: int
    key_end: int
    value_start: int
    value_end: int


def _skip_ws(line: str, i: int) -> int:
    while i < len(line) and line[i] in _JSON_WS:
        i += 1
    return i


def _json_members(line: str) -> list[_Member]:
    """The top-level members of the JSON object on ``line`` (already known to be valid)."""
    decoder = json.JSONDecoder()
    i = _skip_ws(line, 0)
    if line[i : i + 1] != "{":
        raise ValueError("not a JSON object")
    i = _skip_ws(line, i + 1)
    members: list[_Member] = []
    if line[i : i + 1] == "}":
        return members
    while True:
        key, key_end = decoder.raw_decode(line, i)
        colon = _skip_ws(line, key_end)
        if not isinstance(key, str) or line[colon : colon + 1] != ":":
            raise ValueError("bad JSON member")
        value_start = _skip_ws(line, colon + 1)
        _, value_end = decoder.raw_decode(line, value_start)
        members.append(_Member(key, i, key_end, value_start, value_end))
        after = _skip_ws(line, value_end)
        if line[after : after + 1] == ",":
            i = _skip_ws(line, after + 1)
        elif line[after : after + 1] == "}":
            return members
        else:
            raise ValueError("bad JSON object")


def _json_string(value: str, line: str) -> str:
    """``value`` as a JSON string in the escaping style of ``line``."""
    ascii_only = not any(ord(ch) > 127 for ch in line) and bool(_JSON_NON_ASCII_ESCAPE.search(line))
    dumped = json.dumps(value, ensure_ascii=ascii_only)
    for raw, escaped in _JSON_LINE_BREAKS.items():
        dumped = dumped.replace(raw, escaped)
    return dumped


def _edit_jsonl(text: str, cases: list[GoldenCase], changes: Mapping[str, str], path: str) -> str:
    lines = text.split("\n")
    line_of: dict[str, int] = {}
    for number, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("//"):
            continue
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("id"), str):
            line_of.setdefault(data["id"], number)
    case_line = {case.id: case.line for case in cases}
    for case_id, value in changes.items():
        found = line_of.get(case_id)
        if found is None:  # pragma: no cover - the loader found it
            raise RecordError(path, "internal error: case line not found", case_id=case_id)
        number = found
        line = lines[number]
        try:
            members = _json_members(line)
        except ValueError as exc:  # pragma: no cover - the loader parsed this line
            raise RecordError(
                path, f"internal error: {exc}", line=case_line[case_id], case_id=case_id
            ) from None
        new_value = _json_string(value, line)
        by_key = {m.key: i for i, m in enumerate(members)}
        if "reference" in by_key:
            m = members[by_key["reference"]]
            lines[number] = line[: m.value_start] + new_value + line[m.value_end :]
            continue
        anchor = by_key.get("user", by_key.get("messages", len(members) - 1))
        a = members[anchor]
        if anchor + 1 < len(members):
            item_sep = line[a.value_end : members[anchor + 1].key_start]
        elif anchor > 0:
            item_sep = line[members[anchor - 1].value_end : a.key_start]
        else:  # pragma: no cover - a case has at least an id and a user or messages
            item_sep = ", "
        key_sep = line[a.key_end : a.value_start]
        entry = f"{item_sep}{json.dumps('reference')}{key_sep}{new_value}"
        lines[number] = line[: a.value_end] + entry + line[a.value_end :]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# YAML: insert or replace a `reference:` entry in the case mapping's text
# --------------------------------------------------------------------------------------------


class _Unsupported(Exception):
    """The YAML around a case is written in a way the editor does not change safely."""


def _edit_yaml(text: str, cases: list[GoldenCase], changes: Mapping[str, str], path: str) -> str:
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:  # pragma: no cover - the loader parsed this text
        raise RecordError(path, f"internal error: {exc}") from None
    items = _yaml_case_nodes(root)
    if len(items) != len(cases):  # pragma: no cover - the loader built a case per item
        raise RecordError(path, "internal error: cases and YAML mappings do not match")
    newline = "\r\n" if "\r\n" in text else "\n"
    edits: list[tuple[int, int, str]] = []
    for case, node in zip(cases, items, strict=True):
        if case.id not in changes:
            continue
        try:
            edits.append(_yaml_edit(text, node, changes[case.id], newline))
        except _Unsupported as exc:
            raise RecordError(path, str(exc), line=case.line, case_id=case.id) from None
    pieces: list[str] = []
    done = 0
    for start, end, replacement in sorted(edits):
        pieces += [text[done:start], replacement]
        done = end
    pieces.append(text[done:])
    return "".join(pieces)


def _yaml_case_nodes(root: yaml.Node | None) -> list[yaml.MappingNode]:
    import yaml

    node = root
    if isinstance(node, yaml.MappingNode):
        node = next((v for k, v in node.value if k.value == "cases"), None)
    if not isinstance(node, yaml.SequenceNode):  # pragma: no cover - the loader checked
        return []
    return [item for item in node.value if isinstance(item, yaml.MappingNode)]


def _line_end(text: str, index: int) -> int:
    """Index of the line break ending the line that holds ``index`` (or ``len(text)``)."""
    end = text.find("\n", index)
    if end < 0:
        return len(text)
    return end - 1 if end > 0 and text[end - 1] == "\r" else end


def _yaml_edit(text: str, node: yaml.MappingNode, value: str, newline: str) -> tuple[int, int, str]:
    """``(start, end, replacement)`` that records ``value`` in the case mapping ``node``."""
    import yaml

    if node.flow_style:
        raise _Unsupported(
            "the case is a flow-style mapping ({...}), which is not edited automatically; "
            "write it as a block mapping (one key per line) or add the reference by hand"
        )
    col = int(node.value[0][0].start_mark.column)
    pairs = {k.value: (k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)}
    if "reference" in pairs:
        key, old = pairs["reference"]
        start = int(key.start_mark.index)
        key_end = int(key.end_mark.index)
        if not isinstance(old, yaml.ScalarNode) or int(old.start_mark.index) < key_end:
            raise _Unsupported(
                "the reference is a YAML alias (*name); replace it by hand or remove it first"
            )
        if text[old.start_mark.index : old.start_mark.index + 1] in ("&", "!"):
            raise _Unsupported(
                "the reference has a YAML anchor or tag (&name, !tag), which other parts of "
                "the file may use; replace it by hand or remove it first"
            )
        line_start = text.rfind("\n", 0, start) + 1
        if text[line_start:start].strip(" -"):
            raise _Unsupported("the 'reference' key is not at the start of its line")
        end = _content_end(text, old, key_end)
        rest = text[end : _line_end(text, end)]
        comment = ""
        if old.style in ("|", ">"):
            header = text[old.start_mark.index : _line_end(text, old.start_mark.index)]
            match = re.fullmatch(r"[|>][0-9+-]*(\s+#.*)?", header)
            comment = (match.group(1) or "") if match else ""
        if rest.strip():
            if not rest.lstrip().startswith("#"):
                raise _Unsupported("unexpected text after the reference on its line")
            comment = rest
        end = _line_end(text, end)
        following = text[end:]
        entry = _yaml_entry(value, col, comment, following, newline)
        return start, end, entry
    anchor = pairs.get("user") or pairs.get("messages") or node.value[-1]
    floor = int(anchor[0].end_mark.index)
    end = _line_end(text, _content_end(text, anchor[1], floor))
    entry = _yaml_entry(value, col, "", text[end:], newline)
    return end, end, newline + " " * col + entry


def _content_end(text: str, node: yaml.Node, floor: int) -> int:
    """Index just past the text of ``node`` (a value that starts at or after ``floor``).

    Trailing blank lines of a block scalar belong to it only with keep chomping (``|+``).
    """
    import yaml

    start = int(node.start_mark.index)
    if start < floor:  # an alias: PyYAML hands back the anchored node, marks and all
        match = re.match(r"&([^\s,\[\]{}]+)", text[start:])
        pos = text.find("*" + match.group(1), floor) if match else -1
        if match is None or pos < 0:
            raise _Unsupported("a YAML alias in this case is too unusual to edit around")
        return pos + 1 + len(match.group(1))
    end = int(node.end_mark.index)
    if isinstance(node, yaml.ScalarNode):
        if node.style not in ("|", ">"):
            return end
        segment = text[start:end]
        header = _BLOCK_HEADER.search(segment)
        keep = header is not None and "+" in header.group(0)
        if not keep:
            return start + len(segment.rstrip())
        trimmed = segment.rstrip(" ")
        if not trimmed.endswith("\n"):
            return start + len(trimmed)
        return start + len(trimmed) - (2 if trimmed.endswith("\r\n") else 1)
    if isinstance(node, yaml.CollectionNode) and node.flow_style:
        return end
    if isinstance(node, yaml.MappingNode):
        key, value = node.value[-1]
        return _content_end(text, value, int(key.end_mark.index))
    if isinstance(node, yaml.SequenceNode):
        last = start
        for item in node.value:
            last = _content_end(text, item, last)
        return last
    return end  # pragma: no cover - no other node kinds


def _absorbable(following: str, col: int) -> list[str]:
    """The lines after a value that a block scalar written there could take in.

    ``following`` starts at a line break. These are the blank lines and the lines indented
    deeper than the case's keys (comments) before the next line at the keys' indentation or
    less.
    """
    lines = following.split("\n")[1:]
    if lines and not lines[-1]:
        lines.pop()  # the file's final line break ends the last line; no line follows it
    taken: list[str] = []
    for line in lines:
        body = line.rstrip("\r")
        indent = len(body) - len(body.lstrip(" "))
        if body.strip() and indent <= col:
            break
        taken.append(body)
    return taken


def _yaml_entry(value: str, col: int, comment: str, following: str, newline: str) -> str:
    """``reference: ...`` (without the leading indentation) holding ``value`` exactly.

    The first form that reads back as ``value`` in its place (checked by parsing a small
    document with the same indentation and the same following lines) wins: plain, single- or
    double-quoted for one line; a literal block, else double-quoted, for several lines.
    """
    context = _absorbable(following, col)
    indent = " " * col
    for form in _yaml_forms(value, col, comment, newline):
        doc = (
            indent
            + form
            + "".join(newline + line for line in context)
            + newline
            + indent
            + "zz_next_key: 0"
            + newline
        )
        if _reads_back(doc, value):
            return form
    raise _Unsupported(  # pragma: no cover - double quotes represent any text
        "the reference cannot be written as a YAML scalar here"
    )


def _reads_back(doc: str, value: str) -> bool:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(doc, Loader=loader)  # a safe loader (libyaml when available)
    except yaml.YAMLError:
        return False
    return (
        isinstance(data, dict)
        and data.get("reference") == value
        and isinstance(data.get("reference"), str)
        and data.get("zz_next_key") == 0
        and len(data) == 2
    )


def _yaml_forms(value: str, col: int, comment: str, newline: str) -> Iterator[str]:
    """Candidate ``reference: ...`` entries for ``value``, nicest first."""
    key = "reference:"
    one_line = "\n" not in value and not _YAML_UNSAFE.search(value)
    if one_line and _PLAIN_SAFE.fullmatch(value):
        yield f"{key} {value}{comment}"
    if one_line and "\t" not in value:
        single = "'" + value.replace("'", "''") + "'"
        double = _yaml_double_quoted(value)
        yield f"{key} {single if len(single) <= len(double) else double}{comment}"
    if "\n" in value:
        lines = value.split("\n")
        # Editors strip trailing whitespace on save, so a literal block never has any.
        if (
            value.strip()
            and not _YAML_UNSAFE.search(value)
            and all(line == line.rstrip(" \t") for line in lines)
        ):
            yield _yaml_literal(value, col, comment, newline)
        yield f"{key} {_yaml_double_quoted_lines(lines, col, newline)}{comment}"
    yield f"{key} {_yaml_double_quoted(value)}{comment}"


def _yaml_literal(value: str, col: int, comment: str, newline: str) -> str:
    """A literal block scalar entry for multi-line ``value``, content indented by 2."""
    trailing = len(value) - len(value.rstrip("\n"))
    chomp = "-" if trailing == 0 else "" if trailing == 1 else "+"
    body = value[:-1] if trailing else value
    lines = body.split("\n")
    first = next((line for line in lines if line), "")
    indicator = "2" if first.startswith(" ") else ""
    content_indent = " " * (col + 2)
    text = f"reference: |{indicator}{chomp}{comment}"
    for line in lines:
        text += newline + (content_indent + line if line else "")
    return text


def _yaml_double_quoted_lines(lines: list[str], col: int, newline: str) -> str:
    """A double-quoted scalar over several lines, one line of text each (``\\n\\`` breaks).

    Each source line ends with an escaped line break, so no line of the file ends with
    whitespace; a continuation line's leading space is escaped (YAML would drop it).
    """
    pieces = [_yaml_double_quoted(line)[1:-1] + "\\n" for line in lines[:-1]]
    if lines[-1]:
        pieces.append(_yaml_double_quoted(lines[-1])[1:-1])
    pieces[1:] = ["\\ " + p[1:] if p.startswith(" ") else p for p in pieces[1:]]
    return '"' + ("\\" + newline + " " * (col + 2)).join(pieces) + '"'


def _yaml_double_quoted(value: str) -> str:
    """``value`` as a one-line YAML double-quoted scalar; escapes whatever is not printable."""
    out = ['"']
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif _YAML_UNSAFE.match(ch):
            code = ord(ch)
            if code <= 0xFF:
                out.append(f"\\x{code:02x}")
            elif code <= 0xFFFF:
                out.append(f"\\u{code:04x}")
            else:  # pragma: no cover - astral characters are printable
                out.append(f"\\U{code:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)
