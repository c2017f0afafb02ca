"""gitignore-style path matching for ``llmregress models lint`` (standard library only).

The subset of gitignore(5) that project ``.gitignore`` files use:

* blank lines and ``#`` comments; ``\\#`` and ``\\!`` for a leading ``#`` or ``!``; trailing
  spaces are dropped unless escaped with a backslash;
* ``!pattern`` re-includes what an earlier pattern excluded (the last matching pattern
  wins), except below an excluded directory, which is never entered;
* ``pattern/`` matches directories only;
* a pattern with a ``/`` at its start or in its middle is relative to the directory of its
  ``.gitignore``; without one it matches a name at any depth below it;
* ``*``, ``?``, ``[a-z]`` / ``[!a-z]`` never match ``/``; ``**/`` at the start, ``/**`` at
  the end and ``/**/`` in the middle match across directories.

Not read: the user's global excludes file (``core.excludesFile``). ``.git/info/exclude`` is
read by :func:`ancestor_rules`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

GITIGNORE = ".gitignore"


@dataclass(frozen=True)
class IgnoreRule:
    """One pattern of an ignore file, relative to ``base`` (an absolute directory)."""

    pattern: str
    base: Path
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool


def _char_class(pattern: str, start: int) -> tuple[str, int] | None:
    """``[...]`` at ``start`` as a regex class and the index after it; None if unclosed."""
    i = start + 1
    if i < len(pattern) and pattern[i] in "!^":
        i += 1
    if i < len(pattern) and pattern[i] == "]":
        i += 1
    end = pattern.find("]", i)
    if end < 0:
        return None
    body = pattern[start + 1 : end]
    negate = body[:1] in ("!", "^")
    if negate:
        body = body[1:]
    body = body.replace("\\", "\\\\").replace("[", "\\[")
    return f"(?!/)[{'^' if negate else ''}{body}]", end + 1


def translate(pattern: str) -> str:
    """The regex body for one glob (no leading ``!``, no trailing ``/``)."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if pattern.startswith("**", i):
            at_segment_start = i == 0 or pattern[i - 1] == "/"
            end = i + 2
            while end < n and pattern[end] == "*":
                end += 1
            if at_segment_start and pattern[end : end + 1] == "/":
                out.append("(?:.*/)?")
                i = end + 1
                continue
            if at_segment_start and end == n and i > 0:
                out.append(".*")
                i = end
                continue
            out.append("[^/]*")  # other consecutive asterisks are regular asterisks
            i = end
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            found = _char_class(pattern, i)
            if found is not None:
                out.append(found[0])
                i = found[1]
                continue
            out.append(re.escape(char))
        elif char == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def compile_rule(line: str, base: Path) -> IgnoreRule | None:
    """One line of an ignore file as a rule; None for blank lines and comments."""
    text = line.rstrip("\n\r")
    while text.endswith(" ") and not text.endswith("\\ "):
        text = text[:-1]
    if not text or text.startswith("#"):
        return None
    negate = text.startswith("!")
    if negate:
        text = text[1:]
    dir_only = text.endswith("/")
    text = text.rstrip("/")
    if not text:
        return None
    anchored = "/" in text
    text = text.removeprefix("/")
    if text == "**":
        body = ".*"
    else:
        body = translate(text)
        if not anchored:
            body = "(?:.*/)?" + body
    return IgnoreRule(line.strip(), base, re.compile(body, re.DOTALL), negate, dir_only)


def parse_rules(text: str, base: Path) -> list[IgnoreRule]:
    """The rules of an ignore file whose patterns are relative to ``base``."""
    found = (compile_rule(line, base) for line in text.splitlines())
    return [rule for rule in found if rule is not None]


def read_rules(path: Path) -> list[IgnoreRule]:
    """The rules of the ignore file ``path`` (none if it cannot be read)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return parse_rules(text, path.parent.resolve())


@dataclass(frozen=True)
class IgnoreRules:
    """Rules in the order git applies them: outer files first, the last match wins."""

    rules: tuple[IgnoreRule, ...] = ()

    def __add__(self, more: Iterable[IgnoreRule]) -> IgnoreRules:
        return IgnoreRules((*self.rules, *more))

    def __bool__(self) -> bool:
        return bool(self.rules)

    def ignored(self, path: Path, *, is_dir: bool) -> bool:
        """Whether ``path`` (absolute) is ignored by these rules itself.

        Directories above ``path`` are not tested: a walk does not enter ignored ones.
        """
        ignored = False
        for rule in self.rules:
            if rule.dir_only and not is_dir:
                continue
            try:
                relative = path.relative_to(rule.base)
            except ValueError:
                continue
            if relative.parts and rule.regex.fullmatch(relative.as_posix()):
                ignored = not rule.negate
        return ignored

    def ignored_here_or_above(self, path: Path, *, is_dir: bool) -> bool:
        """Whether ``path`` or a folder above it is ignored (for a path not reached by a
        walk, such as one named on the command line)."""
        if any(self.ignored(parent, is_dir=True) for parent in reversed(path.parents)):
            return True
        return self.ignored(path, is_dir=is_dir)


def find_repository_top(start: Path) -> Path | None:
    """The nearest directory at or above ``start`` that holds a ``.git`` entry."""
    for directory in (start, *start.parents):
        if os.path.lexists(directory / ".git"):
            return directory
    return None


def ancestor_rules(directory: Path) -> IgnoreRules:
    """Rules that apply inside ``directory`` (absolute) from above it: in a git repository,
    ``.git/info/exclude`` and every ``.gitignore`` from the top down to ``directory``'s
    parent. ``directory``'s own ``.gitignore`` is left to the walk."""
    top = find_repository_top(directory)
    if top is None:
        return IgnoreRules()
    rules: list[IgnoreRule] = []
    exclude = top / ".git" / "info" / "exclude"
    if exclude.is_file():
        rules += parse_rules(exclude.read_text(encoding="utf-8", errors="replace"), top)
    chain: Sequence[Path] = [top, *reversed(directory.relative_to(top).parents)]
    for folder in dict.fromkeys(top / part for part in chain):
        if folder != directory:
            rules += read_rules(folder / GITIGNORE)
    return IgnoreRules(tuple(rules))
