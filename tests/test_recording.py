"""Recording references into golden files: exact round-trips, untouched lines, atomic writes."""

from __future__ import annotations

import difflib
import json
import os
import shutil
import stat
import textwrap
from pathlib import Path

import pytest

from pytest_llmregress.authoring import recording
from pytest_llmregress.authoring.recording import (
    RecordError,
    RecordReport,
    record_many,
    record_references,
    unified_diff,
)
from pytest_llmregress.cases.golden import GoldenCase, load_cases

GOLDEN = Path(__file__).resolve().parent.parent / "golden_cases"

# Texts a model may answer with, each a trap for some way of writing YAML or JSON.
TRICKY = [
    "Paris",
    "",
    " ",
    "yes",
    "null",
    "~",
    "0.5",
    "2026-02-01",
    "It's 30 days.",
    'He said "no".',
    'It\'s "quoted" both ways',
    "a # not a comment",
    "key: value",
    "ends with colon:",
    "- looks like a list item",
    "*alias-looking",
    "&anchor-looking",
    "!tag-looking",
    "{flow: mapping}",
    "[1, 2]",
    "% directive",
    "@at",
    "`backtick",
    "back\\slash \\d+$",
    "  leading spaces",
    "trailing spaces  ",
    "tab\tinside",
    "\tleading tab",
    "unicode: café, 日本語, emoji 🎉",
    "line one\nline two",
    "line one\nline two\n",
    "line one\nline two\n\n",
    "line one\n\n\n",
    "\nleading newline",
    "\n\nleading newlines\n",
    "  indented first line\nsecond",
    "   \nwhitespace-only first line",
    "first\n  indented second\n",
    "first\n   \nwhitespace-only middle line",
    "first\nwhitespace-only last line\n   ",
    "# heading\n\n- item: one\n- item: two\n",
    "key: value\nother: [1, 2]\n---\n...\n",
    "SELECT *\nFROM t\nWHERE a = 'x' -- comment\n",
    "tabs\n\tindented by tab\n",
    "windows\r\nline endings\r\n",
    "bare\rcarriage return",
    "control \x00 \x07 \x1b characters",
    "line\u2028separator and\u2029paragraph and \x85 next line",
    "bom \ufeff inside",
    "del \x7f char",
    "\n",
    "\n\n",
    "|\n>-\n",
    "'single'\n\"double\"\n",
    "x" * 300,
]


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="")
    return path


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def line_changes(before: str, after: str) -> tuple[list[str], list[str]]:
    """The lines removed from ``before`` and the lines added in ``after``."""
    removed: list[str] = []
    added: list[str] = []
    a, b = before.split("\n"), after.split("\n")
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            removed += a[i1:i2]
            added += b[j1:j2]
    return removed, added


def references(path: Path) -> dict[str, str | None]:
    return {case.id: case.reference for case in load_cases(path)}


def without_reference(cases: list[GoldenCase]) -> list[GoldenCase]:
    import dataclasses

    return [dataclasses.replace(c, reference=None, line=0, path="") for c in cases]


def no_temp_files(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------------------------
# JSONL
# --------------------------------------------------------------------------------------------

JSONL = (
    "// Support answers. Comments stay.\n"
    '{"id": "a", "system": "Be brief.", "user": "Hi?", "tags": ["support"]}\n'
    "\n"
    '{"id": "b", "user": "Refund?", "reference": null, "threshold": 0.8}\n'
    "   // indented comment\n"
    '{"id": "c", "user": "Old?", "reference": "old answer", "tags": ["x"]}\n'
    '{"id": "d", "messages": [{"role": "user", "content": "Q1"}, '
    '{"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"}], '
    '"metadata": {"owner": "me"}}\n'
)


def test_jsonl_fills_missing_and_null_and_keeps_everything_else(tmp_path: Path) -> None:
    path = write(tmp_path / "g.jsonl", JSONL)
    report = record_references(
        path, {"a": "Hello.", "b": "Within 30 days.", "c": "new", "d": "A2", "zz": "?"}
    )
    assert (report.filled, report.overwritten) == (["a", "b", "d"], [])
    assert (report.skipped_existing, report.unknown_ids) == (["c"], ["zz"])
    assert report.written
    assert report.changed
    after = read(path)
    assert after.split("\n") == [
        "// Support answers. Comments stay.",
        '{"id": "a", "system": "Be brief.", "user": "Hi?", "reference": "Hello.", '
        '"tags": ["support"]}',
        "",
        '{"id": "b", "user": "Refund?", "reference": "Within 30 days.", "threshold": 0.8}',
        "   // indented comment",
        '{"id": "c", "user": "Old?", "reference": "old answer", "tags": ["x"]}',
        '{"id": "d", "messages": [{"role": "user", "content": "Q1"}, '
        '{"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"}], '
        '"reference": "A2", "metadata": {"owner": "me"}}',
        "",
    ]
    assert references(path) == {
        "a": "Hello.",
        "b": "Within 30 days.",
        "c": "old answer",
        "d": "A2",
    }


def test_jsonl_overwrite_replaces_only_the_value(tmp_path: Path) -> None:
    path = write(tmp_path / "g.jsonl", JSONL)
    report = record_references(path, {"c": "new answer", "a": "x"}, overwrite=True)
    assert (report.filled, report.overwritten) == (["a"], ["c"])
    removed, added = line_changes(JSONL, read(path))
    assert removed == [JSONL.split("\n")[1], JSONL.split("\n")[5]]
    assert added[1] == '{"id": "c", "user": "Old?", "reference": "new answer", "tags": ["x"]}'


def test_jsonl_overwrite_with_same_text_changes_nothing(tmp_path: Path) -> None:
    path = write(tmp_path / "g.jsonl", JSONL)
    report = record_references(path, {"c": "old answer"}, overwrite=True)
    assert report.unchanged == ["c"]
    assert not report.changed
    assert not report.written
    assert read(path) == JSONL


OWN_VALUES = (
    '{"id": "value", "user": "Two plus two?", "scorers": [{"exact": {"value": "4"}}]}\n'
    '{"id": "short", "user": "Three?", "scorers": [{"exact": "3"}], "reference": null}\n'
    '{"id": "checks", "user": "JSON?", "scorers": ["json", {"contains": "ok"}]}\n'
    '{"id": "both", "user": "Refund?", "scorers": [{"exact": {"value": "x"}}, "similarity"]}\n'
    '{"id": "plain", "user": "Exact?", "scorers": [{"exact": {"ignore_case": true}}]}\n'
)


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_case_whose_scorers_need_no_reference_is_left_alone(
    tmp_path: Path, overwrite: bool
) -> None:
    path = write(tmp_path / "g.jsonl", OWN_VALUES)
    report = record_references(
        path,
        {"value": "5", "short": "3", "checks": '{"ok": 1}', "both": "y", "plain": "z"},
        overwrite=overwrite,
        display_path="g.jsonl",
    )
    assert report.not_needed == ["value", "short", "checks"]
    assert report.filled == ["both", "plain"]
    assert references(path) == {
        "value": None,
        "short": None,
        "checks": None,
        "both": "y",
        "plain": "z",
    }
    assert read(path).split("\n")[:3] == OWN_VALUES.split("\n")[:3]
    assert report.summary() == (
        "g.jsonl: 2 filled, 3 left alone (their scorers need no reference: value, short, checks)"
    )


def test_jsonl_keeps_the_line_style_compact_and_ascii_escapes(tmp_path: Path) -> None:
    text = (
        '{"id":"a","user":"Caf\\u00e9?","tags":["x"]}\n'
        '{"id": "b",  "user" :  "spaced",\t"tags": []}\n'
        '{"tags": [], "id": "c", "threshold": 1.0, "user": "1e3 stays", "metadata": {"n": 1e3}}\n'
        '{"id": "d", "user": "raw é"}\n'
    )
    path = write(tmp_path / "g.jsonl", text)
    record_references(path, {"a": "Oui, café.", "b": "ok", "c": "é\n", "d": "ü"})
    assert read(path).split("\n") == [
        '{"id":"a","user":"Caf\\u00e9?","reference":"Oui, caf\\u00e9.","tags":["x"]}',
        '{"id": "b",  "user" :  "spaced",\t"reference" :  "ok",\t"tags": []}',
        '{"tags": [], "id": "c", "threshold": 1.0, "user": "1e3 stays", "reference": "é\\n", '
        '"metadata": {"n": 1e3}}',
        '{"id": "d", "user": "raw é", "reference": "ü"}',
        "",
    ]


def test_jsonl_user_last_appends_at_the_end(tmp_path: Path) -> None:
    path = write(tmp_path / "g.jsonl", '{"id": "a", "tags": ["t"], "user": "q"}')
    record_references(path, {"a": "r"})
    assert read(path) == '{"id": "a", "tags": ["t"], "user": "q", "reference": "r"}'


@pytest.mark.parametrize("value", TRICKY, ids=range(len(TRICKY)))
def test_jsonl_round_trips_tricky_text(tmp_path: Path, value: str) -> None:
    path = write(tmp_path / "g.jsonl", JSONL)
    record_references(path, {"a": value, "c": value}, overwrite=True)
    after = read(path)
    assert references(path) == {"a": value, "b": None, "c": value, "d": None}
    removed, added = line_changes(JSONL, after)
    assert len(removed) == len(added) == 2  # one physical line per case, always
    assert without_reference(load_cases(path)) == without_reference(
        load_cases(write(tmp_path / "old.jsonl", JSONL))
    )


def test_jsonl_crlf_and_bom_are_kept(tmp_path: Path) -> None:
    text = '\ufeff// c\r\n{"id": "a", "user": "q"}\r\n{"id": "b", "user": "q2"}\r\n'
    path = tmp_path / "g.jsonl"
    path.write_bytes(text.encode("utf-8"))
    record_references(path, {"a": "r\r\nx"})
    assert path.read_bytes().decode("utf-8") == (
        '\ufeff// c\r\n{"id": "a", "user": "q", "reference": "r\\r\\nx"}\r\n'
        '{"id": "b", "user": "q2"}\r\n'
    )
    assert references(path)["a"] == "r\r\nx"


def test_jsonl_real_golden_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "support.jsonl"
    shutil.copy(GOLDEN / "support.jsonl", path)
    before = read(path)
    report = record_references(path, {"route-billing": "Billing", "refund-window": "no"})
    assert report.skipped_existing == ["refund-window", "route-billing"]
    assert read(path) == before
    report = record_references(path, {"route-billing": "Billing"}, overwrite=True)
    removed, added = line_changes(before, read(path))
    assert added == [removed[0].replace('"reference": "billing"', '"reference": "Billing"')]


# --------------------------------------------------------------------------------------------
# YAML
# --------------------------------------------------------------------------------------------

YAML_LIST = dedent(
    """
    # A list of cases. Comments stay where they are.
    - id: capital-france
      user: What is the capital of France? One word.
      scorers: [{exact: {ignore_case: true}}]   # trailing comment

    - id: null-ref
      user: >-
        Folded question
        on two lines.
      reference: null
      tags: [geo]
    - id: tilde-ref
      user: |
        Literal question.
      reference: ~  # record me
    - id: empty-ref
      user: "Quoted: question"
      reference:
      # a comment before metadata
      metadata: {owner: "me"}
    - id: kept
      user: Keep?
      reference: |-
        Existing
        answer.
    - id: last
      user: Last question
    """
)


def test_yaml_list_fills_missing_null_tilde_and_empty(tmp_path: Path) -> None:
    path = write(tmp_path / "g.yaml", YAML_LIST)
    report = record_references(
        path,
        {
            "capital-france": "Paris",
            "null-ref": "Two\nlines",
            "tilde-ref": "It's fine",
            "empty-ref": "yes",
            "kept": "other",
            "last": "end\n",
        },
    )
    assert report.filled == ["capital-france", "null-ref", "tilde-ref", "empty-ref", "last"]
    assert report.skipped_existing == ["kept"]
    assert read(path) == dedent(
        """
        # A list of cases. Comments stay where they are.
        - id: capital-france
          user: What is the capital of France? One word.
          reference: Paris
          scorers: [{exact: {ignore_case: true}}]   # trailing comment

        - id: null-ref
          user: >-
            Folded question
            on two lines.
          reference: |-
            Two
            lines
          tags: [geo]
        - id: tilde-ref
          user: |
            Literal question.
          reference: It's fine  # record me
        - id: empty-ref
          user: "Quoted: question"
          reference: 'yes'
          # a comment before metadata
          metadata: {owner: "me"}
        - id: kept
          user: Keep?
          reference: |-
            Existing
            answer.
        - id: last
          user: Last question
          reference: |
            end
        """
    )
    assert references(path) == {
        "capital-france": "Paris",
        "null-ref": "Two\nlines",
        "tilde-ref": "It's fine",
        "empty-ref": "yes",
        "kept": "Existing\nanswer.",
        "last": "end\n",
    }


def test_yaml_insertion_only_adds_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "g.yaml", YAML_LIST)
    record_references(path, {"capital-france": "a\nb", "last": "z"})
    removed, added = line_changes(YAML_LIST, read(path))
    assert removed == []
    assert added == ["  reference: |-", "    a", "    b", "  reference: z"]


def test_yaml_overwrite_replaces_block_scalar(tmp_path: Path) -> None:
    path = write(tmp_path / "g.yaml", YAML_LIST)
    report = record_references(path, {"kept": "  new\n  answer"}, overwrite=True)
    assert report.overwritten == ["kept"]
    removed, added = line_changes(YAML_LIST, read(path))
    assert removed == ["  reference: |-", "    Existing", "    answer."]
    assert added == ["  reference: |2-", "      new", "      answer"]
    assert references(path)["kept"] == "  new\n  answer"


YAML_DEFAULTS = dedent(
    """
    # Text-to-SQL.
    defaults:
      system: |-
        Write one PostgreSQL query.
      tags: [sql]
      params: {temperature: 0}

    cases:
      - id: paid-orders
        user: How many orders are paid?
        scorers:
          - regex: {pattern: '^\\s*SELECT\\b', flags: i}
          - judge: {threshold: 0.9}

      - id: revenue
        user: Total revenue?
        reference: |-  # recorded 2026-01-02
          SELECT SUM(total_cents)
          FROM orders;
        tags: [slow]            # tags become [sql, slow]

      - id: multi
        messages:
          - role: user
            content: |-
              First question
          - role: assistant
            content: First answer
          - {role: user, content: Second question}
        metadata: {added: 2026-02-01}
    """
)


def test_yaml_defaults_file(tmp_path: Path) -> None:
    path = write(tmp_path / "g.yaml", YAML_DEFAULTS)
    before = load_cases(path)
    report = record_references(
        path,
        {
            "paid-orders": "SELECT COUNT(*) FROM orders WHERE status = 'paid';",
            "revenue": "SELECT 1;\n",
            "multi": "Second answer:\n  indented",
        },
        overwrite=True,
    )
    assert report.filled == ["paid-orders", "multi"]
    assert report.overwritten == ["revenue"]
    assert read(path) == dedent(
        """
        # Text-to-SQL.
        defaults:
          system: |-
            Write one PostgreSQL query.
          tags: [sql]
          params: {temperature: 0}

        cases:
          - id: paid-orders
            user: How many orders are paid?
            reference: SELECT COUNT(*) FROM orders WHERE status = 'paid';
            scorers:
              - regex: {pattern: '^\\s*SELECT\\b', flags: i}
              - judge: {threshold: 0.9}

          - id: revenue
            user: Total revenue?
            reference: |  # recorded 2026-01-02
              SELECT 1;
            tags: [slow]            # tags become [sql, slow]

          - id: multi
            messages:
              - role: user
                content: |-
                  First question
              - role: assistant
                content: First answer
              - {role: user, content: Second question}
            reference: |-
              Second answer:
                indented
            metadata: {added: 2026-02-01}
        """
    )
    after = load_cases(path)
    assert [c.reference for c in after] == [
        "SELECT COUNT(*) FROM orders WHERE status = 'paid';",
        "SELECT 1;\n",
        "Second answer:\n  indented",
    ]
    assert without_reference(after) == without_reference(before)
    assert [c.system for c in after] == ["Write one PostgreSQL query."] * 3


POSITIONS = {
    # fill: a case with no reference key, followed by a blank line and the next case
    "insert-before-blank": ("paid-orders", False),
    # fill at the end of the file, after a nested block sequence
    "insert-at-eof": ("multi", False),
    # overwrite a block scalar that has a header comment
    "replace-block": ("revenue", True),
}


@pytest.mark.parametrize("position", list(POSITIONS))
@pytest.mark.parametrize("value", TRICKY, ids=range(len(TRICKY)))
def test_yaml_round_trips_tricky_text(tmp_path: Path, value: str, position: str) -> None:
    case_id, overwrite = POSITIONS[position]
    path = write(tmp_path / "g.yaml", YAML_DEFAULTS)
    before = load_cases(path)
    record_references(path, {case_id: value}, overwrite=overwrite)
    after = load_cases(path)
    assert {c.id: c.reference for c in after}[case_id] == value
    assert without_reference(after) == without_reference(before)
    assert [c.reference for c in after if c.id != case_id] == [
        c.reference for c in before if c.id != case_id
    ]
    removed, added = line_changes(YAML_DEFAULTS, read(path))
    old_entry = [
        "    reference: |-  # recorded 2026-01-02",
        "      SELECT SUM(total_cents)",
        "      FROM orders;",
    ]
    assert set(removed) <= (set(old_entry) if overwrite else set())
    # Every added line belongs to the new entry: its key line, then deeper-indented content.
    assert all(line.startswith(("    reference: ", "      ")) for line in added if line.strip())
    # No written line ends with whitespace, which editors strip on save.
    assert all(line == line.rstrip(" \t") for line in added)


def test_yaml_list_style_round_trips_every_tricky_text_at_once(tmp_path: Path) -> None:
    text = "".join(f"- id: c{i}\n  user: q{i}\n" for i in range(len(TRICKY)))
    path = write(tmp_path / "g.yaml", text)
    record_references(path, {f"c{i}": value for i, value in enumerate(TRICKY)})
    assert references(path) == {f"c{i}": value for i, value in enumerate(TRICKY)}
    removed, _ = line_changes(text, read(path))
    assert removed == []


@pytest.mark.parametrize(
    ("value", "entry"),
    [
        ("Paris", ["reference: Paris"]),
        ("SELECT 1;", ["reference: SELECT 1;"]),
        ("yes", ["reference: 'yes'"]),
        ("2026-02-01", ["reference: '2026-02-01'"]),
        ("a # b", ["reference: 'a # b'"]),
        ("key: value", ["reference: 'key: value'"]),
        ("It's", ["reference: It's"]),
        ("It's: x", ['reference: "It\'s: x"']),
        ("tab\there", ['reference: "tab\\there"']),
        ("", ["reference: ''"]),
        ("a\nb", ["reference: |-", "  a", "  b"]),
        ("a\nb\n", ["reference: |", "  a", "  b"]),
        ("a\nb\n\n", ["reference: |+", "  a", "  b", ""]),
        ("  a\nb", ["reference: |2-", "    a", "  b"]),
        ("a\r\nb", ['reference: "a\\r\\n\\', '  b"']),
        ("a  \n b\n", ['reference: "a  \\n\\', '  \\ b\\n"']),
        ("a\n\tb ", ['reference: "a\\n\\', '  \\tb "']),
        ("a\u2028b\nc", ['reference: "a\\u2028b\\n\\', '  c"']),
        ("a\u2028b", ['reference: "a\\u2028b"']),
    ],
)
def test_yaml_scalar_forms(tmp_path: Path, value: str, entry: list[str]) -> None:
    text = "- id: a\n  user: q\n- id: b\n  user: q\n"
    path = write(tmp_path / "g.yaml", text)
    record_references(path, {"a": value})
    lines = read(path).split("\n")
    assert lines[:2] == ["- id: a", "  user: q"]
    assert lines[2 : 2 + len(entry)] == ["  " + line if line else "" for line in entry]
    assert lines[2 + len(entry) :] == ["- id: b", "  user: q", ""]
    assert references(path)["a"] == value


def test_yaml_keep_chomping_is_not_used_before_a_blank_line(tmp_path: Path) -> None:
    text = "- id: a\n  user: q\n\n- id: b\n  user: q\n"
    path = write(tmp_path / "g.yaml", text)
    record_references(path, {"a": "x\n\n"})
    assert (
        read(path) == '- id: a\n  user: q\n  reference: "x\\n\\\n    \\n"\n\n- id: b\n  user: q\n'
    )
    assert references(path)["a"] == "x\n\n"


def test_yaml_literal_not_used_where_a_deeper_comment_would_join_it(tmp_path: Path) -> None:
    text = "- id: a\n  user: q\n        # odd comment\n  tags: [t]\n"
    path = write(tmp_path / "g.yaml", text)
    record_references(path, {"a": "x\ny"})
    assert references(path)["a"] == "x\ny"
    assert read(path).split("\n")[2:4] == ['  reference: "x\\n\\', '    y"']


def test_yaml_user_with_keep_chomping_keeps_its_blank_lines(tmp_path: Path) -> None:
    text = "- id: a\n  user: |+\n    q\n\n  tags: [t]\n"
    path = write(tmp_path / "g.yaml", text)
    record_references(path, {"a": "r"})
    assert read(path) == "- id: a\n  user: |+\n    q\n\n  reference: r\n  tags: [t]\n"
    [case] = load_cases(path)
    assert (case.user, case.reference) == ("q\n\n", "r")


def test_yaml_crlf_and_bom(tmp_path: Path) -> None:
    text = "\ufeff# c\r\n- id: a\r\n  user: q\r\n- id: b\r\n  user: q\r\n"
    path = tmp_path / "g.yaml"
    path.write_bytes(text.encode("utf-8"))
    record_references(path, {"a": "x\ny"})
    assert path.read_bytes().decode("utf-8") == (
        "\ufeff# c\r\n- id: a\r\n  user: q\r\n  reference: |-\r\n    x\r\n    y\r\n"
        "- id: b\r\n  user: q\r\n"
    )
    assert references(path)["a"] == "x\ny"


def test_yaml_no_final_newline(tmp_path: Path) -> None:
    path = write(tmp_path / "g.yaml", "- id: a\n  user: q")
    record_references(path, {"a": "r"})
    assert read(path) == "- id: a\n  user: q\n  reference: r"


@pytest.mark.parametrize("name", ["sql.yaml", "summaries.yaml"])
def test_yaml_real_golden_files_overwrite_round_trip(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    shutil.copy(GOLDEN / name, path)
    before = load_cases(path)
    new = {c.id: f"new reference of {c.id}\n  with: [yaml] # look\n" for c in before}
    report = record_references(path, new, overwrite=True)
    assert report.overwritten == [c.id for c in before]
    after = load_cases(path)
    assert {c.id: c.reference for c in after} == new
    assert without_reference(after) == without_reference(before)
    removed, _ = line_changes(read(GOLDEN / name), read(path))
    assert all(line.startswith("    reference:") or line.startswith("      ") for line in removed)


def test_yaml_merge_key_value_and_alias_user(tmp_path: Path) -> None:
    text = dedent(
        """
        - id: a
          user: &q Shared question
          tags: [t]
        - id: b
          user: *q
          tags: [t]
        - id: c
          <<: {user: From merge}
        """
    )
    path = write(tmp_path / "g.yaml", text)
    record_references(path, {"a": "ra", "b": "rb", "c": "rc"})
    assert references(path) == {"a": "ra", "b": "rb", "c": "rc"}
    assert read(path) == dedent(
        """
        - id: a
          user: &q Shared question
          reference: ra
          tags: [t]
        - id: b
          user: *q
          reference: rb
          tags: [t]
        - id: c
          <<: {user: From merge}
          reference: rc
        """
    )


# --------------------------------------------------------------------------------------------
# Refusals
# --------------------------------------------------------------------------------------------


def test_flow_style_case_is_refused_with_file_line_and_id(tmp_path: Path) -> None:
    text = "# c\n- id: a\n  user: q\n- {id: flow, user: q}\n"
    path = write(tmp_path / "g.yaml", text)
    with pytest.raises(RecordError) as info:
        record_references(path, {"a": "ok", "flow": "no"})
    message = str(info.value)
    assert message.startswith(f"{path}:4: case 'flow': the case is a flow-style mapping")
    assert (info.value.line, info.value.case_id) == (4, "flow")
    assert read(path) == text
    # Without the flow case the others record fine.
    assert record_references(path, {"a": "ok"}).filled == ["a"]


def test_flow_style_sequence_of_cases_is_refused(tmp_path: Path) -> None:
    text = "[{id: a, user: q}]\n"
    path = write(tmp_path / "g.yaml", text)
    with pytest.raises(RecordError, match="flow-style mapping"):
        record_references(path, {"a": "x"})
    assert read(path) == text


def test_reference_alias_and_anchor_are_refused(tmp_path: Path) -> None:
    text = dedent(
        """
        - id: a
          user: q
          reference: &r shared
        - id: b
          user: q
          reference: *r
        """
    )
    path = write(tmp_path / "g.yaml", text)
    with pytest.raises(RecordError, match=r"case 'a': the reference has a YAML anchor"):
        record_references(path, {"a": "x"}, overwrite=True)
    with pytest.raises(RecordError, match=r"case 'b': the reference is a YAML alias"):
        record_references(path, {"b": "x"}, overwrite=True)
    assert read(path) == text


def test_change_that_would_reach_another_case_is_refused(tmp_path: Path) -> None:
    text = dedent(
        """
        - &base
          id: a
          user: q
        - <<: *base
          id: b
        """
    )
    path = write(tmp_path / "g.yaml", text)
    with pytest.raises(RecordError) as info:
        record_references(path, {"a": "x"})
    assert info.value.case_id == "b"
    assert "would also change this case (reference)" in str(info.value)
    assert read(path) == text


def test_file_that_does_not_load_is_refused(tmp_path: Path) -> None:
    text = '{"id": "a", "user": "q", "treshold": 1}\n'
    path = write(tmp_path / "g.jsonl", text)
    with pytest.raises(RecordError) as info:
        record_references(path, {"a": "x"})
    assert str(info.value).startswith(f"{path}:1: the file does not load, fix it first:\n")
    assert "did you mean 'threshold'?" in str(info.value)
    assert read(path) == text


def test_other_refusals(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match=r"unsupported file type '\.txt'"):
        record_references(tmp_path / "g.txt", {})
    with pytest.raises(RecordError, match="cannot read file"):
        record_references(tmp_path / "missing.jsonl", {})
    bad = tmp_path / "latin.jsonl"
    bad.write_bytes(b'{"id": "a", "user": "caf\xe9"}\n')
    with pytest.raises(RecordError, match="not valid UTF-8"):
        record_references(bad, {"a": "x"})
    path = write(tmp_path / "g.jsonl", '{"id": "a", "user": "q"}\n')
    with pytest.raises(RecordError, match=r":1: case 'a': the reference is not valid Unicode"):
        record_references(path, {"a": "lone \ud800 surrogate"})
    with pytest.raises(TypeError, match="reference of case 'a' must be a string, got int"):
        record_references(path, {"a": 3})  # type: ignore[dict-item]
    assert read(path) == '{"id": "a", "user": "q"}\n'


def test_verification_failure_leaves_the_file_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "g.yaml", YAML_LIST)
    # An editor bug that writes the wrong text must be caught before the file is replaced.
    monkeypatch.setattr(recording, "_yaml_forms", lambda *a: iter(["reference: wrong"]))
    monkeypatch.setattr(recording, "_reads_back", lambda doc, value: True)
    with pytest.raises(RecordError) as info:
        record_references(path, {"last": "right"})
    assert str(info.value) == (
        f"{path}:26: case 'last': the recorded reference would not load back unchanged "
        "(it would read 'wrong'); nothing written"
    )
    assert read(path) == YAML_LIST
    assert no_temp_files(tmp_path)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def test_write_is_atomic_keeps_mode_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = write(tmp_path / "g.jsonl", JSONL)
    os.chmod(path, 0o640)
    inode = path.stat().st_ino
    record_references(path, {"a": "x"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert path.stat().st_ino != inode  # replaced, not rewritten in place
    assert no_temp_files(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.jsonl"]


def test_failed_replace_leaves_the_original(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "g.jsonl", JSONL)

    def fail(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(RecordError, match="cannot write file: No space left on device"):
        record_references(path, {"a": "x"})
    assert read(path) == JSONL
    assert no_temp_files(tmp_path)


def test_file_changed_meanwhile_is_not_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "g.jsonl", JSONL)
    real_verify = recording._verify

    def verify_then_edit(*args: object, **kwargs: object) -> None:
        real_verify(*args, **kwargs)  # type: ignore[arg-type]
        write(path, JSONL + '{"id": "e", "user": "new case"}\n')

    monkeypatch.setattr(recording, "_verify", verify_then_edit)
    with pytest.raises(RecordError, match="the file changed while references were recorded"):
        record_references(path, {"a": "x"})
    assert read(path).endswith('"new case"}\n')
    assert no_temp_files(tmp_path)


def test_symlink_target_is_written_and_link_kept(tmp_path: Path) -> None:
    target = write(tmp_path / "real.jsonl", JSONL)
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    record_references(link, {"a": "x"})
    assert link.is_symlink()
    assert references(target)["a"] == "x"


def test_dry_run_writes_nothing_but_shows_the_diff(tmp_path: Path) -> None:
    path = write(tmp_path / "g.yaml", YAML_LIST)
    report = record_references(path, {"last": "z"}, dry_run=True, display_path="golden/g.yaml")
    assert read(path) == YAML_LIST
    assert not report.written
    assert report.changed
    assert report.path == "golden/g.yaml"
    assert report.diff() == (
        "--- a/golden/g.yaml\n"
        "+++ b/golden/g.yaml\n"
        "@@ -25,3 +25,4 @@\n"
        "     answer.\n"
        " - id: last\n"
        "   user: Last question\n"
        "+  reference: z\n"
    )


# --------------------------------------------------------------------------------------------
# Reports, diffs, several files
# --------------------------------------------------------------------------------------------


def test_unified_diff() -> None:
    assert unified_diff("a\n", "a\n") == ""
    assert unified_diff("a\nb", "a\nc", "f.yaml") == (
        "--- a/f.yaml\n+++ b/f.yaml\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n"
        "+c\n\\ No newline at end of file\n"
    )
    # U+2028 inside a JSON line is not a line break for the diff.
    assert unified_diff("x\u2028y\n", "x\u2028z\n").count("\n") == 5


def test_report_summary() -> None:
    report = RecordReport(
        "g.jsonl",
        filled=["a", "b"],
        overwritten=["c"],
        skipped_existing=["d"],
        unknown_ids=["u1", "u2"],
    )
    assert report.summary() == (
        "g.jsonl: 2 filled, 1 overwritten, 1 kept their existing reference (overwrite to "
        "replace), 2 unknown id(s) (u1, u2)"
    )
    failed = RecordReport("g.yaml", error=RecordError("g.yaml", "boom", line=3))
    assert failed.summary() == "g.yaml: not recorded: boom"


def test_record_many_writes_good_files_and_reports_bad_ones(tmp_path: Path) -> None:
    good = write(tmp_path / "good.jsonl", JSONL)
    flow_text = "- {id: f, user: q}\n"
    flow = write(tmp_path / "flow.yaml", flow_text)
    yml = write(tmp_path / "g.yaml", YAML_LIST)
    reports = record_many({good: {"a": "x"}, flow: {"f": "y"}, yml: {"last": "z"}})
    assert [r.path for r in reports] == [str(good), str(flow), str(yml)]
    assert [r.written for r in reports] == [True, False, True]
    assert reports[1].error is not None
    assert reports[1].error.case_id == "f"
    assert reports[1].summary().startswith(f"{flow}: not recorded: the case is a flow-style")
    assert read(flow) == flow_text
    assert references(good)["a"] == "x"
    assert references(yml)["last"] == "z"


def test_record_many_all_or_nothing_and_dry_run(tmp_path: Path) -> None:
    good = write(tmp_path / "good.jsonl", JSONL)
    flow = write(tmp_path / "flow.yaml", "- {id: f, user: q}\n")
    reports = record_many({good: {"a": "x"}, flow: {"f": "y"}}, all_or_nothing=True)
    assert [r.written for r in reports] == [False, False]
    assert reports[0].changed
    assert reports[1].error is not None
    assert read(good) == JSONL
    reports = record_many({good: {"a": "x"}}, dry_run=True, display_paths={good: "golden/g.jsonl"})
    assert reports[0].path == "golden/g.jsonl"
    assert reports[0].changed
    assert not reports[0].written
    assert read(good) == JSONL


def test_record_many_merges_paths_to_the_same_file(tmp_path: Path) -> None:
    path = write(tmp_path / "g.jsonl", JSONL)
    other_name = tmp_path / "sub" / ".." / "g.jsonl"
    (tmp_path / "sub").mkdir()
    [report] = record_many({path: {"a": "x"}, other_name: {"b": "y"}})
    assert report.filled == ["a", "b"]
    assert references(path)["b"] == "y"
    [report] = record_many({path: {"d": "1"}, other_name: {"d": "2"}})
    assert report.error is not None
    assert "two different references given" in str(report.error)
    assert references(path)["d"] is None


def test_json_helper_matches_loader_for_all_tricky_text() -> None:
    for value in TRICKY:
        dumped = recording._json_string(value, '{"id": "a"}')
        assert json.loads(dumped) == value
        assert "\n" not in dumped
        assert "\u2028" not in dumped


def test_yaml_replaces_values_written_over_several_lines(tmp_path: Path) -> None:
    text = dedent(
        """
        - id: plain
          user: q
          reference: first line
            continues here
          tags: [t]
        - id: next-line
          user: q
          reference:
            "quoted on the next line"
        - id: todo
          user: q
          reference: ~  # todo: record
          tags: [t]
        """
    )
    path = write(tmp_path / "g.yml", text)
    record_references(path, {"plain": "new", "next-line": "new 2", "todo": "a\nb"}, overwrite=True)
    assert read(path) == dedent(
        """
        - id: plain
          user: q
          reference: new
          tags: [t]
        - id: next-line
          user: q
          reference: new 2
        - id: todo
          user: q
          reference: |-  # todo: record
            a
            b
          tags: [t]
        """
    )
