"""Prompts per model: a library of versioned system prompts kept in the repository.

A prompt file (``prompts/*.yaml``) holds one *task* (or a list of tasks): the prompt text,
written once per model that needs its own wording, plus an explicit ``default``::

    task: support-answer
    variables: [policy]
    versions:
      default: |-
        Answer using only this policy: {policy}
      claude-sonnet-4-6: |-
        ...

A golden case names a task and its variables (``prompt: {task: ..., vars: {...}}``, see
:class:`pytest_llmregress.cases.golden.PromptRef`) instead of a literal ``system`` prompt.
:func:`resolve_system` picks the version for a model and renders it.

:meth:`PromptLibrary.load` validates every file up front and reports *all* problems at once
(:class:`PromptFileError`), each naming the file, line and key. Errors while resolving or
rendering for one case are :class:`PromptError`.

The format is documented for users in ``docs/prompts.md``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Formatter
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from pytest_llmregress.cases.golden import (
    _TASK_RE,
    _VAR_RE,
    MAX_ID_LENGTH,
    GoldenCase,
    PromptRef,
    PromptValue,
    compose_yaml,
)
from pytest_llmregress.core.validation import (
    MAX_PROBLEMS,
    LineMap,
    Problems,
    describe,
    did_you_mean,
    format_problem,
    short_repr,
    unknown_key_message,
    yaml_construct,
    yaml_duplicate_keys,
    yaml_kind,
    yaml_line,
    yaml_problem,
)
from pytest_llmregress.models.ids import classify, is_model_id, looks_like_id, parse_model_id

if TYPE_CHECKING:
    import yaml

    from pytest_llmregress.models.lifecycle import LifecycleData

__all__ = [
    "DEFAULT_VERSION",
    "PROMPT_SUFFIXES",
    "TASK_KEYS",
    "PromptError",
    "PromptFileError",
    "PromptLibrary",
    "PromptProblem",
    "PromptRef",
    "PromptTask",
    "PromptVersion",
    "ResolvedPrompt",
    "check_cases",
    "check_prompt_model",
    "parse_prompt_yaml",
    "placeholders",
    "prompts_digest",
    "prompts_metadata",
    "render",
    "resolve_system",
]

DEFAULT_VERSION: Final = "default"
"""The version key used when no model-specific version matches."""

PROMPT_SUFFIXES: Final = (".yaml", ".yml")
"""File suffixes that :meth:`PromptLibrary.load` reads."""

TASK_KEYS: Final = ("task", "description", "variables", "versions")
"""Every key a task mapping may have, in documentation order."""

Match = Literal["exact", "same id", "same model", "default"]
"""How a version was chosen for a model id (see :meth:`PromptLibrary.resolve`)."""

_MERGE_TAG: Final = "tag:yaml.org,2002:merge"

# Splits templates as str.format does: literal text, escaped braces, replacement fields.
_FORMATTER: Final = Formatter()


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class PromptError(Exception):
    """A prompt cannot be resolved or rendered (unknown task, no version, bad variables)."""


@dataclass(frozen=True)
class PromptProblem:
    """One thing wrong in a prompt file; ``line`` is 1-based, ``key`` a path like
    ``versions.default``."""

    path: str
    line: int | None
    key: str | None
    message: str
    task: str | None = None

    def format(self) -> str:
        """``path:line: task 'name': key 'versions.x': message``, leaving out unknown parts."""
        return format_problem(
            self.path, self.line, (("task", self.task), ("key", self.key)), self.message
        )


class PromptFileError(PromptError):
    """All problems found while loading prompt files (reported once, before any case runs)."""

    def __init__(self, problems: list[PromptProblem], omitted: int = 0) -> None:
        self.problems = problems
        self.omitted = omitted
        super().__init__(problems)

    def __str__(self) -> str:
        lines = [problem.format() for problem in self.problems]
        if self.omitted:
            lines.append(f"{self.omitted} more prompt file problem(s) not shown")
        return "\n".join(lines)


class _Problems(Problems[PromptProblem]):
    """Collects problems across prompt files, keeping the first :data:`MAX_PROBLEMS`."""

    def add_at(
        self,
        path: str,
        line: int | None,
        key: str | None,
        message: str,
        task: str | None = None,
    ) -> None:
        self.add(lambda: PromptProblem(path, line, key, message, task))

    def raise_if_any(self) -> None:
        if len(self):
            raise PromptFileError(self.sorted(lambda p: (p.path, p.line or 0)), self.omitted)


# --------------------------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TemplateIssue:
    offset: int
    message: str


def _scan(text: str) -> tuple[list[tuple[str, int]], list[_TemplateIssue]]:
    """Placeholders ``(name, offset)`` of ``text`` and what is malformed in it.

    ``string.Formatter().parse`` splits the text; a placeholder is a bare ``{name}`` (no
    conversion, format spec, index or attribute). After a malformed brace the split resumes
    right behind it, so every problem of the text is reported, up to :data:`MAX_PROBLEMS`:
    each resumption parses the rest of the text again, so a text of stray braces would take
    time quadratic in its length; after that many problems the scan stops and says so.
    """
    names: list[tuple[str, int]] = []
    issues: list[_TemplateIssue] = []
    pos = 0
    while pos < len(text):
        if len(issues) >= MAX_PROBLEMS:
            message = f"the scan stopped after {MAX_PROBLEMS} problems: more may follow"
            issues.append(_TemplateIssue(pos, message))
            break
        try:
            for literal, field, _, _ in _FORMATTER.parse(text[pos:]):
                brace = pos + len(literal)
                if field is None:  # literal text, ending in a brace if it was escaped
                    pos = brace + int(literal.endswith(("{", "}")))
                    continue
                end = brace + 1 + len(field)
                if not (_VAR_RE.fullmatch(field) and text.startswith("}", end)):
                    pos = _malformed(text, brace, issues)
                    break
                names.append((field, brace))
                pos = end + 1
        except ValueError:  # at the first brace of the rest: the literal before it is plain
            braces = [i for i in (text.find("{", pos), text.find("}", pos)) if i >= 0]
            pos = _malformed(text, min(braces), issues)
    return names, issues


def _malformed(text: str, brace: int, issues: list[_TemplateIssue]) -> int:
    """Record the malformed token at ``text[brace]``; where scanning resumes.

    A ``{`` whose next brace is a ``}`` opens an invalid placeholder that ends there; any other
    brace is unmatched.
    """
    if text[brace] == "{":
        close = text.find("}", brace + 1)
        if close >= 0 and text.find("{", brace + 1, close) < 0:
            raw = text[brace : close + 1]
            issues.append(
                _TemplateIssue(
                    brace,
                    f"invalid placeholder {short_repr(raw)}: a placeholder is a variable name "
                    "in braces, like {policy}; write '{{' and '}}' for literal braces",
                )
            )
            return close + 1
    raw = text[brace]
    issues.append(
        _TemplateIssue(brace, f"unmatched {raw!r}; write {raw * 2!r} for a literal brace")
    )
    return brace + 1


def placeholders(text: str) -> tuple[str, ...]:
    """The variable names used in ``text``, in order of first use.

    Raises :class:`PromptError` if ``text`` is not a valid template.
    """
    names, issues = _scan(text)
    if issues:
        raise PromptError(issues[0].message)
    return tuple(dict.fromkeys(name for name, _ in names))


def render(
    text: str, variables: Mapping[str, PromptValue], *, allowed: Iterable[str] | None = None
) -> str:
    """Fill the ``{name}`` placeholders of ``text`` (``{{``/``}}`` are literal braces).

    The result equals ``text.format_map(variables)`` for a valid template; numbers are written
    with ``str()``. Raises :class:`PromptError` when ``text`` is malformed, a placeholder has no
    value, or ``variables`` holds a name that is neither a placeholder nor in ``allowed`` (the
    task's declared variables: a version may leave some of them out).
    """
    used = placeholders(text)
    missing = [name for name in used if name not in variables]
    if missing:
        given = ", ".join(sorted(variables)) or "none"
        raise PromptError(f"missing variable(s) {_names(missing)} (given: {given})")
    known = set(used) if allowed is None else set(used) | set(allowed)
    unknown = sorted(name for name in variables if name not in known)
    if unknown:
        expected = ", ".join(sorted(known)) or "none"
        raise PromptError(f"unknown variable(s) {_names(unknown)} (expected: {expected})")

    return text.format_map({name: str(variables[name]) for name in used})


def _names(names: Iterable[str]) -> str:
    return ", ".join(repr(name) for name in names)


# --------------------------------------------------------------------------------------------
# The library
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptVersion:
    """One model's wording of a task's prompt (or the ``default``)."""

    key: str
    """The version key as written: a model id, or ``default``."""
    text: str
    """The template, with ``{name}`` placeholders."""
    placeholders: tuple[str, ...] = ()
    line: int = 0


@dataclass(frozen=True)
class PromptTask:
    """A validated prompt task: its versions, in file order, and its variables."""

    name: str
    versions: Mapping[str, PromptVersion]
    variables: tuple[str, ...] = ()
    """The declared variables, or (when none are declared) those any version uses."""
    declared: bool = False
    """Whether the file declares ``variables``."""
    description: str | None = None
    path: str = ""
    line: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.versions, MappingProxyType):
            object.__setattr__(self, "versions", MappingProxyType(dict(self.versions)))

    def __hash__(self) -> int:
        return hash((self.path, self.name))

    @property
    def default(self) -> PromptVersion | None:
        return self.versions.get(DEFAULT_VERSION)

    @property
    def model_keys(self) -> tuple[str, ...]:
        """The version keys that name a model (everything but ``default``)."""
        return tuple(key for key in self.versions if key != DEFAULT_VERSION)


@dataclass(frozen=True)
class ResolvedPrompt:
    """The version of a task's prompt chosen for a model."""

    task: str
    version_key: str
    """The key of the chosen version: a model id as written in the file, or ``default``."""
    text: str
    """The template (not rendered; :func:`resolve_system` returns the rendered text)."""
    match: Match = "exact"
    """``exact`` (the key is the model id), ``same id`` (the same id with another provider
    prefix or surface decoration), ``same model`` (alias and snapshot, or a Bedrock/Vertex id
    and its first-party id), or ``default``."""
    path: str = ""
    line: int = 0

    @property
    def digest(self) -> str:
        """First 12 hex digits of the SHA-256 of :attr:`text`: tells prompt revisions apart."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary for results files (without the text)."""
        return {
            "task": self.task,
            "version": self.version_key,
            "match": self.match,
            "digest": self.digest,
            "path": self.path,
            "line": self.line,
        }


class PromptLibrary:
    """All prompt tasks of a project, by name. Build it with :meth:`load`."""

    def __init__(
        self,
        tasks: Iterable[PromptTask] = (),
        *,
        source: str = "",
        lifecycle: LifecycleData | None = None,
    ) -> None:
        """Index ``tasks``; raises :class:`PromptFileError` if two have the same name.

        ``source`` names where the tasks come from in messages (the prompt directory).
        ``lifecycle`` is the model data used to tell aliases and snapshots apart (by default
        the bundled data).
        """
        self.source = source
        self._lifecycle = lifecycle
        self._cache: dict[tuple[str, str], ResolvedPrompt] = {}
        problems = _Problems()
        self._tasks = _index(tasks, problems)
        problems.raise_if_any()

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str],
        *,
        display_dir: str | None = None,
        lifecycle: LifecycleData | None = None,
    ) -> PromptLibrary:
        """Read and validate every ``*.yaml``/``*.yml`` file under ``directory`` (recursively,
        skipping hidden files and folders, in path order).

        ``display_dir`` is how messages name the directory (the plugin passes the path relative
        to the rootdir); by default ``directory`` as given. Raises :class:`PromptFileError`
        listing every problem of every file, including a missing directory and duplicate task
        names across files.
        """
        root = Path(directory)
        shown = display_dir if display_dir is not None else os.fspath(directory)
        problems = _Problems()
        if not root.is_dir():
            what = "is not a directory" if root.exists() else "does not exist"
            problems.add_at(shown, None, None, f"prompt directory {what}")
            problems.raise_if_any()
        tasks: list[PromptTask] = []
        for path in _prompt_files(root):
            name = os.path.join(shown, path.relative_to(root).as_posix())
            try:
                text = path.read_text(encoding="utf-8-sig")
            except UnicodeDecodeError as exc:
                problems.add_at(
                    name, None, None, f"file is not valid UTF-8: {exc.reason} at byte {exc.start}"
                )
                continue
            except OSError as exc:
                problems.add_at(name, None, None, f"cannot read file: {exc.strerror or exc}")
                continue
            tasks.extend(_parse(text, name, problems))
        _index(tasks, problems)
        problems.raise_if_any()
        return cls(tasks, source=shown, lifecycle=lifecycle)

    def __contains__(self, task: object) -> bool:
        return task in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def tasks(self) -> Mapping[str, PromptTask]:
        """Every task by name, in load order."""
        return MappingProxyType(self._tasks)

    def task(self, name: str) -> PromptTask:
        """The task ``name``; raises :class:`PromptError` naming the tasks that exist."""
        found = self._tasks.get(name)
        if found is not None:
            return found
        where = f" in {self.source}" if self.source else ""
        if not self._tasks:
            raise PromptError(f"unknown prompt task {name!r}: no prompt files{where}")
        raise PromptError(
            f"unknown prompt task {name!r}{where} (tasks: {', '.join(sorted(self._tasks))})"
            + did_you_mean(name, self._tasks)
        )

    def resolve(self, task: str, model_id: str) -> ResolvedPrompt:
        """The version of ``task`` written for ``model_id``.

        In order: the version whose key is ``model_id`` as given; the same id with another
        provider prefix or surface decoration (``anthropic:claude-sonnet-4-6``,
        ``us.anthropic.claude-sonnet-4-6-v1:0``); the same model under another id (an alias
        and the snapshot it resolves to, per the lifecycle data); else ``default``. Raises
        :class:`PromptError` naming the task, the model and the versions that exist when none
        applies, or when two versions match equally well.
        """
        key = (task, model_id)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = self._resolve(self.task(task), model_id)
        return cached

    def _resolve(self, task: PromptTask, model_id: str) -> ResolvedPrompt:
        raw = model_id.strip()

        def resolved(version: PromptVersion, match: Match) -> ResolvedPrompt:
            return ResolvedPrompt(
                task.name, version.key, version.text, match, task.path, version.line
            )

        exact = task.versions.get(raw)
        if exact is not None and raw != DEFAULT_VERSION:
            return resolved(exact, "exact")
        if raw and task.model_keys:
            wanted = self._identities(raw)
            ranked: list[tuple[tuple[int, int], str]] = []
            for key in task.model_keys:
                rank = _rank(wanted, self._identities(key))
                if rank is not None:
                    ranked.append((rank, key))
            if ranked:
                ranked.sort()
                best = ranked[0][0]
                tied = [key for rank, key in ranked if rank == best]
                if len(tied) > 1:
                    raise PromptError(
                        f"prompt task {task.name!r}: versions {_names(tied)} all match model "
                        f"{raw!r} ({task.path}:{task.line}); add a version for {raw!r} itself"
                    )
                return resolved(
                    task.versions[tied[0]], "same id" if best == (0, 0) else "same model"
                )
        default = task.default
        if default is not None:
            return resolved(default, "default")
        raise PromptError(
            f"prompt task {task.name!r} has no version for model {raw!r} and no 'default' "
            f"(versions: {', '.join(task.versions)}; {task.path}:{task.line})"
        )

    def _identities(self, model_id: str) -> tuple[str, ...]:
        """Names under which ``model_id`` may appear as a version key, most specific first:
        the id without prefixes, its first-party id, and the snapshot an alias points to."""
        name = parse_model_id(model_id).name
        info = classify(model_id, data=self._lifecycle)
        if info.kind == "fine-tune":
            # A fine-tune is not its base model; it only matches its own id.
            return (name,)
        found = [name, info.base_id]
        if info.resolves_to:
            found.append(info.resolves_to)
        return tuple(dict.fromkeys(found))

    def written_for(self, model_id: str) -> list[str]:
        """The tasks that have a version written for ``model_id`` (rules 1 to 3 of
        :meth:`resolve`, not ``default``), in load order."""
        raw = model_id.strip()
        if not raw or raw == DEFAULT_VERSION:
            return []
        wanted = self._identities(raw)
        return [
            task.name
            for task in self._tasks.values()
            if raw in task.versions
            or any(_rank(wanted, self._identities(key)) is not None for key in task.model_keys)
        ]

    def render(self, ref: PromptRef, model_id: str) -> tuple[str, ResolvedPrompt]:
        """The system prompt ``ref`` stands for when sent to ``model_id``, and its version.

        Raises :class:`PromptError` (naming the task, version and file) for an unknown task, no
        matching version, or variables missing from or unknown to the task.
        """
        resolved = self.resolve(ref.task, model_id)
        task = self._tasks[ref.task]
        try:
            text = render(resolved.text, ref.vars, allowed=task.variables)
        except PromptError as error:
            raise PromptError(
                f"prompt task {ref.task!r}, version {resolved.version_key!r} "
                f"({resolved.path}:{resolved.line}): {error}"
            ) from None
        return text, resolved

    def unknown_model_keys(self) -> list[PromptProblem]:
        """Version keys that are not model ids the lifecycle data or the provider patterns
        recognize: likely typos, which would never match and leave the model on ``default``.
        For warnings; a key for a new or private model is legitimate."""
        found: list[PromptProblem] = []
        for task in self._tasks.values():
            for key in task.model_keys:
                if not is_model_id(key, data=self._lifecycle):
                    found.append(
                        PromptProblem(
                            task.path,
                            task.versions[key].line,
                            f"versions.{key}",
                            f"{key!r} is not a known model id; if it is misspelled, no model "
                            "matches it",
                            task.name,
                        )
                    )
        return found

    def check(self, ref: PromptRef) -> list[str]:
        """What is wrong with ``ref`` whatever the model: an unknown task, variables the task
        does not know, or variables some version needs but ``ref`` does not give."""
        try:
            task = self.task(ref.task)
        except PromptError as error:
            return [str(error)]
        problems: list[str] = []
        unknown = sorted(name for name in ref.vars if name not in task.variables)
        if unknown:
            expected = ", ".join(task.variables) or "none"
            problems.append(
                f"unknown variable(s) {_names(unknown)} for prompt task {task.name!r} "
                f"(expected: {expected})"
            )
        needed: dict[str, list[str]] = {}
        for version in task.versions.values():
            for name in version.placeholders:
                if name not in ref.vars:
                    needed.setdefault(name, []).append(version.key)
        for name, keys in needed.items():
            problems.append(
                f"missing variable {name!r}: prompt task {task.name!r} uses it in version(s) "
                + ", ".join(keys)
            )
        return problems


def _index(tasks: Iterable[PromptTask], problems: _Problems) -> dict[str, PromptTask]:
    """Tasks by name; a second task of the same name is a problem."""
    index: dict[str, PromptTask] = {}
    for task in tasks:
        first = index.get(task.name)
        if first is not None:
            problems.add_at(
                task.path,
                task.line,
                "task",
                f"duplicate task {task.name!r} (first in {first.path}:{first.line})",
            )
        else:
            index[task.name] = task
    return index


def _rank(wanted: Sequence[str], offered: Sequence[str]) -> tuple[int, int] | None:
    """How closely two identity lists match: the smallest (i, j) with wanted[i] == offered[j]."""
    best: tuple[int, int] | None = None
    for i, name in enumerate(wanted):
        for j, other in enumerate(offered):
            if name == other and (best is None or (i, j) < best):
                best = (i, j)
    return best


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------


def resolve_system(
    case: GoldenCase, library: PromptLibrary | None, model_id: str
) -> tuple[str | None, ResolvedPrompt | None]:
    """The system prompt to send for ``case`` and, for a case with ``prompt``, its version.

    A case with a ``prompt`` gets the version of its task written for ``model_id`` (the
    candidate, or the ``--llm-prompt-model`` id), rendered with its variables; any other case
    gets its literal ``system`` (possibly None) and no version. Raises :class:`PromptError` when
    the prompt cannot be resolved or rendered, or when the case has a prompt but there is no
    library.
    """
    if case.prompt is None:
        return case.system, None
    if library is None:
        raise PromptError(
            f"case {case.id!r} uses prompt task {case.prompt.task!r} but no prompt library "
            "is loaded"
        )
    text, resolved = library.render(case.prompt, model_id)
    return text, resolved


def check_cases(cases: Iterable[GoldenCase], library: PromptLibrary | None) -> list[str]:
    """``path:line: case 'id': field 'prompt': problem`` for every case whose prompt is wrong
    for any model (see :meth:`PromptLibrary.check`), for reporting at collection time."""
    found: list[str] = []
    for case in cases:
        if case.prompt is None:
            continue
        if library is None:
            problems = [f"uses prompt task {case.prompt.task!r} but no prompt library is loaded"]
        else:
            problems = library.check(case.prompt)
        for problem in problems:
            found.append(f"{case.path}:{case.line}: case {case.id!r}: field 'prompt': {problem}")
    return found


# --------------------------------------------------------------------------------------------
# A run's prompts
# --------------------------------------------------------------------------------------------


def check_prompt_model(library: PromptLibrary | None, model_id: str, *, source: str = "") -> None:
    """Raise :class:`PromptError` unless some task has a version written for ``model_id``.

    ``model_id`` is the model whose prompts a run borrows (``--llm-prompt-model``). When no
    version matches it, every task would get its ``default`` while the run claims another
    model's prompts: almost always a typo, so it is an error that suggests the closest version
    key. ``source`` names the prompt directory in the message.
    """
    where = f" in {source}" if source else ""
    if library is None or not library.tasks:
        raise PromptError(f"{model_id!r} matches no prompt version: no prompt files{where}")
    if library.written_for(model_id):
        return
    keys = list(dict.fromkeys(key for task in library.tasks.values() for key in task.model_keys))
    if not keys:
        raise PromptError(
            f"{model_id!r} matches no prompt version: the prompt files{where} have only "
            "'default' versions"
        )
    by_name = {parse_model_id(key).name: key for key in keys}
    close = difflib.get_close_matches(parse_model_id(model_id).name, list(by_name), n=1)
    hint = f"; did you mean {by_name[close[0]]!r}?" if close else ""
    raise PromptError(
        f"{model_id!r} matches no prompt version{where}, so every task would get its 'default' "
        f"(versions written for a model: {', '.join(keys)}){hint}"
    )


def prompts_digest(texts: Mapping[str, str | None]) -> str:
    """SHA-256 (hex) of the prompt texts a run used, by task; None for a task with no version
    for the run's model. Independent of file names, lines, version keys and task order."""
    canonical = json.dumps(sorted(texts.items()), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def prompts_metadata(
    library: PromptLibrary | None, model_id: str | None, *, prompt_model: str | None
) -> dict[str, Any]:
    """What a results file records about a run's prompts, for checking a 2x2 attribution.

    ``model_id`` is the model the versions are chosen for (``prompt_model`` when given, else
    the candidate's id) and ``prompt_model`` the ``--llm-prompt-model`` value (None: each
    case's own model). ``prompts.digest`` (:func:`prompts_digest`) covers every task of the
    library as resolved for ``model_id``: two runs with the same digest sent the same system
    prompts, whatever the version keys are called.
    """
    tasks: dict[str, dict[str, Any]] = {}
    texts: dict[str, str | None] = {}
    if library is not None and model_id:
        for name in sorted(library.tasks):
            try:
                resolved = library.resolve(name, model_id)
            except PromptError as error:  # the cases of this task are errors in the run
                tasks[name] = {"error": str(error)}
                texts[name] = None
                continue
            tasks[name] = {
                "version": resolved.version_key,
                "match": resolved.match,
                "digest": resolved.digest,
            }
            texts[name] = resolved.text
    return {
        "prompt_model": prompt_model,
        "prompts": {
            "model": model_id,
            "digest": prompts_digest(texts),
            "source": library.source if library is not None else None,
            "tasks": tasks,
        },
    }


# --------------------------------------------------------------------------------------------
# Prompt files
# --------------------------------------------------------------------------------------------


class _Add(Protocol):
    """Files one problem of a task: its key path, message, and line (default: the key's)."""

    def __call__(self, key: str | None, message: str, at: int | None = None) -> None: ...


def _prompt_files(root: Path) -> list[Path]:
    found: list[Path] = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in files:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in PROMPT_SUFFIXES:
                found.append(Path(directory) / name)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def parse_prompt_yaml(text: str, path: str) -> list[PromptTask]:
    """Parse one prompt file: a task mapping, or a list of task mappings.

    Raises :class:`PromptFileError` with every problem of the file.
    """
    problems = _Problems()
    tasks = _parse(text, path, problems)
    problems.raise_if_any()
    return tasks


def _parse(text: str, path: str, problems: _Problems) -> list[PromptTask]:
    import yaml

    try:
        root = compose_yaml(text.removeprefix("\ufeff"))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problems.add_at(path, line, None, f"invalid YAML: {yaml_problem(exc)}")
        return []
    except yaml.YAMLError as exc:
        problems.add_at(path, None, None, f"invalid YAML: {yaml_problem(exc)}")
        return []
    if root is None:
        problems.add_at(path, None, None, "no prompt task in file")
        return []
    if isinstance(root, yaml.MappingNode):
        nodes: list[yaml.Node] = [root]
    elif isinstance(root, yaml.SequenceNode):
        nodes = list(root.value)
        if not nodes:
            problems.add_at(path, yaml_line(root), None, "no prompt task in file")
    else:
        problems.add_at(
            path,
            yaml_line(root),
            None,
            f"expected a task mapping (task, versions) or a list of them, got {yaml_kind(root)}",
        )
        return []
    tasks: list[PromptTask] = []
    seen: dict[str, int] = {}
    for node in nodes:
        try:
            task = _parse_task(node, path, problems)
        except yaml.YAMLError as exc:  # a value with a tag safe loading cannot construct
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else yaml_line(node)
            problems.add_at(path, line, None, f"invalid YAML: {yaml_problem(exc)}")
            continue
        if task is None:
            continue
        if task.name in seen:
            problems.add_at(
                path,
                task.line,
                "task",
                f"duplicate task {task.name!r} (first at line {seen[task.name]})",
            )
            continue
        seen[task.name] = task.line
        tasks.append(task)
    return tasks


def _parse_task(node: yaml.Node, path: str, problems: _Problems) -> PromptTask | None:
    import yaml

    line = yaml_line(node)
    if not isinstance(node, yaml.MappingNode):
        problems.add_at(path, line, None, f"expected a task mapping, got {yaml_kind(node)}")
        return None
    before = len(problems)
    lines = LineMap(node)
    values: dict[str, yaml.Node] = {}
    for key_node, value_node in node.value:
        key = key_node.value
        if isinstance(key, str) and key in TASK_KEYS:
            values.setdefault(key, value_node)
    name = _task_name(values.get("task"), path, line, lines, problems)

    def add(key: str | None, message: str, at: int | None = None) -> None:
        if at is None:
            at = lines.key_line(key.split(".")[0].split("[")[0] if key else None, line)
        problems.add_at(path, at, key, message, name)

    for dup_line, message in yaml_duplicate_keys(node, "the task"):
        problems.add_at(path, dup_line, None, message, name)
    for key_node, _ in node.value:
        key = key_node.value
        if key_node.tag == _MERGE_TAG:
            add(None, "merge keys ('<<') are not supported in a task mapping", yaml_line(key_node))
        elif not isinstance(key, str) or key not in TASK_KEYS:
            add(None, unknown_key_message("key", key, TASK_KEYS)(), yaml_line(key_node))
    if "task" not in values:
        add(None, "missing 'task': every prompt task needs a name")
    description: str | None = None
    if "description" in values:
        value = _scalar(values["description"])
        if value is not None and not isinstance(value, str):
            add("description", f"expected a string, got {yaml_kind(values['description'])}")
        else:
            description = value
    declared: tuple[str, ...] | None = None
    if "variables" in values:
        declared = _variables(values["variables"], add)
    versions: dict[str, PromptVersion] = {}
    if "versions" not in values:
        add(None, "missing 'versions': a task needs at least one version (for example 'default')")
    else:
        versions = _versions(values["versions"], add, declared)
    if len(problems) > before or name is None:
        return None
    used = tuple(dict.fromkeys(n for version in versions.values() for n in version.placeholders))
    return PromptTask(
        name=name,
        versions=versions,
        variables=declared if declared is not None else used,
        declared=declared is not None,
        description=description,
        path=path,
        line=line,
    )


def _scalar(node: yaml.Node) -> object:
    """The value of a scalar node (None for a null), or the node itself for collections."""
    import yaml

    if not isinstance(node, yaml.ScalarNode):
        return node
    return yaml_construct(node)


def _task_name(
    node: yaml.Node | None,
    path: str,
    line: int,
    lines: LineMap,
    problems: _Problems,
) -> str | None:
    if node is None:
        return None
    value = _scalar(node)
    at = lines.key_line("task", line)
    if not isinstance(value, str):
        problems.add_at(path, at, "task", f"expected a task name, got {yaml_kind(node)}")
        return None
    if not _TASK_RE.fullmatch(value) or len(value) > MAX_ID_LENGTH:
        problems.add_at(
            path,
            at,
            "task",
            f"invalid task name {short_repr(value)}: it must start with a letter or digit and "
            "contain only letters, digits, '.', '_' and '-'",
        )
        return None
    return value


def _variables(node: yaml.Node, add: _Add) -> tuple[str, ...] | None:
    import yaml

    if not isinstance(node, yaml.SequenceNode):
        value = _scalar(node)
        if value is None:
            return ()
        add("variables", f"expected a list of variable names, got {yaml_kind(node)}")
        return None
    names: list[str] = []
    ok = True
    for i, item in enumerate(node.value):
        value = _scalar(item)
        where = f"variables[{i}]"
        if not isinstance(value, str) or not _VAR_RE.fullmatch(value):
            shown = yaml_kind(item) if not isinstance(value, str) else short_repr(value)
            add(
                where,
                f"invalid variable name {shown}: it must start with a letter or '_' and contain "
                "only letters, digits and '_'",
                yaml_line(item),
            )
            ok = False
        elif value in names:
            add(where, f"variable {value!r} is declared twice", yaml_line(item))
            ok = False
        else:
            names.append(value)
    return tuple(names) if ok else None


def _versions(
    node: yaml.Node, add: _Add, declared: tuple[str, ...] | None
) -> dict[str, PromptVersion]:
    """The valid versions of a ``versions`` mapping; placeholders must be ``declared`` (when
    the task declares its variables)."""
    import yaml

    if not isinstance(node, yaml.MappingNode):
        add("versions", f"expected a mapping of model id to prompt text, got {yaml_kind(node)}")
        return {}
    for dup_line, message in yaml_duplicate_keys(node, "versions"):
        add("versions", message, dup_line)
    if not node.value:
        add("versions", "expected at least one version, got an empty mapping")
        return {}
    versions: dict[str, PromptVersion] = {}
    same_name: dict[str, str] = {}
    for key_node, value_node in node.value:
        key_line = yaml_line(key_node)
        if key_node.tag == _MERGE_TAG:
            add("versions", "merge keys ('<<') are not supported in versions", key_line)
            continue
        key = _scalar(key_node)
        if not isinstance(key, str) or not (key == DEFAULT_VERSION or looks_like_id(key)):
            shown = short_repr(key) if isinstance(key, str) else yaml_kind(key_node)
            add(
                "versions",
                f"invalid version key {shown}: expected a model id or 'default'",
                key_line,
            )
            continue
        where = f"versions.{key}"
        if key in versions:
            continue  # reported as a duplicate key
        value = _scalar(value_node)
        if not isinstance(value, str) or not value.strip():
            got = yaml_kind(value_node) if not isinstance(value, str) else describe(value)
            add(where, f"expected the prompt text (a non-empty string), got {got}", key_line)
            continue
        names, issues = _scan(value)
        for issue in issues:
            add(where, issue.message, _text_line(value_node, value, issue.offset))
        if declared is not None:
            reported: set[str] = set()
            for variable, offset in names:
                if variable not in declared and variable not in reported:
                    reported.add(variable)
                    issues.append(_TemplateIssue(offset, "undeclared"))
                    add(
                        where,
                        f"placeholder {{{variable}}} is not a declared variable (variables: "
                        f"{', '.join(declared) or 'none'})" + did_you_mean(variable, declared),
                        _text_line(value_node, value, offset),
                    )
        if issues:
            continue
        if key != DEFAULT_VERSION:
            name = parse_model_id(key).name
            if name in same_name:
                add(
                    where,
                    f"versions {same_name[name]!r} and {key!r} name the same model id {name!r}",
                    key_line,
                )
                continue
            same_name[name] = key
        placeholders_ = tuple(dict.fromkeys(name for name, _ in names))
        versions[key] = PromptVersion(key, value, placeholders_, key_line)
    return versions


def _text_line(node: yaml.Node, text: str, offset: int) -> int:
    """The line of ``text[offset]`` in the file: exact in a literal block (``|``), else the line
    where the scalar starts."""
    start = yaml_line(node)
    if getattr(node, "style", None) == "|":
        return start + 1 + text.count("\n", 0, offset)
    return start
