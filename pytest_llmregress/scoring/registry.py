"""Scorers by name: the built-in ones and a team's own, in one registry, registered one way.

A golden case names its scorers (``scorers: [exact, {regex: '^\\d+$'}]``). Each name is a
:class:`Scorer` of a :class:`ScorerRegistry`: an options parser (run when the golden file
loads, so a bad option is a collection error naming ``file:line: field 'scorers[0]'``), a score
function ``(options, output, case) -> Score``, and whether it compares the output with the
case's reference. The built-in scorers (``pytest_llmregress.scoring.scorers``) register through
:meth:`ScorerRegistry.register`, the same call a team uses in its
``pytest_llmregress_register_scorers(registry)`` hook (``pytest_llmregress/hookspecs.py``).

Where scorers run: the built-ins and the judge run in the runner process, which cannot see a
team's code (``conftest.py``, its plugin). A team's scorer is marked on its spec
(:attr:`ScorerSpec.in_pytest`): the runner passes it through unscored, and the pytest process
that holds the case scores it when the result arrives (``pytest_llmregress.scoring.finish``).

Collection validates against the *active* registry (:func:`active_scorers`): the session's,
once the session has made one (:func:`activate_scorers`), else the built-ins.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from pytest_llmregress.core.validation import describe, did_you_mean, jsonable_problem, plain
from pytest_llmregress.scoring.score import RECORD_SCORER, Score

if TYPE_CHECKING:
    from pytest_llmregress.cases.golden import GoldenCase

__all__ = [
    "NeedsReference",
    "OptionReader",
    "OptionsParser",
    "ScoreFunction",
    "Scorer",
    "ScorerRegistry",
    "ScorerSpec",
    "activate_scorers",
    "active_scorers",
    "builtin_scorers",
]

ScoreFunction: TypeAlias = "Callable[[Mapping[str, Any], str, GoldenCase], Score]"
"""``(options, output, case) -> Score``: a scorer's verdict on one output of one case.

Raises :class:`~pytest_llmregress.scoring.score.ScorerError` when no verdict is possible (the
case becomes an ``error`` outcome, never a silent 0)."""

OptionsParser: TypeAlias = Callable[[object], Mapping[str, Any]]
"""``(raw) -> options``: a scorer's options as written in the golden file (None when the spec
is a bare name) to the validated, normalized options; raises :class:`ValueError`."""

NeedsReference: TypeAlias = bool | Callable[[Mapping[str, Any]], bool]
"""Whether a scorer compares the output with the case's reference: always, never, or
depending on its options (``exact`` does unless it has its own ``value``)."""

_SPEC_SHAPE: Final = "expected a scorer name or a one-key mapping {name: options}"


@dataclass(frozen=True)
class ScorerSpec:
    """Which scorer judges a case's output, and with which options.

    ``options`` is normalized by the scorer's options parser (:meth:`ScorerRegistry.parse_spec`:
    shorthands expanded, lists turned into tuples) and read-only.
    """

    name: str
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    in_pytest: bool = field(default=False, kw_only=True)
    """A team's scorer: scored by the pytest process that holds the case, when its result
    arrives; the runner process passes it through unscored."""
    uses_reference: bool | None = field(default=None, kw_only=True)
    """Of an :attr:`in_pytest` scorer, whether it compares the output with the reference (the
    runner process cannot ask the team's registry); None for a built-in scorer."""

    def __post_init__(self) -> None:
        if not isinstance(self.options, MappingProxyType):
            object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    def __hash__(self) -> int:
        return hash(self.name)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able ``{"name": ..., "options": {...}}`` (and, of a team's scorer, where it
        is scored and whether it uses the reference)."""
        data: dict[str, Any] = {"name": self.name, "options": plain(self.options)}
        if self.in_pytest:
            data["in_pytest"] = True
            data["uses_reference"] = bool(self.uses_reference)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScorerSpec:
        """The spec ``to_dict`` wrote. A built-in scorer's options are parsed again (the
        runner process rebuilds them); a team's are taken as they are, already validated."""
        if data.get("in_pytest"):
            return cls(
                data["name"],
                data["options"],
                in_pytest=True,
                uses_reference=bool(data["uses_reference"]),
            )
        return builtin_scorers().parse_spec({data["name"]: data["options"]})


@dataclass(frozen=True)
class Scorer:
    """One registered scorer: its name, how its options are read, how it scores."""

    name: str
    score: ScoreFunction
    parse_options: OptionsParser
    needs_reference: NeedsReference = False

    def uses_reference(self, options: Mapping[str, Any]) -> bool:
        """Whether this scorer, with these options, compares the output with the reference."""
        if callable(self.needs_reference):
            return bool(self.needs_reference(options))
        return self.needs_reference


class OptionReader:
    """Reads a scorer's options mapping, raising :class:`ValueError` on anything wrong.

    The messages name the scorer and the option (``scorer 'iban': option 'country': expected
    a string, got integer 3``); a golden file shows them at the spec's ``file:line`` and field.
    """

    def __init__(self, scorer: str, raw: object, allowed: Sequence[str]) -> None:
        self.scorer = scorer
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ValueError(
                f"scorer {scorer!r}: expected a mapping of options, got {describe(raw)}"
            )
        for key in raw:
            if key not in allowed:
                if not allowed:
                    raise ValueError(f"scorer {scorer!r}: unknown option {key!r} (it has none)")
                hint = did_you_mean(key, allowed) if isinstance(key, str) else ""
                raise ValueError(
                    f"scorer {scorer!r}: unknown option {key!r} "
                    f"(expected one of: {', '.join(allowed)}){hint}"
                )
        self.raw: Mapping[str, Any] = raw

    def error(self, option: str, message: str) -> ValueError:
        """``scorer 'name': option 'option': message``, to raise."""
        return ValueError(f"scorer {self.scorer!r}: option {option!r}: {message}")

    def flag(self, option: str, into: dict[str, Any]) -> None:
        """Copy a true/false option into ``into``, if given."""
        if option in self.raw:
            value = self.raw[option]
            if not isinstance(value, bool):
                raise self.error(option, f"expected true or false, got {describe(value)}")
            into[option] = value

    def threshold(self, into: dict[str, Any]) -> None:
        """Copy a ``threshold`` option (a number in 0..1, as a float) into ``into``, if given."""
        if "threshold" in self.raw:
            value = self.raw["threshold"]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self.error(
                    "threshold", f"expected a number between 0 and 1, got {describe(value)}"
                )
            if not 0.0 <= value <= 1.0:
                raise self.error("threshold", f"expected a number between 0 and 1, got {value!r}")
            into["threshold"] = float(value)


def _options_named(scorer: str, allowed: tuple[str, ...]) -> OptionsParser:
    """The parser of ``register(..., options=("a", "b"))``: those keys, any JSON values."""

    def parse(raw: object) -> Mapping[str, Any]:
        return dict(OptionReader(scorer, raw, allowed).raw)

    return parse


class ScorerRegistry:
    """Scorers by name. Each name is registered once; the built-ins come first.

    A session's registry is :meth:`with_builtins`, then what the team's
    ``pytest_llmregress_register_scorers`` hooks add::

        @registry.register("iban", options=("country",))
        def iban(options, output, case):
            ...
            return Score("iban", 1.0 if ok else 0.0, ok, reason, threshold=1.0)
    """

    def __init__(self) -> None:
        self._scorers: dict[str, Scorer] = {}
        self._frozen = False

    @classmethod
    def with_builtins(cls) -> ScorerRegistry:
        """A new registry holding the built-in scorers, open for a team's own."""
        from pytest_llmregress.scoring.scorers import register_builtins

        registry = cls()
        register_builtins(registry)
        return registry

    def register(
        self,
        name: str,
        *,
        options: Sequence[str] | OptionsParser = (),
        needs_reference: NeedsReference = False,
    ) -> Callable[[ScoreFunction], ScoreFunction]:
        """Register the decorated function as the scorer ``name``; returns it unchanged.

        ``options``: the option names the scorer accepts (any JSON values; a golden file
        giving another name is refused with a did-you-mean), or a parser of the raw options
        (see :data:`OptionsParser`; :class:`OptionReader` writes its messages). The parsed
        options of a team's scorer must be JSON values: they travel with the case.
        ``needs_reference``: whether the scorer compares the output with the case's reference
        (such a scorer is left out while that reference is being recorded), or a function of
        the options that says so.
        """
        self._check_name(name)
        if callable(options):
            parse: OptionsParser = options
        elif isinstance(options, str) or not all(isinstance(o, str) for o in options):
            raise TypeError(
                f"scorer {name!r}: options must be a list of option names or a parser "
                f"function, got {describe(options)}"
            )
        else:
            parse = _options_named(name, tuple(options))

        def add(score: ScoreFunction) -> ScoreFunction:
            if not callable(score):
                raise TypeError(
                    f"scorer {name!r}: register(...) decorates the score function "
                    f"(options, output, case) -> Score, got {describe(score)}"
                )
            self._check_name(name)
            self._scorers[name] = Scorer(name, score, parse, needs_reference)
            return score

        return add

    def _check_name(self, name: object) -> None:
        if self._frozen:
            raise RuntimeError(
                "the built-in scorer registry is read-only: register a scorer in the "
                "pytest_llmregress_register_scorers(registry) hook"
            )
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise ValueError(f"a scorer name must be a non-empty word, got {describe(name)}")
        if name == RECORD_SCORER:
            raise ValueError(
                f"scorer name {name!r} is reserved (it marks a recorded reference); "
                "choose another name"
            )
        existing = self._scorers.get(name)
        if existing is not None:
            raise ValueError(
                f"scorer {name!r} is already registered (by {_origin(existing.score)}); "
                "each name is registered once: choose another name"
            )

    def freeze(self) -> None:
        """Refuse any further registration (the shared built-in registry)."""
        self._frozen = True

    def __contains__(self, name: object) -> bool:
        return name in self._scorers

    def __iter__(self) -> Iterator[Scorer]:
        return iter(self._scorers.values())

    def __len__(self) -> int:
        return len(self._scorers)

    @property
    def names(self) -> tuple[str, ...]:
        """Every registered name, in the order they were registered (the built-ins first)."""
        return tuple(self._scorers)

    def get(self, name: str) -> Scorer:
        """The scorer ``name``; :class:`ValueError` naming the known ones otherwise."""
        scorer = self._scorers.get(name)
        if scorer is None:
            raise ValueError(
                f"unknown scorer {name!r} (expected one of: {', '.join(self._scorers)})"
                + did_you_mean(name, self._scorers)
            )
        return scorer

    def parse_spec(self, raw: object) -> ScorerSpec:
        """Turn a scorer spec from a golden file into a validated, normalized ScorerSpec.

        ``raw`` is a bare name (``"exact"``) or a one-key mapping ``{name: options}``
        (``{name: null}`` means no options); the scorer's options parser expands its
        shorthands (``{"contains": "x"}`` is ``{"values": ("x",)}``). Raises
        :class:`ValueError` with a message fit for users.
        """
        options: object = None
        if isinstance(raw, str):
            name = raw
        elif isinstance(raw, Mapping):
            if len(raw) != 1:
                keys = ", ".join(repr(k) for k in raw) or "none"
                raise ValueError(f"{_SPEC_SHAPE}, got a mapping with keys: {keys}")
            ((name, options),) = raw.items()
            if not isinstance(name, str):
                raise ValueError(f"expected a scorer name as the key, got {describe(name)}")
        else:
            raise ValueError(f"{_SPEC_SHAPE}, got {describe(raw)}")
        scorer = self.get(name)
        parsed = _parse_options(scorer, options)
        if name in builtin_scorers():
            return ScorerSpec(name, MappingProxyType(dict(parsed)))
        problem = jsonable_problem(parsed, "options")
        if problem:
            raise ValueError(
                f"scorer {name!r}: its options parser returned {problem[0]}: {problem[1]} "
                "(options travel with the case, as JSON)"
            )
        return ScorerSpec(
            name, parsed, in_pytest=True, uses_reference=scorer.uses_reference(parsed)
        )

    def needs_reference(self, spec: ScorerSpec) -> bool:
        """Whether ``spec``'s scorer compares the output with the case's reference.

        A team's spec says so itself; a name this registry does not know uses none.
        """
        if spec.uses_reference is not None:
            return spec.uses_reference
        scorer = self._scorers.get(spec.name)
        return scorer is not None and scorer.uses_reference(spec.options)

    def score(self, spec: ScorerSpec, output: str, case: GoldenCase) -> Score:
        """Score ``output`` for ``case`` with ``spec``'s scorer, as it returns or raises."""
        scorer = self._scorers.get(spec.name)
        if scorer is None:
            raise ValueError(f"unknown scorer {spec.name!r}")
        return scorer.score(spec.options, output, case)


def _parse_options(scorer: Scorer, raw: object) -> Mapping[str, Any]:
    """``scorer``'s parser on ``raw``; whatever goes wrong is a ValueError naming the scorer."""
    prefix = f"scorer {scorer.name!r}"
    try:
        parsed = scorer.parse_options(raw)
    except ValueError as exc:
        message = str(exc)
        raise ValueError(
            message if message.startswith(prefix) else f"{prefix}: {message}"
        ) from None
    except Exception as exc:  # a bug in a team's parser: shown at the spec, not a crash
        raise ValueError(
            f"{prefix}: its options parser raised {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(parsed, Mapping):
        raise ValueError(
            f"{prefix}: its options parser returned {describe(parsed)}, expected a mapping"
        )
    return parsed


def _origin(function: object) -> str:
    module = getattr(function, "__module__", None) or "?"
    if module == "pytest_llmregress.scoring.scorers":
        return "pytest-llmregress: a built-in scorer"
    return f"{module}.{getattr(function, '__qualname__', repr(function))}"


@functools.cache
def builtin_scorers() -> ScorerRegistry:
    """The built-in scorers alone, read-only: what the runner process scores."""
    registry = ScorerRegistry.with_builtins()
    registry.freeze()
    return registry


_active: list[ScorerRegistry] = []


def active_scorers() -> ScorerRegistry:
    """The registry golden files are validated against: the session's, else the built-ins."""
    return _active[-1] if _active else builtin_scorers()


def activate_scorers(registry: ScorerRegistry) -> Callable[[], None]:
    """Make ``registry`` the active one (a session's, at configure); returns the undo.

    Activations nest (pytester runs pytest inside pytest); undoing one removes just it.
    """
    _active.append(registry)

    def undo() -> None:
        for i in range(len(_active) - 1, -1, -1):
            if _active[i] is registry:
                del _active[i]
                break

    return undo
