"""The validation kit every checker of a user's file shares.

Golden files, scenarios, the model config, the canary config, lifecycle overrides and prompt
files are each checked by their own module, with checks specific to them; what they have in
common lives here, once:

- how a message shows a value it got (:func:`describe`, :func:`type_name`,
  :func:`type_and_repr`, :func:`short_repr`), and the "did you mean" hint (:func:`did_you_mean`,
  :func:`unknown_key_message`);
- :func:`jsonable_problem`: why a value cannot be written as JSON;
- :class:`Problem` and :class:`Problems`: one problem (line, field path, message) and the
  collector that keeps the first :data:`MAX_PROBLEMS` of a file and counts the rest;
  :func:`format_problem` writes ``path:line: case 'id': field 'x': message``;
- :class:`KeyedError`: the error of a TOML checker, naming the file and the key path;
- the YAML line map: :func:`yaml_line`, :class:`LineMap` (a key path to its line),
  :func:`yaml_key_lines`, :func:`yaml_duplicate_keys`, and :func:`yaml_construct` /
  :func:`yaml_kind` / :func:`yaml_problem`.

Standard library only at import time; PyYAML is imported when a YAML function runs.
"""

from __future__ import annotations

import difflib
import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Generic, Self, TypeVar

if TYPE_CHECKING:
    import yaml

__all__ = [
    "MAX_PROBLEMS",
    "KeyedError",
    "LineMap",
    "Problem",
    "ProblemText",
    "Problems",
    "describe",
    "did_you_mean",
    "first_unknown_key",
    "format_problem",
    "is_int",
    "is_number",
    "jsonable_problem",
    "message_text",
    "short_repr",
    "type_and_repr",
    "type_name",
    "unknown_key_message",
    "yaml_construct",
    "yaml_duplicate_keys",
    "yaml_key_lines",
    "yaml_kind",
    "yaml_line",
    "yaml_problem",
]

MAX_PROBLEMS: Final = 50
"""At most this many problems of one file are kept; the rest are only counted."""


# --------------------------------------------------------------------------------------------
# Describing values
# --------------------------------------------------------------------------------------------

_ARTICLE: Final = {
    "boolean": "a boolean",
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "list": "a list",
    "mapping": "a mapping",
    "object": "an object",
}


def type_name(value: object, *, article: bool = False, json: bool = False) -> str:
    """The kind of ``value`` as messages name it: ``integer``, ``string``, ``mapping``, ``null``.

    ``article`` adds ``a``/``an`` (``an integer``); ``json`` uses JSON's words (every number is
    a ``number``, a mapping an ``object``). Other types are named by their Python class.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        name = "boolean"
    elif isinstance(value, int):
        name = "number" if json else "integer"
    elif isinstance(value, float):
        name = "number"
    elif isinstance(value, str):
        name = "string"
    elif isinstance(value, list | tuple):
        name = "list"
    elif isinstance(value, Mapping):
        name = "object" if json else "mapping"
    else:
        return type(value).__name__
    return _ARTICLE[name] if article else name


def short_repr(value: object, limit: int = 40) -> str:
    """``repr(value)``, cut to ``limit`` characters with ``...``."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(value: object) -> str:
    """``string 'high'``, ``integer 3``, ``null``: how error messages show a value they got."""
    if value is None:
        return "null"
    if isinstance(value, list | tuple) and not value:
        return "an empty list"
    if isinstance(value, Mapping) and not value:
        return "an empty mapping"
    return f"{type_name(value)} {short_repr(value)}"


def type_and_repr(value: object) -> str:
    """``int 3``, ``str ''``: a value with its Python class, as the TOML checkers show it."""
    return f"{type(value).__name__} {value!r}"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'tags'?"`` when ``word`` is close to one of ``choices``, else ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown_key_message(
    what: str, key: object, allowed: Sequence[str], *, one_of: bool = True
) -> Callable[[], str]:
    """``unknown <what> 'key' (expected one of: ...); did you mean ...?``, written when called
    (a hostile line can hold millions of unknown keys, and only :data:`MAX_PROBLEMS` are shown).
    """

    def message() -> str:
        hint = did_you_mean(key, allowed) if isinstance(key, str) else ""
        expected = "expected one of: " if one_of else "expected: "
        return f"unknown {what} {short_repr(key)} ({expected}{', '.join(allowed)}){hint}"

    return message


def first_unknown_key(mapping: Iterable[Any], allowed: Iterable[str]) -> str | None:
    """The first (sorted) key of ``mapping`` that is not ``allowed``, or None."""
    unknown = sorted(set(mapping) - set(allowed), key=str)
    return str(unknown[0]) if unknown else None


def is_number(value: object) -> bool:
    """An int or float, not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_int(value: object) -> bool:
    """An int, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def plain(value: Any) -> Any:
    """A deep copy of ``value`` made of plain dicts and lists (JSON-able if its leaves are)."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def jsonable_problem(value: object, where: str) -> tuple[str, str] | None:
    """``(path, why)`` if ``value`` cannot be written as JSON (``where`` is its path), else None."""
    if value is None or isinstance(value, bool | int | str):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else (where, f"{value!r} is not a finite number")
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            problem = jsonable_problem(item, f"{where}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return where, f"expected string keys, got key {describe(key)}"
            problem = jsonable_problem(item, f"{where}.{key}")
            if problem:
                return problem
        return None
    return where, f"expected a JSON value, got {describe(value)}"


# --------------------------------------------------------------------------------------------
# Problems
# --------------------------------------------------------------------------------------------


def format_problem(
    path: str, line: int | None, labels: Iterable[tuple[str, str | None]], message: str
) -> str:
    """``path:line: case 'id': field 'name': message``, leaving out the parts not known.

    ``labels`` are ``(word, value)`` pairs written ``word 'value'`` when the value is known.
    """
    parts = [f"{path}:{line}" if line is not None else path]
    parts += [f"{word} {value!r}" for word, value in labels if value is not None]
    parts.append(message)
    return ": ".join(parts)


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a file; ``line`` is 1-based, ``field`` a path like ``tags[2]``,
    ``subject`` what the problem belongs to (a case id, a task name) when known."""

    line: int | None
    field: str | None
    message: str
    subject: str | None = None

    def format(self, path: str, *, subject: str = "case", field: str = "field") -> str:
        """``path:line: <subject> 'id': <field> 'name': message``, leaving out unknown parts."""
        return format_problem(
            path, self.line, ((subject, self.subject), (field, self.field)), self.message
        )


ProblemText = str | Callable[[], str]
"""A problem's message, or a function that writes it (when writing it is costly: a line of a
hostile file can hold millions of unknown keys, and only :data:`MAX_PROBLEMS` are shown)."""

P = TypeVar("P")


class Problems(Generic[P]):
    """Collects problems, keeping the first ``limit`` (:data:`MAX_PROBLEMS`) and counting the
    rest. ``P`` is the problem type of the checker (:class:`Problem` or one of its own)."""

    def __init__(self, limit: int = MAX_PROBLEMS) -> None:
        self.limit = limit
        self.items: list[P] = []
        self.omitted = 0

    def add(self, make: Callable[[], P]) -> None:
        """Keep the problem ``make()`` builds, called only when there is room for it."""
        if len(self.items) < self.limit:
            self.items.append(make())
        else:
            self.omitted += 1

    def __len__(self) -> int:
        """How many problems were added, kept or not."""
        return len(self.items) + self.omitted

    def sorted(self, key: Callable[[P], Any]) -> list[P]:
        """The kept problems in ``key`` order (stable: equal keys keep the order they came)."""
        return sorted(self.items, key=key)


def message_text(message: ProblemText) -> str:
    """The text of a :data:`ProblemText`."""
    return message if isinstance(message, str) else message()


class KeyedError(ValueError):
    """An invalid value of a config file, naming the file (``path``) and the key path (``key``).

    The message reads ``path: key: problem`` (the parts not known left out) unless the checker
    words it itself.
    """

    def __init__(self, message: str, *, path: Path | None = None, key: str | None = None):
        super().__init__(message)
        self.path = path
        self.key = key

    @classmethod
    def at(cls, problem: str, *, path: Path | None = None, key: str | None = None) -> Self:
        """The error ``path: key: problem`` (an empty key or a None path left out)."""
        where = [str(part) for part in (path, key) if part]
        return cls(": ".join([*where, problem]), path=path, key=key)


# --------------------------------------------------------------------------------------------
# YAML: the line map
# --------------------------------------------------------------------------------------------

_MERGE_TAG: Final = "tag:yaml.org,2002:merge"

PathPart = str | int
"""One step of a key path: a mapping key or a list index."""


def yaml_line(node: yaml.Node) -> int:
    """The 1-based line where ``node`` starts."""
    return int(node.start_mark.line) + 1


def yaml_key_lines(node: yaml.MappingNode) -> dict[str, int]:
    """The line of each string key of a mapping node (the last one of a key written twice)."""
    lines: dict[str, int] = {}
    for key_node, _ in node.value:
        if isinstance(key_node.value, str):
            lines[key_node.value] = yaml_line(key_node)
    return lines


class LineMap:
    """Where the values of a YAML node are written: a key path to its line.

    ``LineMap(node).line(("cases", 0, "messages", 1, "role"))`` is the line of that value's
    key (of the item, for a list index). A path is followed as far as the document has it: the
    line of the deepest part found is the answer, or ``default`` (the node's own line) when not
    even the first part is there. ``depth`` cuts the path first: checkers that name a problem by
    the line of its top-level key pass ``depth=1``. Aliases are the node they name (its line);
    keys brought in by a merge key (``<<``) are found in the merged mapping.
    """

    def __init__(self, node: yaml.Node) -> None:
        self.node = node
        self._keys: dict[int, dict[str, tuple[yaml.Node, yaml.Node]]] = {}

    def _children(self, node: yaml.MappingNode) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        found = self._keys.get(id(node))
        if found is None:
            import yaml

            found = {}
            merged: list[yaml.Node] = []
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    merged.append(value_node)
                elif isinstance(key_node.value, str):
                    found[key_node.value] = (key_node, value_node)
            # Keys of the mapping itself win over merged ones; earlier merges over later ones.
            for source in merged:
                sources = source.value if isinstance(source, yaml.SequenceNode) else [source]
                for item in sources:
                    if isinstance(item, yaml.MappingNode):
                        for key, pair in self._children(item).items():
                            found.setdefault(key, pair)
            self._keys[id(node)] = found
        return found

    def line(
        self,
        path: Sequence[PathPart] | None,
        default: int | None = None,
        *,
        depth: int | None = None,
    ) -> int:
        """The line of ``path`` (see the class); ``default`` defaults to the node's line."""
        import yaml

        fallback = yaml_line(self.node) if default is None else default
        parts = list(path or ())[:depth]
        node: yaml.Node = self.node
        line = fallback
        for part in parts:
            if isinstance(node, yaml.MappingNode) and isinstance(part, str):
                pair = self._children(node).get(part)
                if pair is None:
                    break
                line, node = yaml_line(pair[0]), pair[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if not 0 <= part < len(node.value):
                    break
                node = node.value[part]
                line = yaml_line(node)
            else:
                break
        return line

    def key_line(self, key: str | None, default: int | None = None) -> int:
        """The line of the top-level ``key`` (``default`` when None or not there)."""
        return self.line((key,) if key is not None else (), default, depth=1)


def yaml_duplicate_keys(node: yaml.MappingNode, where: str) -> list[tuple[int, str]]:
    """``(line, message)`` for each key written twice in ``node`` (call before constructing it:
    construction flattens merge keys into ``node.value``)."""
    found: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    for key_node, _ in node.value:
        key = key_node.value
        if not isinstance(key, str) or key == "<<":
            continue
        if key in seen:
            found.append(
                (
                    yaml_line(key_node),
                    f"duplicate key {key!r} in {where} (first at line {seen[key]})",
                )
            )
        else:
            seen[key] = yaml_line(key_node)
    return found


def yaml_construct(node: yaml.Node) -> Any:
    """Construct plain Python data from ``node`` like ``yaml.safe_load`` would.

    Timestamps stay strings (``2024-05-01``), so everything loaded is JSON-able.
    """
    return _yaml_constructor_class()().construct_document(node)


@functools.cache
def _yaml_constructor_class() -> type[yaml.constructor.SafeConstructor]:
    from yaml.constructor import SafeConstructor

    class Constructor(SafeConstructor):
        """``SafeConstructor`` that keeps timestamps as strings."""

        yaml_constructors = {  # noqa: RUF012 - PyYAML's own registry layout
            **SafeConstructor.yaml_constructors,
            "tag:yaml.org,2002:timestamp": SafeConstructor.construct_yaml_str,
        }

    return Constructor


def yaml_kind(node: yaml.Node) -> str:
    """``a mapping``, ``a list``, or a scalar :func:`describe`\\ d (``integer 3``)."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    try:
        return describe(yaml_construct(node))
    except Exception:  # a value that does not fit its tag (reported where it is read)
        return f"scalar {short_repr(node.value)}"


def yaml_problem(exc: yaml.YAMLError) -> str:
    """The message of a YAML error without PyYAML's multi-line mark dump."""
    problem = getattr(exc, "problem", None)
    if not problem:
        return str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    # "while parsing ..." contexts only repeat the mark; others ("expected a single document
    # in the stream") carry half of the message.
    if context and not context.startswith("while"):
        return f"{context}, {problem}"
    return str(problem)
