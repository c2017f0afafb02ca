"""The golden-file format as JSON Schema (draft 2020-12), for editors (``llmregress schema``).

Built from the facts the validator (:mod:`pytest_llmregress.cases.golden`) checks with: the
field names (``CASE_FIELDS``, ``DEFAULTS_FIELDS``), the request parameters and their ranges
(``PARAM_RULES``), the message roles and keys, the id, tag, task and variable patterns, the
reserved tags, the built-in scorers and their options. Only the help texts are written here.
``tests/test_schema.py`` checks that the schema and :func:`load_cases` agree on the example
files and on invalid cases.

The schema cannot say everything the loader checks: that ids are unique, that the last message
is from the user, that a regular expression compiles. Editors flag what it can say as people
type; ``pytest --collect-only`` says the rest, with file, line and field.
"""

from __future__ import annotations

from typing import Any, Final

from pytest_llmregress.cases.golden import (
    _ID_RE,
    _RESERVED_TAGS,
    _TAG_KEYWORDS,
    _TAG_RE,
    _TASK_RE,
    _VAR_RE,
    CASE_FIELDS,
    DEFAULT_THRESHOLD,
    DEFAULTS_FIELDS,
    MAX_ID_LENGTH,
    MESSAGE_KEYS,
    MESSAGE_ROLES,
    PARAM_RULES,
    PROMPT_KEYS,
    RUBRIC_KEYS,
    YAML_SECTIONS,
    ParamRule,
)
from pytest_llmregress.scoring.judge import CRITERION_NAME_RE, MAX_CRITERIA

__all__ = ["DIALECT", "case_schema", "golden_file_schema"]

DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"

# Help shown by editors: one sentence or two per field, from docs/golden-files.md.
_HELP: Final[dict[str, tuple[str, str]]] = {
    "id": (
        "Case id",
        "Names the case in reports and in the pytest node id; unique in the file, at most "
        f"{MAX_ID_LENGTH} characters of letters, digits, '.', '_' and '-'.",
    ),
    "system": (
        "System prompt",
        "The system prompt sent with the conversation, as literal text. Set 'system' or "
        "'prompt', not both.",
    ),
    "prompt": (
        "Prompt task",
        "The system prompt by reference to a task of the prompt files: a task name, or "
        "{task, vars}. Set 'system' or 'prompt', not both.",
    ),
    "user": (
        "User message",
        "A one-turn conversation (shorthand for messages: [{role: user, content: ...}]). A case "
        "has exactly one of 'user' and 'messages'.",
    ),
    "messages": (
        "Conversation",
        "A multi-turn conversation: {role, content} mappings, role 'user' or 'assistant', the "
        "last one from the user. A case has exactly one of 'user' and 'messages'.",
    ),
    "reference": (
        "Reference answer",
        "The recorded good answer, which the judge, exact and similarity scorers compare with.",
    ),
    "threshold": (
        "Pass mark",
        f"The case's pass mark from 0 to 1 (default {DEFAULT_THRESHOLD}), for the judge and "
        "similarity scorers unless the scorer sets its own.",
    ),
    "scorers": (
        "Scorers",
        "The checks the answer must pass, all of them: a scorer name, or {name: options}. "
        "Default: [judge].",
    ),
    "rubric": (
        "Rubric",
        "What the judge scores for this case instead of accuracy, completeness and format: a "
        "sentence (one criterion named 'rubric'), or a list of {name, description, weight} "
        "criteria. The judge's score is the weighted mean.",
    ),
    "tags": (
        "Tags",
        "Strings that become pytest markers (pytest -m ...): a letter or '_', then letters, "
        "digits, '_' and '-'.",
    ),
    "params": (
        "Request parameters",
        "Parameters of the model call: " + ", ".join(PARAM_RULES) + ".",
    ),
    "metadata": (
        "Metadata",
        "Free-form data carried into reports: a mapping with string keys and JSON values.",
    ),
}

# Shorthand options of the built-in scorers ({contains: refund}), as their parsers accept them.
_NON_EMPTY_STRING: Final = {"type": "string", "minLength": 1}
_SHORTHAND: Final[dict[str, dict[str, Any]]] = {
    "exact": {"type": "string"},
    "contains": {
        "anyOf": [_NON_EMPTY_STRING, {"type": "array", "items": _NON_EMPTY_STRING}],
    },
    "regex": {"type": "string"},
}


def _anchored(pattern: str) -> str:
    return f"^(?:{pattern})$"


def _param_schema(name: str, rule: ParamRule) -> dict[str, Any]:
    if rule.kind == "stop":
        return {
            "anyOf": [
                _NON_EMPTY_STRING,
                {"type": "array", "minItems": 1, "items": _NON_EMPTY_STRING},
            ],
            "description": "Stop sequences: a non-empty string or a non-empty list of them.",
        }
    schema: dict[str, Any] = {"type": rule.kind}
    if rule.minimum is not None:
        schema["minimum"] = rule.minimum
    if rule.maximum is not None:
        schema["maximum"] = rule.maximum
    return schema


def _scorer_schema() -> dict[str, Any]:
    from pytest_llmregress.scoring.scorers import SCORER_NAMES, SCORER_OPTIONS

    options: dict[str, Any] = {}
    for name in SCORER_NAMES:
        mapping = {
            "type": "object",
            "properties": {option: {} for option in SCORER_OPTIONS[name]},
            "additionalProperties": False,
        }
        forms: list[dict[str, Any]] = [{"type": "null"}, mapping]
        if name in _SHORTHAND:
            forms.append(_SHORTHAND[name])
        options[name] = {"anyOf": forms}
    return {
        "description": "A built-in scorer ("
        + ", ".join(SCORER_NAMES)
        + ") or a scorer registered by the project, by name or as {name: options}.",
        "anyOf": [
            {"type": "string", "enum": list(SCORER_NAMES)},
            {"type": "string", "minLength": 1},
            {
                "type": "object",
                "minProperties": 1,
                "maxProperties": 1,
                "properties": options,
            },
        ],
    }


def _field_schemas() -> dict[str, dict[str, Any]]:
    non_blank = {"type": "string", "pattern": r"\S"}
    task_name = {"type": "string", "pattern": _anchored(_TASK_RE.pattern)}
    fields: dict[str, dict[str, Any]] = {
        "id": {
            "type": "string",
            "pattern": _anchored(_ID_RE.pattern),
            "maxLength": MAX_ID_LENGTH,
        },
        "system": {"type": ["string", "null"]},
        "prompt": {
            "anyOf": [
                {"type": "null"},
                task_name,
                {
                    "type": "object",
                    "required": ["task"],
                    "additionalProperties": False,
                    "properties": {
                        PROMPT_KEYS[0]: task_name,
                        PROMPT_KEYS[1]: {
                            "type": ["object", "null"],
                            "propertyNames": {"pattern": _anchored(_VAR_RE.pattern)},
                            "additionalProperties": {"type": ["string", "number"]},
                        },
                    },
                },
            ]
        },
        "user": non_blank,
        "messages": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": list(MESSAGE_KEYS),
                "additionalProperties": False,
                "properties": {
                    MESSAGE_KEYS[0]: {"enum": list(MESSAGE_ROLES)},
                    MESSAGE_KEYS[1]: non_blank,
                },
            },
        },
        "reference": {"type": ["string", "null"]},
        "threshold": {"type": "number", "minimum": 0, "maximum": 1},
        "scorers": {"type": "array", "minItems": 1, "items": _scorer_schema()},
        "rubric": {
            "anyOf": [
                non_blank,
                {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_CRITERIA,
                    "items": {
                        "type": "object",
                        "required": list(RUBRIC_KEYS[:2]),
                        "additionalProperties": False,
                        "properties": {
                            RUBRIC_KEYS[0]: {
                                "type": "string",
                                "pattern": _anchored(CRITERION_NAME_RE.pattern),
                                "not": {"const": "reason"},
                            },
                            RUBRIC_KEYS[1]: non_blank,
                            RUBRIC_KEYS[2]: {"type": "number", "exclusiveMinimum": 0},
                        },
                    },
                },
            ]
        },
        "tags": {
            "type": "array",
            "items": {
                "type": "string",
                "pattern": _anchored(_TAG_RE.pattern),
                "not": {"enum": sorted(_TAG_KEYWORDS | _RESERVED_TAGS)},
            },
        },
        "params": {
            "type": "object",
            "additionalProperties": False,
            "properties": {name: _param_schema(name, rule) for name, rule in PARAM_RULES.items()},
        },
        "metadata": {"type": "object"},
    }
    for name, schema in fields.items():
        title, description = _HELP[name]
        fields[name] = {"title": title, "description": description, **schema}
    return fields


_SYSTEM_OR_PROMPT: Final = {"not": {"type": "object", "required": ["system", "prompt"]}}


def _definitions() -> dict[str, Any]:
    fields = _field_schemas()
    return {
        "case": {
            "title": "Golden case",
            "description": "One case: a conversation, its reference answer and how to score it.",
            "type": "object",
            "required": ["id"],
            "additionalProperties": False,
            "properties": {name: fields[name] for name in CASE_FIELDS},
            "oneOf": [{"required": ["user"]}, {"required": ["messages"]}],
            "allOf": [_SYSTEM_OR_PROMPT],
        },
        "defaults": {
            "title": "Defaults",
            "description": "Fields every case of the file gets unless it sets its own.",
            "type": ["object", "null"],
            "additionalProperties": False,
            "properties": {name: fields[name] for name in DEFAULTS_FIELDS},
            "allOf": [_SYSTEM_OR_PROMPT],
        },
        "cases": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/case"}},
    }


def golden_file_schema() -> dict[str, Any]:
    """The schema of a YAML golden file: a list of cases, or ``{defaults, cases}``.

    ``$defs/case`` is one case, the schema of a line of a JSONL golden file (see
    :func:`case_schema`).
    """
    defaults, cases = YAML_SECTIONS
    return {
        "$schema": DIALECT,
        "title": "pytest-llmregress golden file",
        "description": "Golden cases for pytest-llmregress: a list of cases, or a mapping with "
        "'cases' and optional 'defaults'. See docs/golden-files.md.",
        "anyOf": [
            {"$ref": "#/$defs/cases"},
            {
                "type": "object",
                "required": [cases],
                "additionalProperties": False,
                "properties": {
                    defaults: {"$ref": "#/$defs/defaults"},
                    cases: {"$ref": "#/$defs/cases"},
                },
            },
        ],
        "$defs": _definitions(),
    }


def case_schema() -> dict[str, Any]:
    """The schema of one golden case: a line of a JSONL golden file."""
    definitions = _definitions()
    return {
        "$schema": DIALECT,
        **definitions["case"],
        "$defs": definitions,
    }
