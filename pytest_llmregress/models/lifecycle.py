"""Lifecycle data: deprecation and retirement dates per model id and serving surface.

The data bundled with the package (``lifecycle.csv``, current as of
:data:`LIFECYCLE_DATA_AS_OF`) is loaded lazily, once. A project extends or corrects it with
override entries (``{id, kind?, resolves_to?, digest?, version?, deprecated_on?, retires_on?,
surface?, source?}``) from its config or from a file written by ``llmregress models refresh``;
:meth:`LifecycleData.with_overrides` returns a new, merged :class:`LifecycleData`. An entry
with a ``digest`` or a ``version`` pins an id the team serves itself (a self-hosted model):
the id is then a snapshot, dated like any other.

:meth:`LifecycleData.check` turns the facts about one id into findings (errors and warnings)
for the pytest plugin and the ``llmregress models`` commands.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal, cast

from pytest_llmregress.core.files import atomic_write_text
from pytest_llmregress.core.validation import first_unknown_key, type_and_repr
from pytest_llmregress.models.ids import (
    DEFAULT_SURFACE,
    KINDS,
    SURFACES,
    Kind,
    ModelInfo,
    ParsedModelId,
    Provider,
    Surface,
    looks_like_id,
    parse_model_id,
)

#: The date the bundled lifecycle data was last checked against its sources.
LIFECYCLE_DATA_AS_OF: Final = date(2026, 11, 26)

DEFAULT_WARNING_DAYS: Final = 60

#: The ``provider`` column of the CSV names the serving surface.
CSV_SURFACES: Final[dict[str, tuple[Provider, Surface]]] = {
    "anthropic": ("anthropic", "anthropic-api"),
    "anthropic-bedrock": ("anthropic", "bedrock"),
    "anthropic-vertex": ("anthropic", "vertex"),
    "openai": ("openai", "openai-api"),
    "google-gemini-api": ("google", "gemini-api"),
    "google-vertex": ("google", "vertex"),
}

CSV_COLUMNS: Final = (
    "provider",
    "model_id",
    "kind",
    "alias_of_or_resolves_to",
    "deprecated_on",
    "retires_on",
    "source",
)

OVERRIDE_KEYS: Final = (
    "id",
    "surface",
    "kind",
    "resolves_to",
    "digest",
    "version",
    "deprecated_on",
    "retires_on",
    "source",
)

#: A content digest: an optional algorithm (``sha256:``), then at least 12 hex digits (a
#: ``sha256:<64 hex>`` of the weights, a Hugging Face revision commit, an Ollama digest).
_DIGEST = re.compile(r"^(?:[a-z][a-z0-9]*:)?[0-9a-f]{12,}$", re.IGNORECASE)
#: Names that move: a version must name one set of weights.
_MOVING_VERSIONS: Final = frozenset(
    {"latest", "main", "master", "head", "default", "stable", "current", "nightly"}
)
#: The kinds an entry with a ``digest`` or ``version`` may give (both are pinned).
_PINNED_KINDS: Final = ("snapshot", "fine-tune")

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATED_SIBLING = re.compile(r"^(?P<stem>.+)-(?:20\d{2}-[01]\d-[0-3]\d|[01]\d[0-3]\d)$")
_MAX_CHAIN = 5

Level = Literal["error", "warning"]
FindingCode = Literal[
    "retired",
    "retiring",
    "deprecated",
    "alias",
    "preview",
    "unpinned",
    "unknown-kind",
    "bypasses-config",
]


class LifecycleError(ValueError):
    """Bad lifecycle data or a bad override entry; the message names where.

    ``key`` is the dotted location of the bad value when there is one (``where.key``).
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class LifecycleEntry:
    """One row of lifecycle data: an id on one surface."""

    id: str
    surface: Surface | None
    provider: Provider | None
    kind: Kind | None
    """None: classify by the id's pattern."""
    target: str | None
    """Alias: the snapshot it points to. Otherwise: the equivalent (first-party) id."""
    deprecated_on: date | None
    retires_on: date | None
    source: str | None
    digest: str | None = None
    """The weights digest a project entry pins the id to (self-hosted models)."""
    version: str | None = None
    """The version a project entry pins the id to (self-hosted models)."""


@dataclass(frozen=True)
class LifecycleOverride:
    """A validated override entry. Only the fields named in ``given`` are applied."""

    id: str
    given: frozenset[str]
    surface: Surface | None = None
    kind: Kind | None = None
    resolves_to: str | None = None
    digest: str | None = None
    version: str | None = None
    deprecated_on: date | None = None
    retires_on: date | None = None
    source: str | None = None

    @property
    def pins(self) -> bool:
        """True when the entry pins its id with a ``digest`` or a ``version``."""
        return self.digest is not None or self.version is not None

    def to_dict(self) -> dict[str, Any]:
        """The entry as given (dates as ISO strings): the inverse of :func:`parse_override`."""
        out: dict[str, Any] = {"id": self.id}
        for key in OVERRIDE_KEYS[1:]:
            if key in self.given:
                value = getattr(self, key)
                out[key] = value.isoformat() if isinstance(value, date) else value
        return out


@dataclass(frozen=True)
class LifecycleFinding:
    """One problem with one model id, for the plugin's header/summary or a CLI report."""

    level: Level
    code: FindingCode
    model_id: str
    role: str | None
    message: str
    retires_on: date | None = None
    days_left: int | None = None

    def __str__(self) -> str:
        return f"{self.level}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["retires_on"] = self.retires_on.isoformat() if self.retires_on else None
        return data


def parse_date(value: object, where: str) -> date | None:
    """A ``YYYY-MM-DD`` string or a TOML date; ``""`` clears a date (None)."""
    if isinstance(value, date) and not hasattr(value, "hour"):
        return value
    if isinstance(value, str):
        if value == "":
            return None
        if _ISO_DATE.match(value):
            try:
                return date.fromisoformat(value)
            except ValueError as exc:
                raise LifecycleError(f"{where}: invalid date {value!r}: {exc}", key=where) from None
    raise LifecycleError(f"{where}: expected a date YYYY-MM-DD, got {value!r}", key=where)


def _optional_str(value: object, where: str) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    raise LifecycleError(f"{where}: expected a string, got {type_and_repr(value)}", key=where)


def _digest(value: object, where: str) -> str:
    if isinstance(value, str) and _DIGEST.match(value.strip()):
        return value.strip()
    raise LifecycleError(
        f"{where}: expected a content digest of the weights: 'sha256:<hex>', a Hugging Face "
        f"revision commit hash or an Ollama digest (12 or more hex digits), got "
        f"{type_and_repr(value)}; a name of your own goes in 'version'",
        key=where,
    )


def _pinned_version(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise LifecycleError(
            f"{where}: expected a non-empty string, got {type_and_repr(value)}",
            key=where,
        )
    if value.strip().lower() in _MOVING_VERSIONS:
        raise LifecycleError(
            f"{where}: {value!r} moves to new weights; name a version that does not (a date, "
            "a release number) or give the weights' digest",
            key=where,
        )
    return value.strip()


def parse_override(raw: Mapping[str, object], where: str = "override") -> LifecycleOverride:
    """Validate one override entry; errors name ``where`` and the key."""
    if not isinstance(raw, Mapping):
        raise LifecycleError(f"{where}: expected a table with an id, got {raw!r}")
    unknown = first_unknown_key(raw, OVERRIDE_KEYS)
    if unknown is not None:
        raise LifecycleError(
            f"{where}.{unknown}: unknown key (allowed: {', '.join(OVERRIDE_KEYS)})",
            key=f"{where}.{unknown}",
        )
    if "id" not in raw:
        raise LifecycleError(f"{where}: missing required key 'id'")
    model_id = raw["id"]
    if not isinstance(model_id, str) or not model_id.strip():
        raise LifecycleError(
            f"{where}.id: expected a non-empty string, got {model_id!r}", key=f"{where}.id"
        )
    values: dict[str, Any] = {}
    for key in OVERRIDE_KEYS[1:]:
        if key not in raw:
            continue
        value, here = raw[key], f"{where}.{key}"
        if key in ("deprecated_on", "retires_on"):
            values[key] = parse_date(value, here)
        elif key == "kind":
            if value not in KINDS:
                raise LifecycleError(
                    f"{here}: expected one of {', '.join(KINDS)}, got {value!r}", key=here
                )
            values[key] = value
        elif key == "surface":
            if value not in SURFACES:
                raise LifecycleError(
                    f"{here}: expected one of {', '.join(SURFACES)}, got {value!r}", key=here
                )
            values[key] = value
        elif key == "digest":
            values[key] = _digest(value, here)
        elif key == "version":
            values[key] = _pinned_version(value, here)
        else:
            values[key] = _optional_str(value, here)
    kind = values.get("kind")
    if kind is not None and kind not in _PINNED_KINDS and ("digest" in raw or "version" in raw):
        pin = "digest" if "digest" in raw else "version"
        raise LifecycleError(
            f"{where}.kind: {kind!r} contradicts {pin}, which pins the id (a snapshot); "
            "leave kind out",
            key=f"{where}.kind",
        )
    return LifecycleOverride(id=model_id.strip(), given=frozenset(values), **values)


def _csv_date(text: str, where: str) -> date | None:
    return parse_date(text, where) if text else None


def parse_lifecycle_csv(text: str, *, origin: str = "lifecycle.csv") -> list[LifecycleEntry]:
    """Parse lifecycle CSV text (the bundled format) into entries; errors name the line."""
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
        raise LifecycleError(f"{origin}: expected columns {', '.join(CSV_COLUMNS)}")
    entries = []
    for row in reader:
        where = f"{origin}:{reader.line_num}"
        if row["provider"] not in CSV_SURFACES:
            raise LifecycleError(f"{where}: unknown provider {row['provider']!r}")
        if row["kind"] not in KINDS:
            raise LifecycleError(f"{where}: unknown kind {row['kind']!r}")
        provider, surface = CSV_SURFACES[row["provider"]]
        entries.append(
            LifecycleEntry(
                id=row["model_id"],
                surface=surface,
                provider=provider,
                kind=cast(Kind, row["kind"]),
                target=row["alias_of_or_resolves_to"] or None,
                deprecated_on=_csv_date(row["deprecated_on"], f"{where}: deprecated_on"),
                retires_on=_csv_date(row["retires_on"], f"{where}: retires_on"),
                source=row["source"] or None,
            )
        )
    return entries


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@dataclass(frozen=True)
class _Dates:
    deprecated_on: date | None
    retires_on: date | None
    dates_from: str | None


class LifecycleData:
    """Lifecycle facts keyed by (surface, id). Immutable: overrides return a new instance."""

    def __init__(
        self,
        entries: Iterable[LifecycleEntry],
        *,
        as_of: date = LIFECYCLE_DATA_AS_OF,
        overrides: tuple[LifecycleOverride, ...] = (),
    ) -> None:
        self.as_of = as_of
        #: The override entries applied on top of the bundled data, in order.
        self.overrides = overrides
        self._entries: dict[tuple[Surface | None, str], LifecycleEntry] = {}
        for entry in entries:
            self._entries[(entry.surface, entry.id)] = entry
        self._dated_stems: dict[Surface | None, set[str]] | None = None

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def bundled(cls) -> LifecycleData:
        """The data shipped with the package (cached; see :func:`bundled_lifecycle`)."""
        return bundled_lifecycle()

    def with_overrides(
        self,
        entries: Iterable[Mapping[str, object] | LifecycleOverride],
        *,
        source: str = "project override",
        where: str = "override",
    ) -> LifecycleData:
        """A copy with ``entries`` applied in order (later entries win).

        An entry for an id the data knows (on the surface the id resolves to, as in
        :meth:`classify`) replaces only the fields it gives; an entry for a new id adds it.
        A date given as ``""`` clears that date. An entry with a ``digest`` or a ``version``
        (and no ``kind``) makes its id a snapshot: the project pins a model it serves.
        """
        merged = dict(self._entries)
        applied = list(self.overrides)
        for index, raw in enumerate(entries):
            override = (
                raw
                if isinstance(raw, LifecycleOverride)
                else parse_override(raw, f"{where}[{index}]")
            )
            applied.append(override)
            parsed = parse_model_id(override.id, surface=override.surface)
            existing = self._find(parsed, merged, exact=True)
            if existing is None:
                surface = parsed.surface or (
                    DEFAULT_SURFACE[parsed.provider] if parsed.provider else None
                )
                existing = LifecycleEntry(
                    id=parsed.name,
                    surface=surface,
                    provider=parsed.provider,
                    kind=None,
                    target=None,
                    deprecated_on=None,
                    retires_on=None,
                    source=None,
                )
            changes: dict[str, Any] = {"source": override.source or source}
            for key in ("kind", "digest", "version", "deprecated_on", "retires_on"):
                if key in override.given:
                    changes[key] = getattr(override, key)
            if override.pins and "kind" not in override.given:
                changes["kind"] = "snapshot"  # the project says which weights it serves
            if "resolves_to" in override.given:
                changes["target"] = override.resolves_to
            updated = replace(existing, **changes)
            merged[(updated.surface, updated.id)] = updated
        return LifecycleData(merged.values(), as_of=self.as_of, overrides=tuple(applied))

    # -- lookup ---------------------------------------------------------------------------

    @property
    def entries(self) -> tuple[LifecycleEntry, ...]:
        return tuple(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[LifecycleEntry]:
        return iter(self._entries.values())

    def __contains__(self, model_id: object) -> bool:
        return isinstance(model_id, str) and self.get(model_id) is not None

    @staticmethod
    def _candidate_surfaces(parsed: ParsedModelId) -> list[Surface | None]:
        if parsed.surface is not None:
            return [parsed.surface, None]
        first: list[Surface | None] = []
        if parsed.provider is not None:
            first.append(DEFAULT_SURFACE[parsed.provider])
        return [*first, *(s for s in SURFACES if s not in first), None]

    @classmethod
    def _find(
        cls,
        parsed: ParsedModelId,
        entries: Mapping[tuple[Surface | None, str], LifecycleEntry],
        *,
        exact: bool = False,
    ) -> LifecycleEntry | None:
        names = parsed.lookup_names[:1] if exact else parsed.lookup_names
        for name in names:
            for surface in cls._candidate_surfaces(parsed):
                entry = entries.get((surface, name))
                if entry is not None:
                    return entry
        return None

    def get(self, model_id: str, *, surface: Surface | None = None) -> LifecycleEntry | None:
        """The entry for ``model_id`` (after prefix stripping), or None."""
        return self._find(parse_model_id(model_id, surface=surface), self._entries)

    def _dated_stem_index(self) -> dict[Surface | None, set[str]]:
        if self._dated_stems is None:
            index: dict[Surface | None, set[str]] = {}
            for surface, name in self._entries:
                match = _DATED_SIBLING.match(name)
                if match:
                    index.setdefault(surface, set()).add(match["stem"])
            self._dated_stems = index
        return self._dated_stems

    def _pattern_kind(self, parsed: ParsedModelId) -> Kind:
        if parsed.kind == "unknown" and parsed.undated and parsed.provider == "openai":
            surface = parsed.surface or DEFAULT_SURFACE["openai"]
            if parsed.name in self._dated_stem_index().get(surface, set()):
                return "alias"  # an undated id with a dated sibling: the sibling's alias
        return parsed.kind

    def _chain_base(self, target: str) -> str:
        """Follow equivalent-id links (Bedrock/Vertex id -> first-party id)."""
        current = target
        for _ in range(_MAX_CHAIN):
            parsed = parse_model_id(current)
            entry = self._find(parsed, self._entries, exact=True)
            if entry is None or entry.target is None or entry.kind == "alias":
                return parsed.base_id
            current = entry.target
        return current

    def _dates(self, entry: LifecycleEntry) -> _Dates:
        """The entry's dates; an entry with no dates at all takes its target's.

        Aliases retire with their target, and alternate spellings share the canonical id's
        dates, so an alias or spelling without dates of its own takes both dates of its
        target, following the chain on the same surface only: other surfaces (Bedrock,
        Vertex) set their own dates.
        """
        current = entry
        for _ in range(_MAX_CHAIN):
            if current.deprecated_on or current.retires_on or current.target is None:
                break
            nxt = self._entries.get((current.surface, current.target))
            if nxt is None:
                break
            current = nxt
        if current is entry or not (current.deprecated_on or current.retires_on):
            return _Dates(entry.deprecated_on, entry.retires_on, None)
        return _Dates(current.deprecated_on, current.retires_on, current.id)

    # -- classification -------------------------------------------------------------------

    def classify(
        self, model_id: str, *, today: date | None = None, surface: Surface | None = None
    ) -> ModelInfo:
        """See :func:`pytest_llmregress.models.classify`."""
        today = today or date.today()
        parsed = parse_model_id(model_id, surface=surface)
        entry = self._find(parsed, self._entries)
        fine_tune_of: LifecycleEntry | None = None
        if entry is None and parsed.fine_tune_base is not None:
            base = parse_model_id(parsed.fine_tune_base, surface=parsed.surface)
            fine_tune_of = self._find(base, self._entries)

        if entry is not None:
            kind = entry.kind or self._pattern_kind(parsed)
            resolves_to = entry.target if kind == "alias" else None
            if entry.target is not None and kind != "alias":
                base_id = self._chain_base(entry.target)
            else:
                base_id = parsed.base_id
            dates = self._dates(entry)
            dates_from = dates.dates_from or (entry.id if entry.id != parsed.name else None)
            provider, known, source = entry.provider or parsed.provider, True, entry.source
            if entry.id != parsed.name:
                known = False  # matched through the Bedrock profile base, not the id itself
            found_surface = entry.surface
            digest, version = entry.digest, entry.version
        elif fine_tune_of is not None:
            kind, resolves_to, base_id = "fine-tune", None, parsed.base_id
            dates = self._dates(fine_tune_of)
            dates_from = fine_tune_of.id
            provider, known, source = parsed.provider, False, fine_tune_of.source
            found_surface = fine_tune_of.surface
            digest = version = None
        else:
            kind, resolves_to, base_id = self._pattern_kind(parsed), None, parsed.base_id
            dates, dates_from = _Dates(None, None, None), None
            provider, known, source = parsed.provider, False, None
            found_surface = None
            digest = version = None
        final_surface = (
            parsed.surface
            or found_surface
            or (DEFAULT_SURFACE[provider] if provider is not None else None)
        )
        days_left = (dates.retires_on - today).days if dates.retires_on else None
        return ModelInfo(
            id=parsed.raw,
            provider=provider,
            surface=final_surface,
            kind=kind,
            resolves_to=resolves_to,
            base_id=base_id,
            deprecated_on=dates.deprecated_on,
            retires_on=dates.retires_on,
            source=source,
            known=known,
            dates_from=dates_from,
            days_left=days_left,
            digest=digest,
            version=version,
        )

    def is_model_id(self, text: str) -> bool:
        """True if ``text`` is in the data or strongly matches a vendor pattern.

        A string matches when its vendor is known (from the id or a surface prefix) or a
        transport prefix says it is a model (``openai:llama-4-latest``), and its shape
        decides its kind; ``ubuntu-latest`` alone is not a model id.
        """
        if not looks_like_id(text):
            return False
        parsed = parse_model_id(text)
        if self._find(parsed, self._entries) is not None:
            return True
        if parsed.fine_tune_base is not None:
            return self.is_model_id(parsed.fine_tune_base)
        named = parsed.provider is not None or parsed.transport is not None
        return named and self._pattern_kind(parsed) != "unknown"

    # -- checks ---------------------------------------------------------------------------

    def check(
        self,
        model_id: str,
        role: str | None = None,
        today: date | None = None,
        warning_days: int = DEFAULT_WARNING_DAYS,
        *,
        require_pinned: bool = False,
        surface: Surface | None = None,
    ) -> list[LifecycleFinding]:
        """Findings for one model id used in ``role`` (``candidate``, ``judge``, ``chat``, ...).

        * retired (``retires_on`` <= today): error;
        * retiring within ``warning_days``: warning with the date and the days left;
        * deprecated (notice date passed) but not retired: warning;
        * alias or preview: warning, or error with ``require_pinned``;
        * an id of no known vendor (a self-hosted model) that no entry pins, with
          ``require_pinned``: error (``unpinned``), saying how to pin it;
        * another unknown kind with ``require_pinned``: warning (cannot confirm it is pinned).

        An id pinned by a project entry (``digest``, ``version``) is named with its pin, and
        its retirement is the project's date, named with the entry that sets it.
        """
        today = today or date.today()
        info = self.classify(model_id, today=today, surface=surface)
        prefix = f"{role}: " if role else ""
        pinned_to = info.pinned_to
        name = f"{info.id} ({pinned_to})" if pinned_to else info.id
        origin = ""
        if info.dates_from:
            what = "its base model" if info.kind == "fine-tune" else "the date of"
            origin = f"{what} {info.dates_from}"
        findings: list[LifecycleFinding] = []

        def add(level: Level, code: FindingCode, message: str) -> None:
            findings.append(
                LifecycleFinding(
                    level=level,
                    code=code,
                    model_id=info.id,
                    role=role,
                    message=prefix + message,
                    retires_on=info.retires_on,
                    days_left=info.days_left,
                )
            )

        retires, days = info.retires_on, info.days_left
        deprecated = info.deprecated_on is not None and info.deprecated_on <= today
        if retires is not None and days is not None and days <= 0:
            if pinned_to:  # a model the project serves: the date is the project's
                consequence = "move to its successor, or change retires_on there"
                origin = f"set in {info.source}" if info.source else origin
            else:
                consequence = "every request to it fails (HTTP 404)"
            add(
                "error",
                "retired",
                f"{name} retired on {retires}{f' ({origin})' if origin else ''}; {consequence}",
            )
        elif retires is not None and days is not None and days <= warning_days:
            note = f"; deprecated since {info.deprecated_on}" if deprecated else ""
            add(
                "warning",
                "retiring",
                f"{name} retires on {retires} (in {_plural(days, 'day')}"
                f"{'; ' + origin if origin else ''}){note}; "
                "migrate before then",
            )
        elif deprecated:
            later = (
                f"; retires on {retires} (in {_plural(days, 'day')}"
                f"{'; ' + origin if origin else ''})"
                if retires is not None and days is not None
                else "; no retirement date is published yet"
            )
            add("warning", "deprecated", f"{name} is deprecated since {info.deprecated_on}{later}")

        pinned_level: Level = "error" if require_pinned else "warning"
        if info.kind == "alias":
            if info.resolves_to:
                text = f"alias {name} currently points to {info.resolves_to}"
            else:
                text = f"alias {name} can be re-pointed by the provider at any time"
            add(pinned_level, "alias", f"{text}; pin a dated snapshot")
        elif info.kind == "preview":
            add(
                pinned_level,
                "preview",
                f"preview {name} may be retired at short notice; pin a stable snapshot",
            )
        elif info.kind == "unknown" and require_pinned:
            if info.provider is None and info.surface is None:
                # No vendor publishes what this id serves: only the project can say.
                add(
                    "error",
                    "unpinned",
                    f"{name} names no known vendor (a self-hosted model?) and nothing pins it: "
                    "add a [[tool.llmregress.lifecycle]] entry (or [[lifecycle]] in "
                    f'llmregress.toml) with id = "{info.id}" and digest = "sha256:<digest of '
                    'the weights>" or version = "<a version you control>"',
                )
            else:
                add(
                    "warning",
                    "unknown-kind",
                    f"{name} is not in the lifecycle data and matches no known id pattern; "
                    "cannot confirm it is pinned",
                )
        return findings

    def describe(self) -> str:
        """One line on where the data comes from, for report headers."""
        text = f"lifecycle data as of {self.as_of}"
        if self.overrides:
            text += f" + {_plural(len(self.overrides), 'override')}"
        return text


@functools.cache
def bundled_lifecycle() -> LifecycleData:
    """The lifecycle data shipped with the package, loaded on first use and cached."""
    text = (
        resources.files("pytest_llmregress.models")
        .joinpath("lifecycle.csv")
        .read_text(encoding="utf-8")
    )
    return LifecycleData(parse_lifecycle_csv(text), as_of=LIFECYCLE_DATA_AS_OF)


def check(
    model_id: str,
    role: str | None = None,
    today: date | None = None,
    warning_days: int = DEFAULT_WARNING_DAYS,
    *,
    require_pinned: bool = False,
    surface: Surface | None = None,
    data: LifecycleData | None = None,
) -> list[LifecycleFinding]:
    """:meth:`LifecycleData.check` against ``data`` (default: the bundled data)."""
    return (data or bundled_lifecycle()).check(
        model_id,
        role,
        today,
        warning_days,
        require_pinned=require_pinned,
        surface=surface,
    )


# -- override files -----------------------------------------------------------------------


def load_overrides_file(path: Path) -> list[LifecycleOverride]:
    """Read override entries from a TOML (``[[lifecycle]]``) or JSON file.

    JSON may be ``{"lifecycle": [...]}`` or a bare list. Errors name the file and the entry.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LifecycleError(f"{path}: cannot read lifecycle overrides: {exc}") from None
    raw: object
    if path.suffix == ".toml":
        try:
            raw = tomllib.loads(text).get("lifecycle", [])
        except tomllib.TOMLDecodeError as exc:
            raise LifecycleError(f"{path}: invalid TOML: {exc}") from None
    else:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LifecycleError(f"{path}: invalid JSON: {exc}") from None
        if isinstance(raw, dict):
            raw = raw.get("lifecycle", [])
    if not isinstance(raw, list):
        raise LifecycleError(f"{path}: lifecycle: expected a list of entries")
    return [parse_override(item, f"{path}: lifecycle[{i}]") for i, item in enumerate(raw)]


def _toml_value(key: str, value: object) -> object:
    """A date key's ``YYYY-MM-DD`` as a TOML date (``""`` stays, it clears the date); any other
    value as its text."""
    if key in ("deprecated_on", "retires_on") and isinstance(value, str):
        return date.fromisoformat(value) if value else ""
    return value if isinstance(value, date) else str(value)


def dump_overrides(
    entries: Iterable[Mapping[str, object]], path: Path, *, header: str = ""
) -> None:
    """Write override entries to ``path``: TOML for ``.toml`` (``header`` as its first
    comment lines), JSON otherwise."""
    items = [dict(entry) for entry in entries]
    if path.suffix == ".toml":
        import tomli_w  # only this command writes TOML: not at the plugin's start-up

        comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
        rows = [
            {key: _toml_value(key, item[key]) for key in OVERRIDE_KEYS if item.get(key) is not None}
            for item in items
        ]
        # One [[lifecycle]] table per entry: tomli-w would inline entries that fit on a line.
        body = "\n".join(f"[[lifecycle]]\n{tomli_w.dumps(row)}" for row in rows)
        text = f"{comment}\n{body}" if comment and body else comment + body
    else:
        text = json.dumps({"lifecycle": items}, indent=2, default=str) + "\n"
    atomic_write_text(path, text)


def refresh_from_openai_models(
    base_url: str,
    api_key: str,
    *,
    today: date | None = None,
    timeout: float = 30.0,
) -> list[dict[str, str]]:
    """Override entries from an OpenAI-format ``GET {base_url}/models`` listing.

    Every model with a ``shutdown_date`` (``YYYY-MM-DD``) becomes
    ``{"id", "surface": "openai-api", "retires_on", "source"}``; models without one, or with a
    value that is not a date, are skipped. ``surface`` is given only for OpenAI's own ids: an
    OpenAI-compatible endpoint of another vendor (``gemini-2.5-flash`` from Google's) dates
    the id on its vendor's surface, where :meth:`LifecycleData.classify` looks it up. Uses the
    official ``openai`` SDK (imported here).
    """
    import openai

    today = today or date.today()
    base = base_url.rstrip("/")
    client = openai.OpenAI(base_url=base, api_key=api_key, timeout=timeout, max_retries=1)
    entries: list[dict[str, str]] = []
    try:
        for model in client.models.list():
            shutdown = getattr(model, "shutdown_date", None)
            if shutdown is None and model.model_extra:
                shutdown = model.model_extra.get("shutdown_date")
            if not isinstance(shutdown, str) or not _ISO_DATE.match(shutdown):
                continue
            try:
                date.fromisoformat(shutdown)
            except ValueError:
                continue
            entry = {"id": model.id}
            if parse_model_id(model.id).provider == "openai":
                entry["surface"] = "openai-api"
            entry["retires_on"] = shutdown
            entry["source"] = f"GET {base}/models shutdown_date (fetched {today})"
            entries.append(entry)
    finally:
        client.close()
    entries.sort(key=lambda item: item["id"])
    return entries
