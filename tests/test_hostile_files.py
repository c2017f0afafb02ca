"""Hostile golden files: each is a clear file:line error, never a hang, a crash or a traceback.

Alias bombs, runaway nesting, binary files, unclosed quotes, lone surrogates, control
characters, huge numbers and oversized files; and, end to end, the other files still run.
"""

from __future__ import annotations

import gzip
import json
import random
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_llmregress.cases import golden as cases_module
from pytest_llmregress.cases.golden import (
    MAX_ALIAS_CHARACTERS,
    MAX_ALIAS_NODES,
    MAX_DEPTH,
    CaseFileError,
    load_cases,
    parse_jsonl,
    parse_yaml,
)
from pytest_llmregress.testing.server import LocalProviderServer
from tests.test_plugin_e2e import model_args, qa_cases, scenario, write_cases

MakeServer = Callable[[dict[str, Any]], LocalProviderServer]
PointEnv = Callable[[LocalProviderServer], None]

TOO_DEEP = (
    f"lists and mappings are nested more than {MAX_DEPTH} levels deep, the most a golden file "
    "allows"
)


@pytest.fixture(params=["libyaml", "pure"])
def yaml_parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a YAML test with libyaml (when installed) and with the pure-Python parser."""
    import yaml

    if request.param == "pure":
        monkeypatch.delattr(yaml, "CSafeLoader", raising=False)
    elif getattr(yaml, "CSafeLoader", None) is None:  # pragma: no cover - libyaml is installed
        pytest.skip("libyaml is not installed")
    return str(request.param)


def yaml_errors(text: str, path: str = "g.yaml") -> list[str]:
    with pytest.raises(CaseFileError) as info:
        parse_yaml(text, path)
    return str(info.value).splitlines()


def jsonl_errors(text: str, path: str = "g.jsonl") -> list[str]:
    with pytest.raises(CaseFileError) as info:
        parse_jsonl(text, path)
    return str(info.value).splitlines()


def file_errors(path: Path) -> list[str]:
    with pytest.raises(CaseFileError) as info:
        load_cases(path, display_path=path.name)
    return str(info.value).splitlines()


# --------------------------------------------------------------------------------------------
# Alias bombs
# --------------------------------------------------------------------------------------------


def billion_laughs(levels: int = 9) -> str:
    """The classic: 9 aliases of 9 aliases of ... of 9 strings, about 500 bytes."""
    lines = [
        "- id: lol",
        "  user: hi",
        "  metadata:",
        "    a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]",
    ]
    for level in range(1, levels + 1):
        lines.append(f"    a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("levels", [9, 6])
def test_billion_laughs_is_refused_at_the_alias_that_goes_too_far(
    yaml_parser: str, levels: int
) -> None:
    # 9 levels: the classic, 1e9 strings, which ran for minutes. 6 levels (5e6 strings) the old
    # loader accepted after seconds of walking.
    text = billion_laughs(levels)
    assert len(text.encode()) < 700
    # a1..a5 add 672,588 nodes; the first *a5 in a6 adds 597,871 more.
    assert yaml_errors(text) == [
        "g.yaml:10: too much aliasing: with alias *a5, the aliases of this file repeat more "
        f"than {MAX_ALIAS_NODES:,} nodes, the most they may (the larger of {MAX_ALIAS_NODES:,} "
        "and the file's length)"
    ]


def test_aliases_of_a_long_string_count_its_characters() -> None:
    long_text = "x" * 100_000
    text = (
        f"- id: a\n  user: &long {long_text}\n  metadata:\n"
        f"    copies: [{', '.join(['*long'] * 600)}]\n"
    )
    assert yaml_errors(text) == [
        "g.yaml:4: too much aliasing: with alias *long, the aliases of this file repeat more "
        f"than {MAX_ALIAS_CHARACTERS:,} characters, the most they may (the larger of "
        f"{MAX_ALIAS_CHARACTERS:,} and the file's length)"
    ]


def test_aliases_in_merge_keys_count_toward_the_limit() -> None:
    lines = ["- &m0 {id: x, user: hi}"]
    for level in range(1, 30):
        lines.append(f"- &m{level} {{<<: [*m{level - 1}, *m{level - 1}]}}")
    [error] = yaml_errors("\n".join(lines) + "\n")
    assert "too much aliasing" in error


def test_recursive_alias_is_refused(yaml_parser: str) -> None:
    text = "- id: a\n  user: hi\n  metadata: &m\n    self: *m\n"
    assert yaml_errors(text) == [
        "g.yaml:4: alias *m is inside the node it names (anchored at line 3): a recursive "
        "structure cannot be a golden case"
    ]


def test_ordinary_aliases_and_merge_keys_still_load(yaml_parser: str) -> None:
    system = "You are a careful support agent. " * 300  # 9,900 characters, used 60 times
    items = "".join(
        f"  - <<: *base\n    id: case-{i}\n    user: question {i}\n    system: *sys\n"
        for i in range(60)
    )
    text = (
        f"defaults:\n  metadata: {{owner: team}}\ncases:\n"
        f"  - &base\n    id: base\n    user: hi\n    threshold: 0.5\n    system: &sys {system}\n"
        f"{items}"
    )
    loaded = parse_yaml(text, "g.yaml")
    assert len(loaded) == 61
    assert {(c.threshold, c.system) for c in loaded} == {(0.5, system.strip())}


def test_aliases_may_repeat_as_much_as_the_file_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cases_module, "MAX_ALIAS_CHARACTERS", 1000)
    big = "y" * 600
    text = f"- id: a\n  user: &big {big}\n  reference: *big\n  system: *big\n"
    [error] = yaml_errors(text)
    assert error.startswith("g.yaml:4: too much aliasing: with alias *big, the aliases of this ")
    # A file longer than the limit may alias up to its own length.
    padded = text + f"# {'.' * 1200}\n"
    [case] = parse_yaml(padded, "g.yaml")
    assert case.reference == case.system == big


# --------------------------------------------------------------------------------------------
# Deep nesting
# --------------------------------------------------------------------------------------------


def test_deep_yaml_flow_nesting_is_an_error_not_a_recursion_error(yaml_parser: str) -> None:
    text = "- id: a\n  user: hi\n  metadata:\n    x: " + "[" * 100_000 + "]" * 100_000 + "\n"
    assert yaml_errors(text) == [f"g.yaml:4: {TOO_DEEP}"]


def test_deep_yaml_block_nesting_names_the_line(yaml_parser: str) -> None:
    body = "".join("  " * (level + 2) + f"k{level}:\n" for level in range(2000))
    text = "- id: a\n  user: hi\n  metadata:\n" + body + "  " * 2002 + "end\n"
    # The case is level 2, metadata (the mapping of k0) level 3: the mapping of k98, on line
    # 102, would be level 101.
    assert yaml_errors(text) == [f"g.yaml:102: {TOO_DEEP}"]


@pytest.mark.parametrize(("levels", "ok"), [(MAX_DEPTH - 3, True), (MAX_DEPTH - 2, False)])
def test_yaml_depth_limit_is_exact(levels: int, ok: bool) -> None:
    # list of cases (1) > case (2) > metadata (3) > `levels` nested lists
    text = "- id: a\n  user: hi\n  metadata: {x: " + "[" * levels + "]" * levels + "}\n"
    if ok:
        [case] = parse_yaml(text, "g.yaml")
        assert "x" in case.metadata
    else:
        assert yaml_errors(text) == [f"g.yaml:3: {TOO_DEEP}"]


def test_yaml_depth_counts_what_aliases_stand_for(yaml_parser: str) -> None:
    deep = "[" * 60 + "]" * 60
    text = (
        f"- id: a\n  user: hi\n  metadata:\n    a: &deep {deep}\n    b: {'[' * 50}*deep{']' * 50}\n"
    )
    assert yaml_errors(text) == [f"g.yaml:5: with alias *deep, {TOO_DEEP}"]


def test_deep_jsonl_line_is_an_error_with_its_line() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    text = (
        '{"id": "a", "user": "hi"}\n'
        f'{{"id": "b", "user": "hi", "metadata": {{"x": {deep}}}}}\n'
        f"{deep}\n"
        '{"id": "c", "user": 5}\n'
    )
    assert jsonl_errors(text) == [
        f"g.jsonl:2: {TOO_DEEP}",
        f"g.jsonl:3: {TOO_DEEP}",
        "g.jsonl:4: case 'c': field 'user': expected a non-empty string, got integer 5",
    ]


def test_jsonl_nesting_below_the_decoder_limit_is_refused_by_field() -> None:
    deep = "[" * 300 + "]" * 300
    text = f'{{"id": "a", "user": "hi", "metadata": {{"x": {deep}}}}}\n[{deep}]\n'
    assert jsonl_errors(text) == [
        f"g.jsonl:1: case 'a': field 'metadata': {TOO_DEEP}",
        f"g.jsonl:2: {TOO_DEEP}",
    ]


@pytest.mark.parametrize(("levels", "ok"), [(MAX_DEPTH - 2, True), (MAX_DEPTH - 1, False)])
def test_jsonl_depth_limit_is_exact(levels: int, ok: bool) -> None:
    # case object (1) > metadata (2) > `levels` nested lists
    text = '{"id": "a", "user": "hi", "metadata": {"x": ' + "[" * levels + "]" * levels + "}}"
    if ok:
        [case] = parse_jsonl(text, "g.jsonl")
        assert "x" in case.metadata
    else:
        assert jsonl_errors(text) == [f"g.jsonl:1: case 'a': field 'metadata': {TOO_DEEP}"]


# --------------------------------------------------------------------------------------------
# Binary files and encodings
# --------------------------------------------------------------------------------------------


def not_utf8(line: int, byte: int, column: int, reason: str = "invalid start byte") -> str:
    return (
        f":{line}: not UTF-8 text: byte 0x{byte:02X} at column {column} cannot be decoded "
        f"({reason}); golden files are UTF-8 text (is this a binary file?)"
    )


@pytest.mark.parametrize("suffix", [".jsonl", ".yaml"])
def test_png_renamed_as_a_golden_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"image{suffix}"
    noise = bytes(random.Random(7).randrange(256) for _ in range(4000))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + noise)
    assert file_errors(path) == [f"image{suffix}" + not_utf8(1, 0x89, 1)]


def test_gzip_renamed_as_a_golden_file(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_bytes(gzip.compress(b'{"id": "a", "user": "hi"}\n' * 50))
    assert file_errors(path) == ["cases.jsonl" + not_utf8(1, 0x8B, 2)]


def test_bad_byte_is_located_by_line_and_character_column(tmp_path: Path) -> None:
    path = tmp_path / "cases.yaml"
    # CRLF, CR and LF line ends; "é" is one character (two bytes) before the bad byte.
    path.write_bytes(b"- id: a\r\n  user: hi\r  reference: caf\xc3\xa9 \xff\n")
    assert file_errors(path) == ["cases.yaml" + not_utf8(3, 0xFF, 19)]


def test_truncated_multibyte_character(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_bytes(b'{"id": "a", "user": "hi"}\n{"id": "b", "user": "\xe2\x82"}\n')
    assert file_errors(path) == ["cases.jsonl" + not_utf8(2, 0xE2, 22, "invalid continuation byte")]


@pytest.mark.parametrize(
    ("suffix", "content"),
    [(".jsonl", b'{"id": "a", "user": "hi"}\n'), (".yaml", b"- id: a\n  user: hi\n")],
)
def test_nul_bytes_are_a_binary_file(tmp_path: Path, suffix: str, content: bytes) -> None:
    path = tmp_path / f"cases{suffix}"
    path.write_bytes(content + b"ab\x00\x00\x00\x01")
    line = content.count(b"\n") + 1
    assert file_errors(path) == [
        f"cases{suffix}:{line}: NUL character at column 3: golden files are text (is this a "
        "binary file?)"
    ]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_utf16_and_utf32_files_say_so(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_bytes('{"id": "a", "user": "hi"}\n'.encode(encoding))  # with a byte order mark
    name = encoding.upper()
    assert file_errors(path) == [
        f"cases.jsonl: file is {name} text (it starts with a {name} byte order mark); golden "
        "files are UTF-8: save it as UTF-8"
    ]


def test_utf16_without_a_byte_order_mark_is_a_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "cases.yaml"
    path.write_bytes("- id: a\n".encode("utf-16-le"))
    assert file_errors(path) == [
        "cases.yaml:1: NUL character at column 2: golden files are text (is this a binary file?)"
    ]


BOM_CRLF = {
    ".jsonl": (
        '// note\r\n{"id": "a", "user": "hi"}\r\n\r\n{"id": "b", "user": "yo", "threshold": T}\r\n',
        4,
    ),
    ".yaml": ("# note\r\n- id: a\r\n  user: hi\r\n- id: b\r\n  user: yo\r\n  threshold: T\r\n", 6),
}


@pytest.mark.parametrize("suffix", sorted(BOM_CRLF))
@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_bom_and_crlf_keep_line_numbers(tmp_path: Path, suffix: str, newline: str) -> None:
    text, error_line = BOM_CRLF[suffix]
    text = text.replace("\r\n", newline)
    path = tmp_path / f"cases{suffix}"
    path.write_bytes(b"\xef\xbb\xbf" + text.replace("T", "2").encode())
    assert file_errors(path) == [
        f"cases{suffix}:{error_line}: case 'b': field 'threshold': expected a number between 0 "
        "and 1, got 2"
    ]
    path.write_bytes(b"\xef\xbb\xbf" + text.replace("T", "0.5").encode())
    assert [(c.id, c.line) for c in load_cases(path)] == [("a", 2), ("b", 4)]


# --------------------------------------------------------------------------------------------
# YAML syntax errors name the line where the problem starts
# --------------------------------------------------------------------------------------------

SYNTAX: list[tuple[str, str]] = [
    (
        '- id: a\n  user: "hello\n  reference: hi\n- id: b\n  user: yo\n',
        "g.yaml:2: invalid YAML: the quoted string at column 9 is never closed",
    ),
    (
        "- id: a\n  user: 'it is\n  reference: hi\n",
        "g.yaml:2: invalid YAML: the quoted string at column 9 is never closed",
    ),
    (
        "- id: x\n  user: [1\n\n\n",
        "g.yaml:2: invalid YAML: the '[' at column 9 is never closed",
    ),
    (
        "- id: x\n  metadata: {a: 1, b: 2\n",
        "g.yaml:2: invalid YAML: the '{' at column 13 is never closed",
    ),
    (
        "- id: a\n  user: hi\n  this is text\n  more: x\n",
        "g.yaml:3: invalid YAML: could not find expected ':' after the text at column 3",
    ),
]


@pytest.mark.parametrize(("text", "expected"), SYNTAX)
def test_yaml_syntax_error_names_where_it_starts(
    yaml_parser: str, text: str, expected: str
) -> None:
    assert yaml_errors(text) == [expected]


def test_an_unclosed_quote_that_swallows_lines_is_named() -> None:
    text = '- id: a\n  user: "hello\n  reference: hi\n- id: b\n  user: "yo"\n- id: c\n  user: x\n'
    assert yaml_errors(text) == [
        "g.yaml:2: invalid YAML: the quoted string at column 9 runs on to line 5, which then "
        "fails (expected <block end>, but found '<scalar>'); is its closing quote missing?"
    ]


def test_an_error_inside_a_flow_mapping_names_its_opening_line(yaml_parser: str) -> None:
    [error] = yaml_errors("- id: x\n  metadata: {a: 1\n  user: b\n")
    assert error.startswith("g.yaml:3: invalid YAML: ")
    assert error.endswith(" (in the '{' at line 2)")


def test_unclosed_quote_in_a_large_file_names_its_line(yaml_parser: str) -> None:
    # Above the size up to which libyaml's errors are parsed again in pure Python.
    filler = "".join(f"- id: c{i}\n  user: question {i} {'z' * 80}\n" for i in range(4000))
    text = filler + '- id: last\n  user: "never closed\n  reference: x\n'
    assert len(text) > 256 * 1024
    assert yaml_errors(text) == [
        "g.yaml:8002: invalid YAML: the quoted string at column 9 is never closed"
    ]


# --------------------------------------------------------------------------------------------
# Lone surrogates, control characters, numbers
# --------------------------------------------------------------------------------------------

LONE = (
    "holds a lone surrogate U+D800 (from an escape such as \\ud800), which is not a character: "
    "it is not valid Unicode text and cannot be sent to a model"
)


def test_lone_surrogate_in_jsonl_names_line_and_field() -> None:
    text = "\n".join(
        [
            json.dumps({"id": "a", "user": "fine"}),
            '{"id": "b", "user": "bad \\ud800 text"}',
            '{"id": "c", "messages": [{"role": "user", "content": "x\\udfff"}]}',
            '{"id": "d", "user": "hi", "metadata": {"k\\ud800": 1}}',
            '{"id": "e", "user": "emoji \\ud83d\\ude00 is fine"}',
        ]
    )
    assert jsonl_errors(text) == [
        f"g.jsonl:2: case 'b': field 'user': {LONE}",
        "g.jsonl:3: case 'c': field 'messages[0].content': holds a lone surrogate U+DFFF (from "
        "an escape such as \\udfff), which is not a character: it is not valid Unicode text and "
        "cannot be sent to a model",
        f"g.jsonl:4: case 'd': field 'metadata': a key {LONE}",
    ]
    assert parse_jsonl(text.splitlines()[-1], "g.jsonl")[0].user == "emoji \U0001f600 is fine"


def test_lone_surrogate_in_yaml_names_line_and_field(yaml_parser: str) -> None:
    text = textwrap.dedent(
        """\
        defaults:
          system: "sys \\ud800"
        cases:
          - id: a
            user: hi
            reference: "ref \\ud800"
        """
    )
    assert yaml_errors(text) == [
        f"g.yaml:2: field 'defaults.system': {LONE}",
        f"g.yaml:6: case 'a': field 'reference': {LONE}",
    ]


def test_yaml_surrogate_pair_escape_suggests_the_right_escape(yaml_parser: str) -> None:
    assert yaml_errors('- id: a\n  user: "smile \\ud83d\\ude00"\n') == [
        "g.yaml:2: case 'a': field 'user': holds the surrogate pair U+D83D U+DE00 as two "
        "characters, which is not valid Unicode text and cannot be sent to a model; write the "
        "character itself, or in YAML the escape \\U0001F600"
    ]
    [case] = parse_yaml('- id: a\n  user: "smile \\U0001F600"\n', "g.yaml")
    assert case.user == "smile \U0001f600"


def test_raw_surrogate_in_text_given_to_the_parser() -> None:
    assert yaml_errors("- id: a\n  user: x\ud800\n") == [
        "g.yaml:2: lone surrogate U+D800 at column 10 is not a character"
    ]
    assert jsonl_errors('{"id": "a", "user": "x\ud800"}') == [
        "g.jsonl:1: case 'a': field 'user': holds a lone surrogate U+D800 (from an escape such "
        "as \\ud800), which is not a character: it is not valid Unicode text and cannot be sent "
        "to a model"
    ]


@pytest.mark.parametrize("char", ["\x07", "\x1b", "\x7f", "\x9b"])
def test_yaml_control_character_names_line_and_column(yaml_parser: str, char: str) -> None:
    code = ord(char)
    assert yaml_errors(f"- id: a\n  user: bell{char}\n") == [
        f"g.yaml:2: control character U+{code:04X} at column 13 is not allowed in YAML; write "
        f'it as an escape in a double-quoted string ("\\x{code:02x}")'
    ]


def test_escaped_control_characters_are_text() -> None:
    [case] = parse_yaml('- id: a\n  user: "bell\\x07 tab\\t"\n', "g.yaml")
    assert case.user == "bell\x07 tab\t"
    [case] = parse_jsonl('{"id": "a", "user": "bell\\u0007"}', "g.jsonl")
    assert case.user == "bell\x07"


def test_raw_control_character_in_jsonl_is_invalid_json() -> None:
    assert jsonl_errors('{"id": "a", "user": "bell\x07"}') == [
        "g.jsonl:1: invalid JSON at column 26: Invalid control character at"
    ]


def test_numbers_too_long_to_read() -> None:
    digits = "1" * 5000
    assert jsonl_errors(f'{{"id": "a", "user": "hi", "metadata": {{"n": {digits}}}}}') == [
        "g.jsonl:1: invalid JSON: a number has more than 4300 digits, more than Python reads as "
        "an integer"
    ]
    assert yaml_errors(f"- id: a\n  user: hi\n  metadata: {{n: {digits}}}\n") == [
        "g.yaml:1: invalid YAML: a number has more than 4300 digits, more than Python reads as "
        "an integer"
    ]


def test_values_that_do_not_fit_their_tag() -> None:
    assert yaml_errors("- id: a\n  user: hi\n  metadata: {flag: !!bool maybe}\n") == [
        "g.yaml:1: invalid YAML: a value does not fit its tag (KeyError: 'maybe')"
    ]
    assert yaml_errors("cases: !!int many\n") == [
        "g.yaml:1: expected 'cases' to be a list of cases, got scalar 'many'"
    ]


# --------------------------------------------------------------------------------------------
# Size
# --------------------------------------------------------------------------------------------


def test_files_over_the_size_limit_are_refused_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cases_module, "MAX_FILE_SIZE", 2 * 1024 * 1024)
    path = tmp_path / "huge.jsonl"
    path.write_bytes(b'{"id": "a", "user": "hi"}\n' + b" " * (2 * 1024 * 1024))
    assert file_errors(path) == [
        "huge.jsonl: file is larger than 2 MB, the most a golden file may be; split it into "
        "several files"
    ]


def test_a_gigantic_line_loads() -> None:
    long_text = "word " * 1_000_000
    [case] = parse_jsonl(json.dumps({"id": "a", "user": long_text}), "g.jsonl")
    assert len(case.user) == len(long_text)


def test_a_line_of_a_million_unknown_keys_lists_fifty() -> None:
    line = json.dumps({"id": "a", "user": "hi", **{f"k{i}": 1 for i in range(1_000_000)}})
    errors = jsonl_errors(line)
    assert len(errors) == 51
    assert errors[0].startswith("g.jsonl:1: case 'a': unknown field 'k0' (expected one of:")
    assert errors[-1] == "g.jsonl: 999950 more problem(s) not shown"


@pytest.mark.parametrize("enabled", [True, False])
def test_loading_leaves_the_garbage_collector_as_it_was(enabled: bool) -> None:
    import gc

    was = gc.isenabled()
    try:
        if not enabled:
            gc.disable()
        parse_yaml("- id: a\n  user: hi\n", "g.yaml")
        parse_jsonl('{"id": "a", "user": "hi"}', "g.jsonl")
        yaml_errors(billion_laughs())
        jsonl_errors("[" * 100_000)
        assert gc.isenabled() is enabled
    finally:
        if was:
            gc.enable()


# --------------------------------------------------------------------------------------------
# End to end: the hostile files are named, the good file runs
# --------------------------------------------------------------------------------------------


def write_hostile_files(folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "laughs.yaml").write_text(billion_laughs(), encoding="utf-8")
    deep = "[" * 100_000 + "]" * 100_000
    (folder / "deep.jsonl").write_text(
        f'{{"id": "deep", "user": "hi", "metadata": {{"x": {deep}}}}}\n', encoding="utf-8"
    )
    (folder / "deep.yaml").write_text(f"- id: deep\n  user: hi\n  metadata: {deep}\n")
    (folder / "image.jsonl").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    (folder / "quote.yaml").write_text('- id: q\n  user: "unclosed\n  reference: x\n')
    (folder / "surrogate.jsonl").write_text('{"id": "s", "user": "bad \\ud800"}\n')
    (folder / "recursive.yaml").write_text("- id: r\n  user: hi\n  metadata: &m {x: *m}\n")


def test_hostile_files_beside_a_good_one(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv, run_mode: list[str]
) -> None:
    cases = qa_cases(3)
    write_cases(pytester, "good.jsonl", cases)
    write_hostile_files(pytester.path / "golden_cases")
    provider_env(make_server(scenario(cases)))

    result = pytester.runpytest(*model_args(), *run_mode)

    result.assert_outcomes(passed=3, errors=7)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    output = result.stdout.str()
    assert "Traceback" not in output
    assert "RecursionError" not in output
    assert "INTERNALERROR" not in output + result.stderr.str()
    result.stdout.fnmatch_lines_random(
        [
            "*golden_cases/laughs.yaml:10: too much aliasing: with alias *a5*",
            f"*golden_cases/deep.jsonl:1: {TOO_DEEP}",
            f"*golden_cases/deep.yaml:3: {TOO_DEEP}",
            "*golden_cases/image.jsonl:1: not UTF-8 text: byte 0x89 at column 1*",
            "*golden_cases/quote.yaml:2: invalid YAML: the quoted string at column 9 is never "
            "closed",
            "*golden_cases/surrogate.jsonl:1: case 's': field 'user': holds a lone surrogate*",
            "*golden_cases/recursive.yaml:3: alias *m is inside the node it names*",
            "*reason: 7 golden files could not be loaded*golden_cases/deep.jsonl*",
        ]
    )


def test_hostile_files_alone_without_models(pytester: pytest.Pytester) -> None:
    write_hostile_files(pytester.path / "golden_cases")
    write_cases(pytester, "good.jsonl", qa_cases(2))
    result = pytester.runpytest("-p", "no:xdist")
    result.assert_outcomes(skipped=2, errors=7)
    assert "Traceback" not in result.stdout.str()
