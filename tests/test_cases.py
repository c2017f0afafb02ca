"""Golden case loading: the schema, JSONL and YAML parsing, and every validation message."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from pytest_llmregress.cases.golden import (
    GOLDEN_SUFFIXES,
    MAX_PROBLEMS,
    CaseFileError,
    GoldenCase,
    Message,
    Problem,
    PromptRef,
    ScorerSpec,
    load_cases,
    parse_jsonl,
    parse_yaml,
)

FIELDS = (
    "id, system, prompt, user, messages, reference, threshold, scorers, rubric, tags, params, "
    "metadata"
)


def jsonl_errors(text: str, path: str = "g.jsonl") -> list[str]:
    with pytest.raises(CaseFileError) as info:
        parse_jsonl(text, path)
    return str(info.value).splitlines()


def yaml_errors(text: str, path: str = "g.yaml") -> list[str]:
    with pytest.raises(CaseFileError) as info:
        parse_yaml(textwrap.dedent(text), path)
    return str(info.value).splitlines()


def one_case(**fields: Any) -> str:
    return json.dumps({"id": "c1", "user": "hi", **fields})


# --------------------------------------------------------------------------------------------
# JSONL: valid files
# --------------------------------------------------------------------------------------------


def test_jsonl_minimal_case_gets_defaults() -> None:
    [case] = parse_jsonl('{"id": "refund-001", "user": "Can I get a refund?"}\n', "g.jsonl")
    assert case == GoldenCase(
        id="refund-001",
        messages=(Message("user", "Can I get a refund?"),),
        system=None,
        reference=None,
        threshold=0.85,
        scorers=(ScorerSpec("judge", {}),),
        tags=(),
        params={},
        metadata={},
        path="g.jsonl",
        line=1,
        index=0,
    )
    assert case.user == "Can I get a refund?"
    assert case.needs_judge


def test_jsonl_all_fields() -> None:
    line = json.dumps(
        {
            "id": "a.b_c-1",
            "system": "You are terse.",
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": "Refund?"},
            ],
            "reference": "Yes, within 30 days.",
            "threshold": 1,
            "scorers": ["exact", {"contains": "30 days"}, {"similarity": {"threshold": 0.5}}],
            "tags": ["billing", "smoke", "billing"],
            "params": {
                "max_tokens": 100,
                "temperature": 0.0,
                "top_p": 1,
                "top_k": 5,
                "stop": ["\n\n"],
                "seed": -3,
            },
            "metadata": {"owner": "team-a", "ticket": [1, {"x": None}]},
        }
    )
    [case] = parse_jsonl(line, "g.jsonl")
    assert case.system == "You are terse."
    assert case.messages[1] == Message("assistant", "Hello.")
    assert case.user == "Refund?"
    assert case.reference == "Yes, within 30 days."
    assert case.threshold == 1.0
    assert isinstance(case.threshold, float)
    assert [s.name for s in case.scorers] == ["exact", "contains", "similarity"]
    assert case.scorers[1].options == {"values": ("30 days",)}
    assert not case.needs_judge
    assert case.tags == ("billing", "smoke")
    assert case.params == {
        "max_tokens": 100,
        "temperature": 0.0,
        "top_p": 1,
        "top_k": 5,
        "stop": ("\n\n",),
        "seed": -3,
    }
    assert case.metadata == {"owner": "team-a", "ticket": [1, {"x": None}]}


def test_jsonl_skips_blank_and_comment_lines_and_keeps_line_numbers() -> None:
    text = '// header\n\n   \n{"id": "a", "user": "x"}\n  // note\n{"id": "b", "user": "y"}\n'
    cases = parse_jsonl(text, "g.jsonl")
    assert [(c.id, c.line, c.index) for c in cases] == [("a", 4, 0), ("b", 6, 1)]


def test_jsonl_handles_crlf_bom_and_unicode_line_separators() -> None:
    text = '\ufeff{"id": "a", "user": "x\u2028y"}\r\n{"id": "b", "user": "z"}\r\n'
    cases = parse_jsonl(text, "g.jsonl")
    assert [(c.id, c.user, c.line) for c in cases] == [("a", "x\u2028y", 1), ("b", "z", 2)]


def test_case_is_frozen_hashable_and_read_only() -> None:
    [case] = parse_jsonl(one_case(params={"seed": 1}, metadata={"k": "v"}), "g.jsonl")
    with pytest.raises(AttributeError):
        case.id = "other"  # type: ignore[misc]
    assert isinstance(case.params, MappingProxyType)
    with pytest.raises(TypeError):
        case.metadata["k"] = "w"  # type: ignore[index]
    assert {case: 1}[case] == 1
    assert hash(ScorerSpec("exact", {"ignore_case": True})) == hash(ScorerSpec("exact"))


def test_to_dict_is_json_able() -> None:
    [case] = parse_jsonl(
        one_case(
            system="s",
            scorers=[{"contains": ["a", "b"]}, "judge"],
            params={"stop": ["x"]},
            metadata={"n": [1, 2]},
            tags=["t"],
        ),
        "g.jsonl",
    )
    data = case.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data == {
        "id": "c1",
        "messages": [{"role": "user", "content": "hi"}],
        "system": "s",
        "prompt": None,
        "reference": None,
        "threshold": 0.85,
        "scorers": [
            {"name": "contains", "options": {"values": ["a", "b"]}},
            {"name": "judge", "options": {}},
        ],
        "tags": ["t"],
        "params": {"stop": ["x"]},
        "metadata": {"n": [1, 2]},
        "path": "g.jsonl",
        "line": 1,
        "index": 0,
    }


def test_user_is_the_last_user_message() -> None:
    case = GoldenCase(
        "x",
        (Message("user", "first"), Message("assistant", "a"), Message("user", "second")),
    )
    assert case.user == "second"


# --------------------------------------------------------------------------------------------
# JSONL: every field rule
# --------------------------------------------------------------------------------------------

BAD_CASES: list[tuple[str, str]] = [
    # the line itself
    (
        "{bad",
        "g.jsonl:1: invalid JSON at column 2: Expecting property name enclosed in double quotes",
    ),
    ('{"id": "a" "user": "x"}', "g.jsonl:1: invalid JSON at column 12: Expecting ',' delimiter"),
    ("[1, 2]", "g.jsonl:1: expected a JSON object (one case per line), got list [1, 2]"),
    ('"text"', "g.jsonl:1: expected a JSON object (one case per line), got string 'text'"),
    ('{"id": "a", "id": "b", "user": "x"}', "g.jsonl:1: duplicate key 'id' in JSON object"),
    # id
    ('{"user": "x"}', "g.jsonl:1: field 'id': missing; every case needs a unique id"),
    (one_case(id=5), "g.jsonl:1: field 'id': expected a string, got integer 5; put it in quotes"),
    (one_case(id=None), "g.jsonl:1: field 'id': expected a string, got null"),
    (
        one_case(id="a b"),
        "g.jsonl:1: field 'id': invalid id 'a b': it must start with a letter or digit and "
        "contain only letters, digits, '.', '_' and '-'",
    ),
    (
        one_case(id="-a"),
        "g.jsonl:1: field 'id': invalid id '-a': it must start with a letter or digit and "
        "contain only letters, digits, '.', '_' and '-'",
    ),
    (
        one_case(id="a::b"),
        "g.jsonl:1: field 'id': invalid id 'a::b': it must start with a letter or digit and "
        "contain only letters, digits, '.', '_' and '-'",
    ),
    (
        one_case(id="x" * 201),
        "g.jsonl:1: field 'id': id is 201 characters long; the maximum is 200",
    ),
    # user / messages
    (
        '{"id": "c1"}',
        "g.jsonl:1: case 'c1': a case needs exactly one of 'user' or 'messages', got neither",
    ),
    (
        one_case(messages=[{"role": "user", "content": "x"}]),
        "g.jsonl:1: case 'c1': a case needs exactly one of 'user' or 'messages', got both",
    ),
    (
        one_case(user=""),
        "g.jsonl:1: case 'c1': field 'user': expected a non-empty string, got string ''",
    ),
    (
        one_case(user="  \n"),
        "g.jsonl:1: case 'c1': field 'user': expected a non-empty string, got string '  \\n'",
    ),
    (
        one_case(user=["hi"]),
        "g.jsonl:1: case 'c1': field 'user': expected a non-empty string, got list ['hi']",
    ),
    (
        '{"id": "c1", "messages": []}',
        "g.jsonl:1: case 'c1': field 'messages': expected a non-empty list of messages, "
        "got an empty list",
    ),
    (
        '{"id": "c1", "messages": "hi"}',
        "g.jsonl:1: case 'c1': field 'messages': expected a non-empty list of messages, "
        "got string 'hi'",
    ),
    (
        '{"id": "c1", "messages": ["hi"]}',
        "g.jsonl:1: case 'c1': field 'messages[0]': expected a mapping with 'role' and "
        "'content', got string 'hi'",
    ),
    (
        '{"id": "c1", "messages": [{"role": "system", "content": "be nice"}, '
        '{"role": "user", "content": "x"}]}',
        "g.jsonl:1: case 'c1': field 'messages[0].role': role 'system' is not allowed in "
        "messages; put the system prompt in the case's 'system' field",
    ),
    (
        '{"id": "c1", "messages": [{"role": "bot", "content": "x"}]}',
        "g.jsonl:1: case 'c1': field 'messages[0].role': expected 'user' or 'assistant', "
        "got string 'bot'",
    ),
    (
        '{"id": "c1", "messages": [{"content": "x"}]}',
        "g.jsonl:1: case 'c1': field 'messages[0].role': expected 'user' or 'assistant', "
        "got nothing",
    ),
    (
        '{"id": "c1", "messages": [{"role": "user", "content": ""}]}',
        "g.jsonl:1: case 'c1': field 'messages[0].content': expected a non-empty string, "
        "got string ''",
    ),
    (
        '{"id": "c1", "messages": [{"role": "user", "content": "x", "text": "x"}]}',
        "g.jsonl:1: case 'c1': field 'messages[0]': unknown key 'text' (expected: role, content)",
    ),
    (
        '{"id": "c1", "messages": [{"role": "user", "content": "x", "contnet": "y"}]}',
        "g.jsonl:1: case 'c1': field 'messages[0]': unknown key 'contnet' (expected: role, "
        "content); did you mean 'content'?",
    ),
    (
        '{"id": "c1", "messages": [{"role": "user", "content": "x"}, '
        '{"role": "assistant", "content": "y"}]}',
        "g.jsonl:1: case 'c1': field 'messages': the last message must have role 'user', "
        "got 'assistant'",
    ),
    # system / reference
    (
        one_case(system=3),
        "g.jsonl:1: case 'c1': field 'system': expected a string or null, got integer 3",
    ),
    (
        one_case(reference={"a": 1}),
        "g.jsonl:1: case 'c1': field 'reference': expected a string or null, got mapping {'a': 1}",
    ),
    # threshold
    (
        one_case(threshold="high"),
        "g.jsonl:1: case 'c1': field 'threshold': expected a number between 0 and 1, "
        "got string 'high'",
    ),
    (
        one_case(threshold=True),
        "g.jsonl:1: case 'c1': field 'threshold': expected a number between 0 and 1, "
        "got boolean True",
    ),
    (
        one_case(threshold=1.5),
        "g.jsonl:1: case 'c1': field 'threshold': expected a number between 0 and 1, got 1.5",
    ),
    (
        one_case(threshold=-1),
        "g.jsonl:1: case 'c1': field 'threshold': expected a number between 0 and 1, got -1",
    ),
    # scorers (the spec parser is tested in test_scorers.py)
    (
        one_case(scorers="exact"),
        "g.jsonl:1: case 'c1': field 'scorers': expected a list of scorers (like [\"exact\"]), "
        "got string 'exact'",
    ),
    (
        one_case(scorers=[]),
        "g.jsonl:1: case 'c1': field 'scorers': expected at least one scorer, got an empty list",
    ),
    (
        one_case(scorers=["exact", "exactt"]),
        "g.jsonl:1: case 'c1': field 'scorers[1]': unknown scorer 'exactt' (expected one of: "
        "judge, exact, contains, regex, json, similarity); did you mean 'exact'?",
    ),
    (
        one_case(scorers=[{"regex": "("}]),
        "g.jsonl:1: case 'c1': field 'scorers[0]': scorer 'regex': option 'pattern': invalid "
        "regular expression: missing ), unterminated subpattern at position 0",
    ),
    # tags
    (
        one_case(tags="smoke"),
        "g.jsonl:1: case 'c1': field 'tags': expected a list of strings, got string 'smoke'",
    ),
    (
        one_case(tags=["ok", 3]),
        "g.jsonl:1: case 'c1': field 'tags[1]': expected a string, got integer 3",
    ),
    (
        one_case(tags=["2fast"]),
        "g.jsonl:1: case 'c1': field 'tags[0]': invalid tag '2fast': tags become pytest markers, "
        "so they must start with a letter or '_' and contain only letters, digits, '_' and '-'",
    ),
    (
        one_case(tags=["a b"]),
        "g.jsonl:1: case 'c1': field 'tags[0]': invalid tag 'a b': tags become pytest markers, "
        "so they must start with a letter or '_' and contain only letters, digits, '_' and '-'",
    ),
    (
        one_case(tags=["not"]),
        "g.jsonl:1: case 'c1': field 'tags[0]': tag 'not' is a keyword of pytest's -m "
        "expressions and cannot be a marker",
    ),
    (
        one_case(tags=["skip"]),
        "g.jsonl:1: case 'c1': field 'tags[0]': tag 'skip' is a built-in pytest marker and "
        "would change how the test runs",
    ),
    # params
    (
        one_case(params=[1]),
        "g.jsonl:1: case 'c1': field 'params': expected a mapping, got list [1]",
    ),
    (
        one_case(params={"max_token": 5}),
        "g.jsonl:1: case 'c1': field 'params': unknown parameter 'max_token' (expected one of: "
        "max_tokens, temperature, top_p, top_k, stop, seed); did you mean 'max_tokens'?",
    ),
    (
        one_case(params={"max_tokens": 0}),
        "g.jsonl:1: case 'c1': field 'params.max_tokens': expected an integer >= 1, got integer 0",
    ),
    (
        one_case(params={"max_tokens": 1.5}),
        "g.jsonl:1: case 'c1': field 'params.max_tokens': expected an integer >= 1, got number 1.5",
    ),
    (
        one_case(params={"top_k": True}),
        "g.jsonl:1: case 'c1': field 'params.top_k': expected an integer >= 1, got boolean True",
    ),
    (
        one_case(params={"temperature": 2.5}),
        "g.jsonl:1: case 'c1': field 'params.temperature': expected a number between 0 and 2, "
        "got number 2.5",
    ),
    (
        one_case(params={"top_p": "1"}),
        "g.jsonl:1: case 'c1': field 'params.top_p': expected a number between 0 and 1, "
        "got string '1'",
    ),
    (
        one_case(params={"stop": ""}),
        "g.jsonl:1: case 'c1': field 'params.stop': expected a non-empty string, got an empty "
        "string",
    ),
    (
        one_case(params={"stop": ["a", 1]}),
        "g.jsonl:1: case 'c1': field 'params.stop': expected a string or a non-empty list of "
        "non-empty strings, got list ['a', 1]",
    ),
    (
        one_case(params={"seed": "7"}),
        "g.jsonl:1: case 'c1': field 'params.seed': expected an integer, got string '7'",
    ),
    # metadata
    (
        one_case(metadata="x"),
        "g.jsonl:1: case 'c1': field 'metadata': expected a mapping, got string 'x'",
    ),
    (
        '{"id": "c1", "user": "x", "metadata": {"score": NaN}}',
        "g.jsonl:1: case 'c1': field 'metadata.score': nan is not a finite number",
    ),
    # unknown fields
    (
        one_case(foo=1),
        f"g.jsonl:1: case 'c1': unknown field 'foo' (expected one of: {FIELDS})",
    ),
    (
        one_case(tag=["x"]),
        f"g.jsonl:1: case 'c1': unknown field 'tag' (expected one of: {FIELDS}); "
        "did you mean 'tags'?",
    ),
    (
        one_case(defaults={}),
        f"g.jsonl:1: case 'c1': unknown field 'defaults' (expected one of: {FIELDS})",
    ),
]


@pytest.mark.parametrize(("line", "expected"), BAD_CASES)
def test_jsonl_bad_case(line: str, expected: str) -> None:
    assert jsonl_errors(line) == [expected]


def test_error_format_matches_the_documented_example() -> None:
    text = "\n" * 11 + json.dumps({"id": "refund-001", "user": "x", "threshold": "high"})
    assert jsonl_errors(text, "golden_cases/x.jsonl") == [
        "golden_cases/x.jsonl:12: case 'refund-001': field 'threshold': expected a number "
        "between 0 and 1, got string 'high'"
    ]


def test_problems_carry_structured_fields() -> None:
    with pytest.raises(CaseFileError) as info:
        parse_jsonl("\n" + one_case(threshold=2), "g.jsonl")
    assert info.value.path == "g.jsonl"
    assert info.value.problems == [
        Problem(2, "threshold", "expected a number between 0 and 1, got 2", "c1")
    ]


def test_all_problems_of_a_file_are_reported_together() -> None:
    text = "\n".join(
        [
            one_case(threshold=2, tags=["a b"]),
            "{oops",
            one_case(id="c2", user=""),
        ]
    )
    assert jsonl_errors(text) == [
        "g.jsonl:1: case 'c1': field 'threshold': expected a number between 0 and 1, got 2",
        "g.jsonl:1: case 'c1': field 'tags[0]': invalid tag 'a b': tags become pytest markers, "
        "so they must start with a letter or '_' and contain only letters, digits, '_' and '-'",
        "g.jsonl:2: invalid JSON at column 2: Expecting property name enclosed in double quotes",
        "g.jsonl:3: case 'c2': field 'user': expected a non-empty string, got string ''",
    ]


def test_duplicate_id_names_both_lines() -> None:
    text = "\n".join([one_case(id="x"), "", one_case(id="y"), one_case(id="x")])
    assert jsonl_errors(text) == ["g.jsonl:4: case 'x': duplicate id 'x' (first at line 1)"]


def test_problems_are_capped() -> None:
    text = "\n".join(one_case(id=f"c{i}", threshold=5) for i in range(MAX_PROBLEMS + 7))
    with pytest.raises(CaseFileError) as info:
        parse_jsonl(text, "g.jsonl")
    assert len(info.value.problems) == MAX_PROBLEMS
    assert info.value.omitted == 7
    assert str(info.value).splitlines()[-1] == "g.jsonl: 7 more problem(s) not shown"


@pytest.mark.parametrize("text", ["", "\n\n", "// only a comment\n   \n"])
def test_jsonl_without_cases(text: str) -> None:
    assert jsonl_errors(text) == ["g.jsonl: no cases in file"]


# --------------------------------------------------------------------------------------------
# YAML
# --------------------------------------------------------------------------------------------


def test_yaml_list_of_cases_with_lines() -> None:
    text = textwrap.dedent(
        """\
        # refunds
        - id: one
          user: Can I get a refund?
          reference: Yes.
          scorers: [exact]

        - id: two
          messages:
            - role: user
              content: Hi
            - {role: assistant, content: Hello}
            - role: user
              content: Refund?
          scorers:
            - contains: refund
            - regex: {pattern: '^yes', flags: i}
            - similarity:
        """
    )
    one, two = parse_yaml(text, "g.yaml")
    assert (one.id, one.line, one.index, one.user, one.reference) == (
        "one",
        2,
        0,
        "Can I get a refund?",
        "Yes.",
    )
    assert one.scorers == (ScorerSpec("exact", {}),)
    assert (two.id, two.line, two.index, two.user) == ("two", 7, 1, "Refund?")
    assert len(two.messages) == 3
    assert two.scorers == (
        ScorerSpec("contains", {"values": ("refund",)}),
        ScorerSpec("regex", {"pattern": "^yes", "flags": "i"}),
        ScorerSpec("similarity", {}),
    )


def test_yaml_defaults_are_merged() -> None:
    text = """\
        defaults:
          system: Be brief.
          threshold: 0.7
          scorers: [judge, {contains: refund}]
          tags: [billing, smoke]
          params: {temperature: 0, max_tokens: 50}
          metadata: {owner: a, area: billing}
        cases:
          - id: inherits
            user: hi
          - id: overrides
            user: hi
            system: null
            threshold: 0.9
            scorers: [exact]
            tags: [slow, billing]
            params: {max_tokens: 10, seed: 1}
            metadata: {owner: b}
        """
    inherits, overrides = parse_yaml(textwrap.dedent(text), "g.yaml")
    assert inherits.system == "Be brief."
    assert inherits.threshold == 0.7
    assert [s.name for s in inherits.scorers] == ["judge", "contains"]
    assert inherits.tags == ("billing", "smoke")
    assert inherits.params == {"temperature": 0, "max_tokens": 50}
    assert inherits.metadata == {"owner": "a", "area": "billing"}
    assert (inherits.line, overrides.line) == (9, 11)

    assert overrides.system is None
    assert overrides.threshold == 0.9
    assert overrides.scorers == (ScorerSpec("exact", {}),)
    assert overrides.tags == ("billing", "smoke", "slow")
    assert overrides.params == {"temperature": 0, "max_tokens": 10, "seed": 1}
    assert overrides.metadata == {"owner": "b", "area": "billing"}


def test_yaml_keeps_timestamps_as_strings_and_supports_anchors() -> None:
    text = """\
        - &base
          id: one
          user: hi
          threshold: 0.5
          metadata: {added: 2024-05-01}
        - <<: *base
          id: two
          threshold: 0.6
        """
    one, two = parse_yaml(textwrap.dedent(text), "g.yaml")
    assert one.metadata == {"added": "2024-05-01"}
    assert (two.id, two.user, two.threshold, two.line) == ("two", "hi", 0.6, 6)


def test_yaml_without_libyaml_gives_the_same_cases(monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    text = "cases:\n  - id: a\n    user: hi\n\n  - id: b\n    user: [1\n"
    fast = yaml_errors(text)
    monkeypatch.delattr(yaml, "CSafeLoader", raising=False)
    assert (
        yaml_errors(text)
        == fast
        == ["g.yaml:6: invalid YAML: the '[' at column 11 is never closed"]
    )
    one, two = parse_yaml("- id: a\n  user: hi\n\n- id: b\n  user: yo\n", "g.yaml")
    assert (one.line, two.line) == (1, 4)


BAD_YAML: list[tuple[str, list[str]]] = [
    ("a: [", ["g.yaml:1: invalid YAML: expected the node content, but found '<stream end>'"]),
    (
        "- id: x\n  user: [1\n",
        ["g.yaml:2: invalid YAML: the '[' at column 9 is never closed"],
    ),
    (
        "--- []\n--- []\n",
        [
            "g.yaml:2: invalid YAML: expected a single document in the stream, "
            "but found another document"
        ],
    ),
    ("", ["g.yaml: no cases in file"]),
    ("# nothing\n", ["g.yaml: no cases in file"]),
    ("[]", ["g.yaml: no cases in file"]),
    ("null", ["g.yaml: no cases in file"]),
    ("cases: []", ["g.yaml: no cases in file"]),
    ("cases:", ["g.yaml: no cases in file"]),
    (
        "just text",
        ["g.yaml:1: expected the document to be a list of cases, got string 'just text'"],
    ),
    ("cases: 5", ["g.yaml:1: expected 'cases' to be a list of cases, got integer 5"]),
    (
        "id: x\nuser: hi\n",
        [
            "g.yaml:1: expected a list of cases, or a mapping with 'cases' (and optional "
            "'defaults'); got a mapping with keys: 'id', 'user'"
        ],
    ),
    (
        "defaults: {}\ncase:\n  - id: x\n",
        [
            "g.yaml:1: expected a list of cases, or a mapping with 'cases' (and optional "
            "'defaults'); got a mapping with keys: 'defaults', 'case'"
        ],
    ),
    (
        "default: {}\ncases:\n  - id: x\n    user: hi\n",
        [
            "g.yaml:1: unknown top-level key 'default' (expected: defaults, cases); did you "
            "mean 'defaults'?"
        ],
    ),
    ("- just text\n", ["g.yaml:1: expected a case mapping, got string 'just text'"]),
    ("- [1, 2]\n", ["g.yaml:1: expected a case mapping, got a list"]),
    (
        "- id: a\n  user: hi\n  thresold: 0.5\n",
        [
            f"g.yaml:3: case 'a': unknown field 'thresold' (expected one of: {FIELDS}); did "
            "you mean 'threshold'?"
        ],
    ),
    (
        "- id: a\n  user: hi\n\n  tags:\n    - ok\n    - not ok\n",
        [
            "g.yaml:4: case 'a': field 'tags[1]': invalid tag 'not ok': tags become pytest "
            "markers, so they must start with a letter or '_' and contain only letters, "
            "digits, '_' and '-'"
        ],
    ),
    (
        "- id: a\n  user: hi\n  user: again\n",
        ["g.yaml:3: case 'a': duplicate key 'user' in the case (first at line 2)"],
    ),
    (
        "- id: a\n  user: hi\n- id: b\n  user: hi\n- id: a\n  user: hi\n",
        ["g.yaml:5: case 'a': duplicate id 'a' (first at line 1)"],
    ),
    (
        "- id: a\n  user: hi\n  scorers:\n    - exact:\n      ignore_case: true\n",
        [
            "g.yaml:3: case 'a': field 'scorers[0]': expected a scorer name or a one-key "
            "mapping {name: options}, got a mapping with keys: 'exact', 'ignore_case'"
        ],
    ),
    (
        "- id: 007\n  user: hi\n",
        ["g.yaml:1: field 'id': expected a string, got integer 7; put it in quotes"],
    ),
    (
        "- id: a\n  user: hi\n  threshold: yes\n",
        [
            "g.yaml:3: case 'a': field 'threshold': expected a number between 0 and 1, "
            "got boolean True"
        ],
    ),
    (
        "- id: a\n  user: hi\n  metadata: {blob: !!binary aGk=}\n",
        ["g.yaml:3: case 'a': field 'metadata.blob': expected a JSON value, got bytes b'hi'"],
    ),
    (
        "- id: a\n  user: hi\n  metadata: {1: x}\n",
        ["g.yaml:3: case 'a': field 'metadata': expected string keys, got key integer 1"],
    ),
    (
        "defaults:\n  threshold: 2\n  sytem: x\n  reference: r\ncases:\n  - id: a\n    user: hi\n",
        [
            "g.yaml:2: field 'defaults.threshold': expected a number between 0 and 1, got 2",
            "g.yaml:3: unknown defaults field 'sytem' (expected one of: system, prompt, "
            "threshold, scorers, rubric, tags, params, metadata); did you mean 'system'?",
            "g.yaml:4: unknown defaults field 'reference' (expected one of: system, prompt, "
            "threshold, scorers, rubric, tags, params, metadata)",
        ],
    ),
    (
        "defaults: [1]\ncases:\n  - id: a\n    user: hi\n",
        ["g.yaml:1: field 'defaults': expected a mapping, got a list"],
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD_YAML)
def test_yaml_bad_file(text: str, expected: list[str]) -> None:
    assert yaml_errors(text) == expected


def test_yaml_field_errors_point_at_the_field_line() -> None:
    text = """\
        cases:
          - id: a
            user: hi
            params:
              temperature: 9
          - id: b
            user: ""
        """
    assert yaml_errors(text) == [
        "g.yaml:4: case 'a': field 'params.temperature': expected a number between 0 and 2, "
        "got integer 9",
        "g.yaml:7: case 'b': field 'user': expected a non-empty string, got string ''",
    ]


def test_yaml_missing_id_points_at_the_case() -> None:
    assert yaml_errors("- id: ok\n  user: hi\n-\n  user: hi\n") == [
        "g.yaml:4: field 'id': missing; every case needs a unique id"
    ]


# --------------------------------------------------------------------------------------------
# The prompt field (a prompt task instead of a literal system prompt)
# --------------------------------------------------------------------------------------------


def test_jsonl_prompt_short_and_long_form() -> None:
    text = "\n".join(
        [
            one_case(prompt="support-answer"),
            json.dumps(
                {
                    "id": "c2",
                    "user": "hi",
                    "prompt": {"task": "support-answer", "vars": {"policy": "30 days", "n": 3}},
                }
            ),
            json.dumps({"id": "c3", "user": "hi", "prompt": {"task": "t", "vars": None}}),
            json.dumps({"id": "c4", "user": "hi", "prompt": None}),
        ]
    )
    short, long, null_vars, no_prompt = parse_jsonl(text, "g.jsonl")
    assert short.prompt == PromptRef("support-answer")
    assert short.system is None
    assert long.prompt == PromptRef("support-answer", {"policy": "30 days", "n": 3})
    assert null_vars.prompt == PromptRef("t", {})
    assert (no_prompt.prompt, no_prompt.system) == (None, None)


def test_prompt_ref_is_frozen_hashable_and_read_only() -> None:
    ref = PromptRef("t", {"a": "x", "b": 1})
    assert isinstance(ref.vars, MappingProxyType)
    with pytest.raises(TypeError):
        ref.vars["a"] = "y"  # type: ignore[index]
    with pytest.raises(AttributeError):
        ref.task = "u"  # type: ignore[misc]
    assert {ref: 1}[PromptRef("t", {"b": 1, "a": "x"})] == 1
    assert ref != PromptRef("t", {"a": "x"})


def test_from_dict_rebuilds_the_case_that_to_dict_wrote() -> None:
    """Cases travel to the runner process as JSON; every field and scorer option survives."""
    [case] = parse_jsonl(
        json.dumps(
            {"id": "c1"}
            | {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hello"},
                    {"role": "user", "content": "bye"},
                ],
                "prompt": {"task": "support", "vars": {"product": "X", "n": 3}},
                "reference": "ref",
                "threshold": 0.7,
                "scorers": [
                    {"judge": {"threshold": 0.9}},
                    {"exact": {"value": "v", "ignore_case": True, "normalize_whitespace": True}},
                    {"contains": ["a", "b"]},
                    {"regex": {"pattern": "^a.*", "flags": "im"}},
                    {"json": {"schema": {"type": "object", "required": ["a"]}, "fields": {"a": 1}}},
                    {"similarity": {"threshold": 0.5}},
                ],
                "params": {"stop": ["x"], "temperature": 0},
                "metadata": {"n": [1, {"k": "v"}]},
                "tags": ["t1", "t2"],
            }
        ),
        "golden/g.jsonl",
    )
    rebuilt = GoldenCase.from_dict(json.loads(json.dumps(case.to_dict())))
    assert rebuilt == case
    assert rebuilt.to_dict() == case.to_dict()
    assert [spec.options for spec in rebuilt.scorers] == [spec.options for spec in case.scorers]
    assert (rebuilt.path, rebuilt.line, rebuilt.index) == ("golden/g.jsonl", 1, 0)


def test_to_dict_with_a_prompt() -> None:
    [case] = parse_jsonl(one_case(prompt={"task": "t", "vars": {"p": "x", "n": 1.5}}), "g.jsonl")
    data = case.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["system"] is None
    assert data["prompt"] == {"task": "t", "vars": {"p": "x", "n": 1.5}}
    assert list(data)[:4] == ["id", "messages", "system", "prompt"]


def test_prompt_is_keyword_only_so_positional_fields_keep_their_order() -> None:
    case = GoldenCase("x", (Message("user", "hi"),), "sys", "ref", prompt=None)
    assert (case.system, case.reference, case.prompt) == ("sys", "ref", None)


def test_yaml_prompt_defaults_and_overrides() -> None:
    text = """\
        defaults:
          prompt: {task: support-answer, vars: {policy: Returns within 30 days.}}
        cases:
          - id: inherits
            user: hi
          - id: own-system
            user: hi
            system: Be brief.
          - id: own-prompt
            user: hi
            prompt: other-task
          - id: drops-it
            user: hi
            system: null
        """
    inherits, own_system, own_prompt, drops = parse_yaml(textwrap.dedent(text), "g.yaml")
    assert inherits.prompt == PromptRef("support-answer", {"policy": "Returns within 30 days."})
    assert inherits.system is None
    assert (own_system.system, own_system.prompt) == ("Be brief.", None)
    assert (own_prompt.system, own_prompt.prompt) == (None, PromptRef("other-task"))
    assert (drops.system, drops.prompt) == (None, None)


def test_yaml_case_prompt_replaces_a_default_system() -> None:
    text = """\
        defaults:
          system: Be brief.
        cases:
          - id: a
            user: hi
            prompt: {task: t}
          - id: b
            user: hi
            prompt: null
          - id: c
            user: hi
        """
    a, b, c = parse_yaml(textwrap.dedent(text), "g.yaml")
    assert (a.system, a.prompt) == (None, PromptRef("t"))
    assert (b.system, b.prompt) == (None, None)
    assert (c.system, c.prompt) == ("Be brief.", None)


def test_system_and_prompt_together_name_the_line() -> None:
    assert jsonl_errors("\n" + one_case(system="s", prompt="t")) == [
        "g.jsonl:2: case 'c1': set either 'system' (a literal system prompt) or 'prompt' (a "
        "prompt task), not both"
    ]
    text = """\
        - id: a
          user: hi
          system: s
          prompt: t
        """
    assert yaml_errors(text) == [
        "g.yaml:4: case 'a': set either 'system' (a literal system prompt) or 'prompt' (a "
        "prompt task), not both"
    ]
    text = """\
        defaults:
          system: s
          prompt: t
        cases:
          - id: a
            user: hi
        """
    assert yaml_errors(text) == [
        "g.yaml:3: field 'defaults.prompt': set either 'system' (a literal system prompt) or "
        "'prompt' (a prompt task), not both"
    ]


NAME_RULE = (
    "it must start with a letter or digit and contain only letters, digits, '.', '_' and '-'"
)
VAR_RULE = "it must start with a letter or '_' and contain only letters, digits and '_'"

BAD_PROMPTS: list[tuple[object, list[str]]] = [
    (
        5,
        ["field 'prompt': expected a task name or a mapping with 'task' and 'vars', got integer 5"],
    ),
    ("bad task", [f"field 'prompt': invalid task name 'bad task': {NAME_RULE}"]),
    ("", [f"field 'prompt': invalid task name '': {NAME_RULE}"]),
    ({"vars": {}}, ["field 'prompt.task': missing; name the prompt task"]),
    ({"task": 1}, ["field 'prompt.task': expected a prompt task name, got integer 1"]),
    (
        {"task": "t", "var": {}},
        ["field 'prompt': unknown key 'var' (expected: task, vars); did you mean 'vars'?"],
    ),
    ({"task": "t", "vars": ["a"]}, ["field 'prompt.vars': expected a mapping, got list ['a']"]),
    (
        {"task": "t", "vars": {"a b": "x", "ok": "y"}},
        [f"field 'prompt.vars': invalid variable name 'a b': {VAR_RULE}"],
    ),
    (
        {"task": "t", "vars": {"a": True}},
        [
            "field 'prompt.vars.a': expected a string or a number, got boolean True; put it in "
            "quotes"
        ],
    ),
    (
        {"task": "t", "vars": {"a": None}},
        ["field 'prompt.vars.a': expected a string or a number, got null; put it in quotes"],
    ),
    (
        {"task": "t", "vars": {"a": [1]}},
        ["field 'prompt.vars.a': expected a string or a number, got list [1]"],
    ),
]


@pytest.mark.parametrize(("value", "expected"), BAD_PROMPTS)
def test_bad_prompt_field(value: object, expected: list[str]) -> None:
    assert jsonl_errors(one_case(prompt=value)) == [f"g.jsonl:1: case 'c1': {e}" for e in expected]


def test_bad_prompt_in_yaml_points_at_its_line_and_defaults() -> None:
    text = """\
        defaults:
          prompt: {task: t, vars: {n: .inf}}
        cases:
          - id: a
            user: hi
            prompt:
              task: t
              vars: {x: [1]}
        """
    assert yaml_errors(text) == [
        "g.yaml:2: field 'defaults.prompt.vars.n': expected a string or a number, got number inf",
        "g.yaml:6: case 'a': field 'prompt.vars.x': expected a string or a number, got list [1]",
    ]


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def test_golden_suffixes() -> None:
    assert GOLDEN_SUFFIXES == (".jsonl", ".yaml", ".yml")


@pytest.mark.parametrize("suffix", [".jsonl", ".yaml", ".yml", ".YAML"])
def test_load_cases_dispatches_on_suffix(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"cases{suffix}"
    if suffix == ".jsonl":
        path.write_text('{"id": "a", "user": "hi"}\n', encoding="utf-8")
    else:
        path.write_text("- id: a\n  user: hi\n", encoding="utf-8")
    [case] = load_cases(path)
    assert (case.id, case.path, case.line) == ("a", str(path), 1)


def test_load_cases_keeps_the_path_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("golden_cases").mkdir()
    Path("golden_cases/x.jsonl").write_text('\ufeff{"id": "a", "user": "hi"}\n', encoding="utf-8")
    [case] = load_cases("golden_cases/x.jsonl")
    assert case.path == "golden_cases/x.jsonl"


def test_load_cases_rejects_other_suffixes(tmp_path: Path) -> None:
    path = tmp_path / "cases.json"
    path.write_text("[]", encoding="utf-8")
    with pytest.raises(CaseFileError) as info:
        load_cases(path)
    assert str(info.value) == (
        f"{path}: unsupported file type '.json' (expected one of: .jsonl, .yaml, .yml)"
    )


def test_load_cases_reports_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(CaseFileError) as info:
        load_cases(missing)
    assert str(info.value) == f"{missing}: cannot read file: No such file or directory"

    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b'{"id": "a", "user": "hi"}\n{"id": "\xff"}\n')
    with pytest.raises(CaseFileError) as info:
        load_cases(binary)
    assert str(info.value) == (
        f"{binary}:2: not UTF-8 text: byte 0xFF at column 9 cannot be decoded (invalid start "
        "byte); golden files are UTF-8 text (is this a binary file?)"
    )


# --------------------------------------------------------------------------------------------
# The examples in the user docs load
# --------------------------------------------------------------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs" / "golden-files.md"


def doc_examples(language: str) -> list[str]:
    blocks = re.findall(rf"^```{language}\n(.*?)^```$", DOCS.read_text("utf-8"), re.M | re.S)
    return [block for block in blocks if "id:" in block or '"id"' in block]


@pytest.mark.skipif(not DOCS.exists(), reason="docs are not shipped here")
def test_docs_examples_are_valid() -> None:
    jsonl, yaml_files = doc_examples("jsonl"), doc_examples("yaml")
    assert (len(jsonl), len(yaml_files)) == (1, 3)
    assert [c.id for c in parse_jsonl(jsonl[0], "docs.jsonl")] == [
        "refund-window",
        "refund-receipt",
        "order-status-json",
    ]
    assert [c.id for c in parse_yaml(yaml_files[0], "docs.yaml")] == [
        "capital-france",
        "capital-peru",
    ]
    paid, revenue = parse_yaml(yaml_files[1], "docs.yaml")
    assert paid.scorers[1] == ScorerSpec("judge", {"threshold": 0.9})
    assert revenue.tags == ("sql", "slow")
    assert revenue.params == {"temperature": 0, "max_tokens": 800}
    assert revenue.metadata == {"owner": "data-team", "added": "2026-02-01"}
    boots, gift, greeting = parse_yaml(yaml_files[2], "docs.yaml")
    assert boots.prompt == PromptRef(
        "support-answer", {"policy": "Unworn items can be returned within 30 days of delivery."}
    )
    assert gift.prompt is not None
    assert str(gift.prompt.vars["policy"]).startswith("Gifts")
    assert (greeting.prompt, greeting.system) == (PromptRef("small-talk"), None)
