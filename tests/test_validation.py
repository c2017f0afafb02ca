"""The validation kit (``core/validation.py``) and the one atomic write (``core/files.py``)."""

from __future__ import annotations

import os
import stat
import textwrap
from pathlib import Path

import pytest
import yaml

from pytest_llmregress.core.files import FileChangedError, atomic_write_bytes, atomic_write_text
from pytest_llmregress.core.validation import (
    KeyedError,
    LineMap,
    Problem,
    Problems,
    describe,
    did_you_mean,
    first_unknown_key,
    jsonable_problem,
    type_and_repr,
    type_name,
    unknown_key_message,
    yaml_duplicate_keys,
    yaml_kind,
)

# -- describing values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "null"),
        (True, "boolean True"),
        (3, "integer 3"),
        (2.5, "number 2.5"),
        ("high", "string 'high'"),
        ([], "an empty list"),
        ({}, "an empty mapping"),
        ([1], "list [1]"),
        ({"a": 1}, "mapping {'a': 1}"),
        ("x" * 50, "string '" + "x" * 36 + "..."),
    ],
)
def test_describe(value: object, expected: str) -> None:
    assert describe(value) == expected


def test_type_name_words() -> None:
    values: list[object] = [None, False, 1, 1.0, "", [], {}]
    assert [type_name(v) for v in values] == [
        "null", "boolean", "integer", "number", "string", "list", "mapping",
    ]  # fmt: skip
    assert type_name(1, article=True) == "an integer"
    assert type_name({}, article=True) == "a mapping"
    assert type_name(1, article=True, json=True) == "a number"
    assert type_name({}, article=True, json=True) == "an object"
    assert type_name(b"x", article=True) == "bytes"
    assert type_and_repr("") == "str ''"


def test_did_you_mean() -> None:
    assert did_you_mean("tgas", ["tags", "params"]) == "; did you mean 'tags'?"
    assert did_you_mean("zzz", ["tags", "params"]) == ""


def test_unknown_key_message_is_written_when_called() -> None:
    message = unknown_key_message("field", "tgas", ("id", "tags"))
    assert message() == "unknown field 'tgas' (expected one of: id, tags); did you mean 'tags'?"
    assert unknown_key_message("key", 3, ("a",), one_of=False)() == "unknown key 3 (expected: a)"


def test_first_unknown_key() -> None:
    assert first_unknown_key({"b": 1, "z": 2, "a": 3}, ("b",)) == "a"
    assert first_unknown_key({"b": 1}, ("b",)) is None


def test_jsonable_problem() -> None:
    assert jsonable_problem({"a": [1, "x", None]}, "metadata") is None
    assert jsonable_problem({"a": [1, float("nan")]}, "metadata") == (
        "metadata.a[1]",
        "nan is not a finite number",
    )
    assert jsonable_problem({1: 2}, "m") == ("m", "expected string keys, got key integer 1")
    assert jsonable_problem({"s": {1, 2}}, "m") == ("m.s", "expected a JSON value, got set {1, 2}")


# -- problems ---------------------------------------------------------------------------------


def test_problem_format_leaves_out_what_is_not_known() -> None:
    assert Problem(3, "tags[0]", "bad", "c1").format("g.yaml") == (
        "g.yaml:3: case 'c1': field 'tags[0]': bad"
    )
    assert Problem(None, None, "bad").format("g.yaml") == "g.yaml: bad"
    assert Problem(2, "versions.x", "bad", "t").format("p.yaml", subject="task", field="key") == (
        "p.yaml:2: task 't': key 'versions.x': bad"
    )


def test_problems_keep_the_first_and_count_the_rest() -> None:
    problems: Problems[Problem] = Problems(limit=2)
    built: list[int] = []

    def make(line: int) -> Problem:
        built.append(line)
        return Problem(line, None, "bad")

    for line in (5, 1, 3):
        problems.add(lambda line=line: make(line))  # type: ignore[misc]
    assert len(problems) == 3
    assert problems.omitted == 1
    assert built == [5, 1]  # the omitted problem is never built
    assert [p.line for p in problems.sorted(lambda p: p.line or 0)] == [1, 5]


def test_keyed_error_names_file_and_key() -> None:
    error = KeyedError.at("missing", path=Path("a.toml"), key="canary.pct")
    assert str(error) == "a.toml: canary.pct: missing"
    assert (error.path, error.key) == (Path("a.toml"), "canary.pct")
    assert str(KeyedError.at("missing", key="canary")) == "canary: missing"


# -- the YAML line map ------------------------------------------------------------------------

DOCUMENT = textwrap.dedent(
    """\
    defaults: &base
      threshold: 0.9
      tags: [a, b]
    cases:
      - id: one
        <<: *base
        messages:
          - role: user
            content: hi
          - role: assistant
            content: >
              folded
      - id: two
        params:
          stop:
            - "x"
            - "y"
      - *base
    """
)


def line_map() -> LineMap:
    root = yaml.compose(DOCUMENT, Loader=yaml.SafeLoader)
    assert root is not None
    return LineMap(root)


@pytest.mark.parametrize(
    ("path", "line"),
    [
        (("defaults",), 1),
        (("defaults", "threshold"), 2),
        (("defaults", "tags", 1), 3),
        (("cases",), 4),
        (("cases", 0), 5),
        (("cases", 0, "id"), 5),
        (("cases", 0, "messages", 1, "content"), 11),
        (("cases", 0, "messages", 0, "role"), 8),
        (("cases", 1, "params", "stop", 1), 17),
        (("cases", 0, "threshold"), 2),  # through the merge key: where the anchor writes it
        (("cases", 2, "tags"), 3),  # an alias is the node it names
        (("cases", 1, "params", "nope"), 14),  # as far as the document has the path
        (("cases", 9), 4),
    ],
)
def test_line_map(path: tuple[str | int, ...], line: int) -> None:
    assert line_map().line(path) == line


def test_line_map_defaults_and_depth() -> None:
    lines = line_map()
    assert lines.line(("nothing",)) == 1  # the node's own line
    assert lines.line(("nothing",), 42) == 42
    assert lines.line(("cases", 1, "params"), depth=1) == 4
    assert lines.key_line("cases", 99) == 4
    assert lines.key_line(None, 99) == 99


def test_yaml_duplicate_keys_and_kind() -> None:
    root = yaml.compose("a: 1\nb: [x]\na: 2\n", Loader=yaml.SafeLoader)
    assert isinstance(root, yaml.MappingNode)
    assert yaml_duplicate_keys(root, "the case") == [
        (3, "duplicate key 'a' in the case (first at line 1)")
    ]
    assert [yaml_kind(value) for _, value in root.value] == ["integer 1", "a list", "integer 2"]
    # timestamps stay text
    date = yaml.compose("2024-05-01", Loader=yaml.SafeLoader)
    assert date is not None
    assert yaml_kind(date) == "string '2024-05-01'"


# -- the atomic write -------------------------------------------------------------------------


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_atomic_write_keeps_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "config.toml"
    target.write_text("old")
    target.chmod(0o640)
    atomic_write_text(target, "new ü")
    assert target.read_text(encoding="utf-8") == "new ü"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert leftovers(tmp_path) == []


def test_atomic_write_new_file_gets_the_usual_mode(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "new.json", b"{}")
        target = tmp_path / "kept.json"
        target.write_text("old")
        target.chmod(0o600)
        atomic_write_text(target, "new", keep_mode=False)
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o644
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_atomic_write_leaves_no_temporary_file_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "results.json"
    target.write_text("old")

    def fail(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert leftovers(tmp_path) == []


def test_atomic_write_refuses_a_file_changed_meanwhile(tmp_path: Path) -> None:
    target = tmp_path / "golden.yaml"
    target.write_bytes(b"changed by someone else")
    with pytest.raises(FileChangedError):
        atomic_write_bytes(target, b"ours", expected=b"what we read")
    assert target.read_bytes() == b"changed by someone else"
    assert leftovers(tmp_path) == []
    atomic_write_bytes(target, b"ours", expected=b"changed by someone else")
    assert target.read_bytes() == b"ours"
