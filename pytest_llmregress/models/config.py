"""The one source of truth for a project's model ids: named roles in a TOML file.

``[tool.llmregress.models]`` in ``pyproject.toml``, or top-level ``[models]`` in
``llmregress.toml``::

    [tool.llmregress.models.chat]
    id = "claude-sonnet-4-6"
    fallbacks = ["gpt-5.5-2026-04-23"]
    retires_on = "2027-02-17"          # optional: overrides the lifecycle data for this id

    [tool.llmregress.models.summary]
    id = "@chat"                       # another role's model (and its fallbacks)

    [[tool.llmregress.lifecycle]]      # optional extra lifecycle entries
    id = "claude-sonnet-4-6"
    retires_on = "2027-02-17"

    [[tool.llmregress.lifecycle]]      # or an overrides file (``llmregress models refresh``)
    file = "lifecycle/openai.toml"

    [[tool.llmregress.lifecycle]]      # a model you serve yourself, pinned by its weights
    id = "openai:tiny-chat-v1"
    digest = "sha256:4f1c..."          # and/or version = "2026-11-30"

Application code and the pytest plugin both call :func:`load_model_config`, so production and
tests read the same file. Only the standard library is imported here (no pytest, no SDKs).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from pytest_llmregress.core.validation import KeyedError, first_unknown_key, type_and_repr
from pytest_llmregress.models.ids import DEFAULT_SURFACE, Surface, parse_model_id
from pytest_llmregress.models.lifecycle import (
    DEFAULT_WARNING_DAYS,
    LifecycleData,
    LifecycleError,
    LifecycleFinding,
    LifecycleOverride,
    bundled_lifecycle,
    load_overrides_file,
    parse_date,
    parse_override,
)

CONFIG_FILENAME: Final = "llmregress.toml"
PYPROJECT_FILENAME: Final = "pyproject.toml"
ROLE_KEYS: Final = ("id", "fallbacks", "retires_on")
_ROLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


class ModelConfigError(KeyedError):
    """An invalid model config, or a reference to a role it does not define.

    The message names the file and the key; ``path`` and ``key`` carry them separately.
    """


@dataclass(frozen=True)
class ModelRole:
    """A named use of a model (``chat``, ``summary``, ``judge``...): a pinned id + fallbacks."""

    name: str
    id: str
    """The model id; a ``@role`` reference in the file is resolved to that role's id."""
    fallbacks: tuple[str, ...] = ()
    retires_on: date | None = None
    ref: str | None = None
    """The role the id was taken from when the file says ``id = "@role"`` (``"chat"``)."""

    @property
    def chain(self) -> tuple[str, ...]:
        """The id, then the fallbacks, in the order they are tried."""
        return (self.id, *self.fallbacks)


def _empty_roles() -> Mapping[str, ModelRole]:
    return MappingProxyType({})


@dataclass(frozen=True)
class ModelConfig:
    """The project's model roles and lifecycle overrides (frozen)."""

    roles: Mapping[str, ModelRole] = field(default_factory=_empty_roles)
    path: Path | None = None
    """The file the config was read from; None when no config file was found."""
    lifecycle_overrides: tuple[LifecycleOverride, ...] = ()
    """``[[...lifecycle]]`` entries (and the files they include), then roles' ``retires_on``."""
    lifecycle_files: tuple[Path, ...] = ()
    """Override files included by ``[[...lifecycle]]`` ``file = ...`` entries."""

    def role(self, name: str) -> ModelRole:
        """The role ``name``; :class:`ModelConfigError` listing the known roles otherwise."""
        try:
            return self.roles[name]
        except KeyError:
            pass
        raise self._unknown_role(name)

    def _unknown_role(self, name: str) -> ModelConfigError:
        if self.path is None:
            return ModelConfigError(
                f"unknown model role {name!r}: no model config found (looked for "
                f"{CONFIG_FILENAME} or {PYPROJECT_FILENAME} with [tool.llmregress.models])"
            )
        known = ", ".join(sorted(self.roles)) or "none"
        return ModelConfigError(
            f"unknown model role {name!r} in {self.path}; known roles: {known}",
            path=self.path,
        )

    def resolve(self, ref: str) -> str:
        """``"@chat"`` -> the ``chat`` role's id; a plain model id passes through unchanged.

        A role whose id is itself ``@other`` resolves through ``other`` (files loaded by
        :func:`load_model_config` are already resolved); a cycle raises
        :class:`ModelConfigError` naming the roles in it.
        """
        ref = ref.strip()
        if not ref or ref == "@":
            raise ModelConfigError("empty model reference", path=self.path)
        if not ref.startswith("@"):
            return ref
        seen: list[str] = []
        name = ref[1:].strip()
        while True:
            if name in seen:
                cycle = " -> ".join([*seen[seen.index(name) :], name])
                raise ModelConfigError(
                    f"model role references form a cycle: {cycle}", path=self.path
                )
            seen.append(name)
            model_id = self.role(name).id
            if not model_id.startswith("@"):
                return model_id
            name = model_id[1:].strip()

    def model_ids(self) -> tuple[str, ...]:
        """Every configured id (roles' ids and fallbacks), first occurrence order."""
        return tuple(dict.fromkeys(mid for role in self.roles.values() for mid in role.chain))

    def lifecycle(self, base: LifecycleData | None = None) -> LifecycleData:
        """``base`` (default: the bundled data) with this config's overrides applied."""
        base = base or bundled_lifecycle()
        if not self.lifecycle_overrides:
            return base
        return base.with_overrides(self.lifecycle_overrides)

    def check(
        self,
        today: date | None = None,
        warning_days: int = DEFAULT_WARNING_DAYS,
        *,
        require_pinned: bool = False,
        data: LifecycleData | None = None,
    ) -> list[LifecycleFinding]:
        """Lifecycle findings for every role's id and fallbacks (roles ``chat``,
        ``chat fallback 1``, ...), against ``data`` or :meth:`lifecycle`."""
        data = data or self.lifecycle()
        findings: list[LifecycleFinding] = []
        for role in self.roles.values():
            for index, model_id in enumerate(role.chain):
                label = role.name if index == 0 else f"{role.name} fallback {index}"
                findings += data.check(
                    model_id, label, today, warning_days, require_pinned=require_pinned
                )
        return findings


# -- discovery ----------------------------------------------------------------------------


def _pyproject_has_section(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return False
    if "llmregress" not in text:
        return False
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ModelConfigError(f"{path}: invalid TOML: {exc}", path=path) from None
    tool = doc.get("tool")
    return isinstance(tool, dict) and "llmregress" in tool


def find_config_file(start: Path | None = None) -> Path | None:
    """The nearest config file at or above ``start`` (default: the current directory).

    In each directory, ``llmregress.toml`` wins over ``pyproject.toml``; a ``pyproject.toml``
    counts only if it has a ``[tool.llmregress]`` table.
    """
    here = (start or Path.cwd()).resolve()
    if here.is_file():
        here = here.parent
    for directory in (here, *here.parents):
        candidate = directory / CONFIG_FILENAME
        if candidate.is_file():
            return candidate
        pyproject = directory / PYPROJECT_FILENAME
        if pyproject.is_file() and _pyproject_has_section(pyproject):
            return pyproject
    return None


def load_model_config(start: Path | None = None, *, path: Path | None = None) -> ModelConfig:
    """Load the project's model config.

    ``path`` names the file explicitly (``pyproject.toml`` is read from ``[tool.llmregress]``,
    any other file from its top level); otherwise :func:`find_config_file` searches upward
    from ``start``. Without a config file, returns an empty :class:`ModelConfig` (``path`` is
    None). Raises :class:`ModelConfigError` for an invalid file.
    """
    if path is None:
        path = find_config_file(start)
        if path is None:
            return ModelConfig()
    return _load_file(path)


# -- parsing ------------------------------------------------------------------------------


class _Reader:
    def __init__(self, path: Path, prefix: str) -> None:
        self.path = path
        self.prefix = prefix

    def error(self, key: str, problem: str) -> ModelConfigError:
        return ModelConfigError.at(problem, path=self.path, key=f"{self.prefix}{key}")

    def string(self, value: object, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"expected a non-empty string, got {type_and_repr(value)}")
        return value.strip()

    def date(self, value: object, key: str) -> date | None:
        try:
            return parse_date(value, key)
        except LifecycleError:
            raise self.error(
                key, f"expected a date YYYY-MM-DD, got {type_and_repr(value)}"
            ) from None


def _load_file(path: Path) -> ModelConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelConfigError(f"{path}: cannot read model config: {exc}", path=path) from None
    try:
        doc: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ModelConfigError(f"{path}: invalid TOML: {exc}", path=path) from None
    if path.name == PYPROJECT_FILENAME:
        reader = _Reader(path, "tool.llmregress.")
        tool = doc.get("tool", {})
        section = tool.get("llmregress", {}) if isinstance(tool, dict) else {}
        if not isinstance(section, dict):
            raise reader.error("", "expected a table") from None
    else:
        reader, section = _Reader(path, ""), doc

    roles = _resolve_references(reader, *_parse_roles(reader, section.get("models", {})))
    overrides, files = _parse_lifecycle(reader, section)
    overrides += tuple(
        LifecycleOverride(
            id=role.id,
            given=frozenset({"retires_on"}),
            retires_on=role.retires_on,
            source=f"{path}: {reader.prefix}models.{role.name}.retires_on",
        )
        for role in roles.values()
        if role.retires_on is not None
    )
    config = ModelConfig(
        roles=MappingProxyType(roles),
        path=path,
        lifecycle_overrides=overrides,
        lifecycle_files=files,
    )
    data = config.lifecycle()
    for role in roles.values():
        if role.ref is not None and role.chain == roles[role.ref].chain:
            continue  # the chain of the role it names, checked there
        _check_chain(reader, role, data)
    return config


def _parse_roles(reader: _Reader, models: object) -> tuple[dict[str, ModelRole], set[str]]:
    """The roles as written, and the names of those that give ``fallbacks`` (even empty)."""
    if not isinstance(models, dict):
        raise reader.error("models", f"expected a table of roles, got {type_and_repr(models)}")
    roles: dict[str, ModelRole] = {}
    with_fallbacks: set[str] = set()
    for name, raw in models.items():
        key = f"models.{name}"
        if not _ROLE_NAME.match(name):
            raise reader.error(key, "a role name is letters, digits, '_' and '-'")
        if not isinstance(raw, dict):
            raise reader.error(
                key,
                f'expected a table with id = "...", got {type_and_repr(raw)} '
                f"(write [{reader.prefix}models.{name}] and id = ... under it)",
            )
        unknown = first_unknown_key(raw, ROLE_KEYS)
        if unknown is not None:
            raise reader.error(f"{key}.{unknown}", f"unknown key (allowed: {', '.join(ROLE_KEYS)})")
        if "id" not in raw:
            raise reader.error(f"{key}.id", "missing: every role needs a model id")
        model_id = reader.string(raw["id"], f"{key}.id")
        fallbacks_raw = raw.get("fallbacks", [])
        if not isinstance(fallbacks_raw, list):
            raise reader.error(
                f"{key}.fallbacks",
                f"expected a list of model ids, got {type_and_repr(fallbacks_raw)}",
            )
        fallbacks = tuple(
            reader.string(item, f"{key}.fallbacks[{i}]") for i, item in enumerate(fallbacks_raw)
        )
        retires_on = (
            reader.date(raw["retires_on"], f"{key}.retires_on") if "retires_on" in raw else None
        )
        roles[name] = ModelRole(name=name, id=model_id, fallbacks=fallbacks, retires_on=retires_on)
        if "fallbacks" in raw:
            with_fallbacks.add(name)
    return roles, with_fallbacks


def _reference(reader: _Reader, value: str, key: str) -> str | None:
    """The role name of a ``@role`` reference, None for a model id."""
    if not value.startswith("@"):
        return None
    name = value[1:].strip()
    if not _ROLE_NAME.match(name):
        raise reader.error(
            key, f"{value!r} is not a role reference: write '@' and a role name (as '@chat')"
        )
    return name


def _resolve_references(
    reader: _Reader, roles: dict[str, ModelRole], with_fallbacks: set[str]
) -> dict[str, ModelRole]:
    """Resolve ``id = "@other"`` through the chain of roles, then ``@role`` fallbacks.

    A role whose id names another role takes that role's model id and, unless it gives
    ``fallbacks`` of its own, that role's fallbacks. A reference to an unknown role, or a
    cycle of references, is refused with the roles named.
    """
    known = ", ".join(sorted(roles)) or "none"
    paths: dict[str, list[str]] = {}
    for name in roles:
        path = [name]
        current = roles[name]
        while (target := _reference(reader, current.id, f"models.{current.name}.id")) is not None:
            if target not in roles:
                raise reader.error(
                    f"models.{current.name}.id",
                    f"{current.id!r} names no role; known roles: {known}",
                )
            if target in path:
                cycle = [*path[path.index(target) :], target]
                raise reader.error(
                    f"models.{cycle[0]}.id",
                    f"role references form a cycle: {' -> '.join(cycle)}; "
                    "one of these roles needs a model id",
                )
            path.append(target)
            current = roles[target]
        paths[name] = path

    model_ids = {name: roles[path[-1]].id for name, path in paths.items()}
    resolved: dict[str, ModelRole] = {}
    for name, path in paths.items():
        role = roles[name]
        # the fallbacks of the first role on the way that gives some
        owner = next((roles[n] for n in path if n in with_fallbacks), roles[path[-1]])
        chain: list[str] = []
        for index, fallback in enumerate(owner.fallbacks):
            key = f"models.{owner.name}.fallbacks[{index}]"
            other = _reference(reader, fallback, key)
            if other is None:
                chain.append(fallback)
            elif other in model_ids:
                chain.append(model_ids[other])
            else:
                raise reader.error(key, f"{fallback!r} names no role; known roles: {known}")
        resolved[name] = replace(
            role,
            id=model_ids[name],
            fallbacks=tuple(chain),
            ref=path[1] if len(path) > 1 else None,
        )
    return resolved


def _parse_lifecycle(
    reader: _Reader, section: Mapping[str, Any]
) -> tuple[tuple[LifecycleOverride, ...], tuple[Path, ...]]:
    """``[[lifecycle]]`` entries in order; ``{file = "..."}`` entries include an overrides
    file (relative to the config file) at their position. An entry without a ``source``
    names where it is written (``pyproject.toml: tool.llmregress.lifecycle[0]``)."""
    overrides: list[LifecycleOverride] = []
    files: list[Path] = []
    entries = section.get("lifecycle", [])
    if not isinstance(entries, list):
        raise reader.error(
            "lifecycle",
            f"expected an array of tables [[{reader.prefix}lifecycle]], "
            f"got {type_and_repr(entries)}",
        )
    for index, raw in enumerate(entries):
        key = f"{reader.prefix}lifecycle[{index}]"
        if not isinstance(raw, dict):
            raise reader.error(f"lifecycle[{index}]", f"expected a table, got {type_and_repr(raw)}")
        if "file" in raw:
            if len(raw) > 1:
                other = sorted(set(raw) - {"file"})[0]
                raise reader.error(
                    f"lifecycle[{index}].{other}",
                    "an entry with 'file' includes an overrides file and takes no other key",
                )
            name = reader.string(raw["file"], f"lifecycle[{index}].file")
            file = reader.path.parent / name
            try:
                overrides += [
                    _sourced(override, f"{file}: lifecycle[{i}]")
                    for i, override in enumerate(load_overrides_file(file))
                ]
            except LifecycleError as exc:
                raise ModelConfigError(
                    f"{reader.path}: {key}.file: {exc}", path=reader.path, key=f"{key}.file"
                ) from None
            files.append(file)
            continue
        try:
            override = parse_override(raw, key)
        except LifecycleError as exc:
            raise ModelConfigError(
                f"{reader.path}: {exc}", path=reader.path, key=exc.key or key
            ) from None
        overrides.append(_sourced(override, f"{reader.path}: {key}"))
    return tuple(overrides), tuple(files)


def _sourced(override: LifecycleOverride, where: str) -> LifecycleOverride:
    """``override`` with ``where`` as its source unless it names one."""
    if "source" in override.given:
        return override
    return replace(override, given=override.given | {"source"}, source=where)


#: The SDK that reaches a vendor's ids when no transport prefix names one.
_VENDOR_TRANSPORT: Final[dict[str, str]] = {"anthropic": "anthropic", "openai": "openai"}

_ChainKey = tuple[Surface | None, str | None, str]


def _chain_key(model_id: str) -> _ChainKey:
    """Surface, route (the SDK that reaches it) and name: the same model reached through
    another SDK (``openai:claude-sonnet-4-6`` beside ``claude-sonnet-4-6``) goes through
    another endpoint, which fails on its own, so it is a different fallback."""
    parsed = parse_model_id(model_id)
    surface = parsed.surface or (DEFAULT_SURFACE[parsed.provider] if parsed.provider else None)
    route = parsed.transport or _VENDOR_TRANSPORT.get(parsed.provider or "")
    return surface, route, parsed.name


def _check_chain(reader: _Reader, role: ModelRole, data: LifecycleData) -> None:
    """A chain must not repeat an id, nor hold an alias and the snapshot it points to."""

    def key_of(index: int) -> str:
        return (
            f"models.{role.name}.id" if index == 0 else f"models.{role.name}.fallbacks[{index - 1}]"
        )

    seen: dict[_ChainKey, int] = {}
    for index, model_id in enumerate(role.chain):
        key = _chain_key(model_id)
        if key in seen:
            first = seen[key]
            raise reader.error(
                key_of(index),
                f"{model_id!r} repeats {reader.prefix}{key_of(first)} ({role.chain[first]!r}) "
                "in the fallback chain",
            )
        seen[key] = index

    effective: dict[_ChainKey, int] = {}
    notes: dict[int, str] = {}
    for index, model_id in enumerate(role.chain):
        info = data.classify(model_id)
        surface, route, name = _chain_key(model_id)
        target = name
        if info.kind == "alias" and info.resolves_to:
            target = parse_model_id(info.resolves_to).name
            notes[index] = f"alias {model_id!r} points to {info.resolves_to!r}"
        key = (surface, route, target)
        if key in effective:
            first = effective[key]
            why = "; ".join(notes[i] for i in (first, index) if i in notes)
            raise reader.error(
                key_of(index),
                f"{model_id!r} and {reader.prefix}{key_of(first)} ({role.chain[first]!r}) are "
                f"the same model ({why}); a fallback must be a different model",
            )
        effective[key] = index
