"""The built-in scorers, registered like a team's own (:mod:`pytest_llmregress.scoring.registry`).

A golden case lists the scorers that decide whether a model's output is still good enough. All
but ``judge`` (the LLM judge, scored by the runner with a model call) are pure functions of the
output and the case:

``exact``
    the stripped output equals the stripped reference (or the ``value`` option).
``contains``
    every given value occurs in the output; the score is the share found.
``regex``
    a regular expression matches somewhere in the stripped output.
``json``
    the output (optionally wrapped in one markdown code fence) is JSON, optionally valid against
    a JSON Schema and holding given top-level fields.
``similarity``
    normalized Levenshtein similarity of the stripped output to the stripped reference.

Specs are validated when the golden file loads (:func:`parse_scorer_spec`), so a bad regex or a
misspelled option fails collection instead of a test run.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from pytest_llmregress.core.validation import describe, jsonable_problem
from pytest_llmregress.scoring.registry import (
    OptionReader,
    ScorerRegistry,
    ScorerSpec,
    active_scorers,
    builtin_scorers,
)
from pytest_llmregress.scoring.score import Score, ScorerError

if TYPE_CHECKING:
    from pytest_llmregress.cases.golden import GoldenCase

__all__ = [
    "ALL_OR_NOTHING",
    "REGEX_FLAGS",
    "SCORER_NAMES",
    "SCORER_OPTIONS",
    "levenshtein",
    "needs_reference",
    "parse_scorer_spec",
    "register_builtins",
    "score_deterministic",
    "similarity",
]

SCORER_NAMES: Final = ("judge", "exact", "contains", "regex", "json", "similarity")
"""Every built-in scorer, in the order they are registered."""

SCORER_OPTIONS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "judge": ("threshold",),
        "exact": ("value", "ignore_case", "normalize_whitespace"),
        "contains": ("values", "ignore_case"),
        "regex": ("pattern", "flags"),
        "json": ("schema", "fields"),
        "similarity": ("threshold",),
    }
)
"""The options each built-in scorer accepts in its mapping form."""

REGEX_FLAGS: Final[Mapping[str, re.RegexFlag]] = MappingProxyType(
    {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}
)
"""Letters allowed in the ``regex`` scorer's ``flags`` option."""

ALL_OR_NOTHING: Final = 1.0
"""The threshold of ``exact``, ``contains``, ``regex`` and ``json``: they pass only at 1.0."""

_JSONSCHEMA_HINT: Final = "pip install jsonschema"
_MAX_LISTED: Final = 3


# --------------------------------------------------------------------------------------------
# Specs, through the registry
# --------------------------------------------------------------------------------------------


def parse_scorer_spec(raw: object) -> ScorerSpec:
    """Turn a scorer spec from a golden file into a validated, normalized :class:`ScorerSpec`,
    against the active registry (:func:`~pytest_llmregress.scoring.registry.active_scorers`:
    the session's, with the team's scorers, else the built-ins).

    ``raw`` is a bare name (``"exact"``) or a one-key mapping ``{name: options}``. Shorthands are
    expanded: ``{"contains": "x"}`` becomes options ``{"values": ("x",)}``, ``{"regex": "p"}``
    becomes ``{"pattern": "p"}``, ``{"exact": "v"}`` becomes ``{"value": "v"}``, and
    ``{name: null}`` means no options. Raises :class:`ValueError` with a message fit for users.
    """
    return active_scorers().parse_spec(raw)


def score_deterministic(spec: ScorerSpec, output: str, case: GoldenCase) -> Score:
    """Score ``output`` for ``case`` with the built-in scorer ``spec`` (anything but judge).

    Raises :class:`ScorerError` when no verdict is possible (no reference to compare with, a
    schema but no ``jsonschema`` installed), and :class:`ValueError` for ``judge`` or a name
    that is not built in.
    """
    return builtin_scorers().score(spec, output, case)


def needs_reference(spec: ScorerSpec) -> bool:
    """Whether the scorer compares the output with the case's reference.

    ``judge`` and ``similarity`` do, and ``exact`` unless it has its own ``value``; the
    others carry what they expect in their options; a team's scorer says so when it
    registers. A case none of whose scorers needs its reference has nothing to record.
    """
    return builtin_scorers().needs_reference(spec)


def register_builtins(registry: ScorerRegistry) -> None:
    """Register the built-in scorers, in :data:`SCORER_NAMES` order."""
    registry.register("judge", options=_parse_threshold_only("judge"), needs_reference=True)(
        _not_deterministic
    )
    registry.register("exact", options=_parse_exact, needs_reference=_exact_needs_reference)(
        _score_exact
    )
    registry.register("contains", options=_parse_contains)(_score_contains)
    registry.register("regex", options=_parse_regex)(_score_regex)
    registry.register("json", options=_parse_json)(_score_json)
    registry.register(
        "similarity", options=_parse_threshold_only("similarity"), needs_reference=True
    )(_score_similarity)


def _not_deterministic(options: Mapping[str, Any], output: str, case: GoldenCase) -> Score:
    raise ValueError("the 'judge' scorer is not deterministic; score it with the judge")


def _exact_needs_reference(options: Mapping[str, Any]) -> bool:
    return "value" not in options


# --------------------------------------------------------------------------------------------
# Parsing options
# --------------------------------------------------------------------------------------------


def _reader(scorer: str, raw: object) -> OptionReader:
    return OptionReader(scorer, raw, SCORER_OPTIONS[scorer])


def _parse_threshold_only(scorer: str) -> Callable[[object], dict[str, Any]]:
    def parse(raw: object) -> dict[str, Any]:
        options: dict[str, Any] = {}
        _reader(scorer, raw).threshold(options)
        return options

    return parse


def _parse_exact(raw: object) -> dict[str, Any]:
    if isinstance(raw, str):
        raw = {"value": raw}
    reader = _reader("exact", raw)
    options: dict[str, Any] = {}
    if "value" in reader.raw:
        value = reader.raw["value"]
        if not isinstance(value, str):
            raise reader.error("value", f"expected a string, got {describe(value)}")
        options["value"] = value
    reader.flag("ignore_case", options)
    reader.flag("normalize_whitespace", options)
    return options


def _parse_contains(raw: object) -> dict[str, Any]:
    if raw is None:
        raise ValueError(
            "scorer 'contains' needs the text to look for, like {contains: 'refund'} "
            "or {contains: ['refund', '30 days']}"
        )
    if isinstance(raw, str | list):
        raw = {"values": raw}
    reader = _reader("contains", raw)
    if "values" not in reader.raw:
        raise reader.error("values", "missing; give the text to look for")
    values = reader.raw["values"]
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list) or not values:
        raise reader.error(
            "values", f"expected a string or a non-empty list of strings, got {describe(values)}"
        )
    for i, value in enumerate(values):
        if not isinstance(value, str) or not value:
            raise reader.error(
                "values", f"item {i}: expected a non-empty string, got {describe(value)}"
            )
    options: dict[str, Any] = {"values": tuple(values)}
    reader.flag("ignore_case", options)
    return options


def _parse_regex(raw: object) -> dict[str, Any]:
    if raw is None:
        raise ValueError("scorer 'regex' needs a pattern, like {regex: '^\\d+$'}")
    if isinstance(raw, str):
        raw = {"pattern": raw}
    reader = _reader("regex", raw)
    if "pattern" not in reader.raw:
        raise reader.error("pattern", "missing; give the regular expression to search for")
    pattern = reader.raw["pattern"]
    if not isinstance(pattern, str) or not pattern:
        raise reader.error("pattern", f"expected a non-empty string, got {describe(pattern)}")
    options: dict[str, Any] = {"pattern": pattern}
    flags = reader.raw.get("flags", "")
    if not isinstance(flags, str):
        raise reader.error(
            "flags", f"expected a string of letters from 'imsx', got {describe(flags)}"
        )
    bad = sorted(set(flags) - set(REGEX_FLAGS))
    if bad:
        raise reader.error(
            "flags", f"unknown flag {', '.join(map(repr, bad))} (expected letters from 'imsx')"
        )
    if "flags" in reader.raw:
        options["flags"] = flags
    try:
        re.compile(pattern, _regex_flags(flags))
    except re.error as exc:
        raise reader.error("pattern", f"invalid regular expression: {exc}") from None
    return options


def _regex_flags(letters: str) -> re.RegexFlag:
    flags = re.RegexFlag(0)
    for letter in letters:
        flags |= REGEX_FLAGS[letter]
    return flags


def _parse_json(raw: object) -> dict[str, Any]:
    reader = _reader("json", raw)
    options: dict[str, Any] = {}
    if "schema" in reader.raw:
        schema = reader.raw["schema"]
        if not isinstance(schema, Mapping):
            raise reader.error(
                "schema", f"expected a mapping (a JSON Schema), got {describe(schema)}"
            )
        problem = jsonable_problem(schema, "schema")
        if problem:
            raise reader.error(problem[0], problem[1])
        schema_error = _schema_error(dict(schema))
        if schema_error:
            raise reader.error("schema", f"invalid JSON Schema: {schema_error}")
        options["schema"] = dict(schema)
    if "fields" in reader.raw:
        fields = reader.raw["fields"]
        if not isinstance(fields, Mapping) or not fields:
            raise reader.error(
                "fields", f"expected a non-empty mapping of key: value, got {describe(fields)}"
            )
        problem = jsonable_problem(fields, "fields")
        if problem:
            raise reader.error(problem[0], problem[1])
        options["fields"] = dict(fields)
    return options


def _schema_error(schema: dict[str, Any]) -> str | None:
    """Why ``schema`` is not a valid JSON Schema, or None (also when jsonschema is missing)."""
    try:
        import jsonschema
    except ImportError:  # checked again, with an install hint, when the case is scored
        return None
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = _json_path(exc.absolute_path)
        return f"{where}: {_clip(exc.message)}" if where != "$" else _clip(exc.message)
    return None


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _quote(text: str, limit: int = 40) -> str:
    return repr(_clip(text, limit))


def _listed(items: list[str], sep: str = ", ") -> str:
    shown = sep.join(items[:_MAX_LISTED])
    return shown if len(items) <= _MAX_LISTED else f"{shown} (+{len(items) - _MAX_LISTED} more)"


def _all_or_nothing(scorer: str, value: float, reason: str) -> Score:
    """The score of a scorer that passes only at 1.0 (:data:`ALL_OR_NOTHING`)."""
    return Score(scorer, value, value >= ALL_OR_NOTHING, reason, threshold=ALL_OR_NOTHING)


def _need_reference(scorer: str, case: GoldenCase, alternative: str) -> str:
    if case.reference is None:
        raise ScorerError(
            f"scorer {scorer!r} needs a reference, but case {case.id!r} has none; {alternative}"
        )
    return case.reference


def _score_exact(options: Mapping[str, Any], output: str, case: GoldenCase) -> Score:
    if "value" in options:
        expected, what = options["value"], "the expected value"
    else:
        expected = _need_reference(
            "exact", case, "record one, or give the expected text as the 'value' option"
        )
        what = "the reference"

    def normalize(text: str) -> str:
        text = text.strip()
        if options.get("normalize_whitespace"):
            text = " ".join(text.split())
        if options.get("ignore_case"):
            text = text.casefold()
        return text

    want, got = normalize(expected), normalize(output)
    if want == got:
        return _all_or_nothing("exact", 1.0, f"output equals {what}")
    at = next((i for i, (a, b) in enumerate(zip(want, got, strict=False)) if a != b), None)
    if at is None:
        at = min(len(want), len(got))
    start = max(0, at - 10)
    reason = (
        f"output differs from {what} at character {at + 1}: "
        f"expected {_quote(want[start : start + 30])}, got {_quote(got[start : start + 30])}"
    )
    return _all_or_nothing("exact", 0.0, reason)


def _score_contains(options: Mapping[str, Any], output: str, case: GoldenCase) -> Score:
    values: tuple[str, ...] = options["values"]
    haystack = output.casefold() if options.get("ignore_case") else output
    missing = [
        value
        for value in values
        if (value.casefold() if options.get("ignore_case") else value) not in haystack
    ]
    found = len(values) - len(missing)
    value = found / len(values)
    if not missing:
        reason = f"found {_quote(values[0])}" if len(values) == 1 else f"found all {len(values)}"
        return _all_or_nothing("contains", 1.0, reason)
    reason = f"missing {len(missing)} of {len(values)}: {_listed([_quote(m) for m in missing])}"
    return _all_or_nothing("contains", value, reason)


def _score_regex(options: Mapping[str, Any], output: str, case: GoldenCase) -> Score:
    pattern: str = options["pattern"]
    match = re.search(pattern, output.strip(), _regex_flags(options.get("flags", "")))
    if match is None:
        return _all_or_nothing("regex", 0.0, f"no match for /{_clip(pattern, 40)}/")
    return _all_or_nothing(
        "regex", 1.0, f"matched {_quote(match.group(0))} at character {match.start() + 1}"
    )


_FENCE: Final = re.compile(r"\A```[ \t]*[\w+.-]*[ \t]*\n(.*?)\n?[ \t]*```\Z", re.DOTALL)


def _strip_fence(text: str) -> str:
    """``text`` without one surrounding markdown code fence (```` ```json ... ``` ````)."""
    text = text.strip()
    match = _FENCE.match(text)
    return match.group(1) if match else text


def _json_path(path: Any) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _json_equal(a: object, b: object) -> bool:
    """Equality of JSON values: unlike ``==``, ``true`` is not ``1``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _json_text(value: object) -> str:
    return _clip(json.dumps(value, ensure_ascii=False), 30)


def _score_json(options: Mapping[str, Any], output: str, case: GoldenCase) -> Score:
    schema: dict[str, Any] | None = options.get("schema")
    if schema is not None:
        try:
            import jsonschema
        except ImportError:
            raise ScorerError(
                f"scorer 'json' of case {case.id!r} has a schema, but jsonschema is not "
                f"installed: {_JSONSCHEMA_HINT}"
            ) from None
    text = _strip_fence(output)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return _all_or_nothing("json", 0.0, f"output is not valid JSON: {exc}")
    except RecursionError:
        return _all_or_nothing("json", 0.0, "output is not valid JSON: nested too deeply")
    if isinstance(data, float) and not math.isfinite(data):
        return _all_or_nothing("json", 0.0, f"output is not valid JSON: {text!r} is not a number")

    issues: list[str] = []
    if schema is not None:
        validator = jsonschema.validators.validator_for(schema)(schema)
        errors = sorted(validator.iter_errors(data), key=lambda e: _json_path(e.absolute_path))
        issues += [f"schema: {_json_path(e.absolute_path)}: {_clip(e.message)}" for e in errors]
    fields: dict[str, Any] | None = options.get("fields")
    if fields is not None:
        if not isinstance(data, dict):
            issues.append(f"expected a JSON object with fields, got {_json_text(data)}")
        else:
            for key, want in fields.items():
                if key not in data:
                    issues.append(f"missing field {key!r}")
                elif not _json_equal(data[key], want):
                    issues.append(
                        f"field {key!r} is {_json_text(data[key])}, expected {_json_text(want)}"
                    )
    if issues:
        return _all_or_nothing("json", 0.0, _listed(issues, "; "))
    checks = ["valid JSON"]
    if schema is not None:
        checks.append("matches the schema")
    if fields is not None:
        checks.append(f"has the {len(fields)} expected field(s)")
    return _all_or_nothing("json", 1.0, ", ".join(checks))


def _score_similarity(options: Mapping[str, Any], output: str, case: GoldenCase) -> Score:
    reference = _need_reference("similarity", case, "record one first").strip()
    got = output.strip()
    threshold: float = options.get("threshold", case.threshold)
    longest = max(len(reference), len(got))
    distance = levenshtein(reference, got)
    value = 1.0 if longest == 0 else 1.0 - distance / longest
    passed = value >= threshold
    reason = (
        f"similarity {value:.3f} to the reference ({distance} edit(s) over {longest} "
        f"characters) {'>=' if passed else '<'} threshold {threshold:g}"
    )
    return Score("similarity", value, passed, reason, threshold=threshold)


# --------------------------------------------------------------------------------------------
# Edit distance
# --------------------------------------------------------------------------------------------


def similarity(a: str, b: str) -> float:
    """``1 - levenshtein(a, b) / max(len(a), len(b))``: 1.0 for equal (also empty) strings."""
    longest = max(len(a), len(b))
    return 1.0 if longest == 0 else 1.0 - levenshtein(a, b) / longest


def levenshtein(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions) of ``a`` and ``b``.

    Uses the bit-parallel algorithm of Myers (1999) in Hyyrö's formulation for edit distance,
    with Python ints as bit vectors: O(len(a) * len(b) / wordsize).
    """
    if a == b:
        return 0
    # Common prefix and suffix never change the distance.
    prefix = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        prefix += 1
    a, b = a[prefix:], b[prefix:]
    suffix = 0
    for x, y in zip(reversed(a), reversed(b), strict=False):
        if x != y:
            break
        suffix += 1
    if suffix:
        a, b = a[:-suffix], b[:-suffix]
    if len(a) > len(b):
        a, b = b, a
    # b, the longer string, is the pattern (one bit per character); a is scanned character by
    # character. Few iterations on wide ints beat many on narrow ones in Python.
    m = len(b)
    if m == 0:
        return len(a)
    peq: dict[str, int] = {}
    for i, char in enumerate(b):
        peq[char] = peq.get(char, 0) | (1 << i)
    mask = (1 << m) - 1
    high = 1 << (m - 1)
    pv, mv, score = mask, 0, m
    for char in a:
        eq = peq.get(char, 0)
        xv = eq | mv
        xh = (((eq & pv) + pv) ^ pv) | eq
        ph = mv | (~(xh | pv) & mask)
        mh = pv & xh
        if ph & high:
            score += 1
        elif mh & high:
            score -= 1
        ph = ((ph << 1) | 1) & mask
        mh = (mh << 1) & mask
        pv = mh | (~(xv | ph) & mask)
        mv = ph & xv
    return score
