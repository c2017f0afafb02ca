"""Prompt library: loading and validating prompt files, resolving a version per model, rendering."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_llmregress.cases.golden import GoldenCase, Message, PromptRef, parse_jsonl, parse_yaml
from pytest_llmregress.models.lifecycle import LifecycleData, parse_lifecycle_csv
from pytest_llmregress.prompts.library import (
    PromptError,
    PromptFileError,
    PromptLibrary,
    PromptProblem,
    PromptTask,
    PromptVersion,
    ResolvedPrompt,
    check_cases,
    check_prompt_model,
    parse_prompt_yaml,
    placeholders,
    prompts_digest,
    prompts_metadata,
    render,
    resolve_system,
)

SUPPORT = """\
task: support-answer
description: Answers customer questions from the policy.
variables: [policy]
versions:
  default: |-
    You are the support assistant of Acme Outdoor. Use only this policy: {policy}
  claude-sonnet-4-6: |-
    You support Acme Outdoor customers. Policy: {policy}
  gpt-5.5-2026-04-23: |-
    Acme Outdoor support. Reply as JSON {{"answer": ...}}. Policy: {policy}
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def errors(text: str, path: str = "p.yaml") -> list[str]:
    with pytest.raises(PromptFileError) as info:
        parse_prompt_yaml(textwrap.dedent(text), path)
    return str(info.value).splitlines()


def library(*texts: str) -> PromptLibrary:
    tasks: list[PromptTask] = []
    for i, text in enumerate(texts):
        tasks.extend(parse_prompt_yaml(textwrap.dedent(text), f"prompts/p{i}.yaml"))
    return PromptLibrary(tasks, source="prompts")


def task_with(*keys: str, default: bool = True) -> str:
    lines = ["task: t", "versions:"]
    if default:
        lines.append("  default: the default")
    lines += [f"  {key!r}: for {key}" for key in keys]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def test_parse_one_task() -> None:
    [task] = parse_prompt_yaml(SUPPORT, "prompts/support.yaml")
    assert task.name == "support-answer"
    assert task.description == "Answers customer questions from the policy."
    assert task.variables == ("policy",)
    assert task.declared
    assert (task.path, task.line) == ("prompts/support.yaml", 1)
    assert list(task.versions) == ["default", "claude-sonnet-4-6", "gpt-5.5-2026-04-23"]
    assert task.model_keys == ("claude-sonnet-4-6", "gpt-5.5-2026-04-23")
    assert task.default == PromptVersion(
        "default",
        "You are the support assistant of Acme Outdoor. Use only this policy: {policy}",
        ("policy",),
        5,
    )
    assert task.versions["claude-sonnet-4-6"].line == 7


def test_parse_several_tasks_and_inferred_variables() -> None:
    text = """\
        - task: greet
          versions:
            default: Hello {name}, welcome to {shop}. {name}!
            gpt-4o: Hi {name}.
        - task: plain
          versions:
            default: No variables, {{literal}} braces.
        """
    greet, plain = parse_prompt_yaml(textwrap.dedent(text), "p.yaml")
    assert (greet.name, greet.line, greet.variables, greet.declared) == (
        "greet",
        1,
        ("name", "shop"),
        False,
    )
    assert greet.versions["default"].placeholders == ("name", "shop")
    assert (plain.name, plain.line, plain.variables) == ("plain", 5, ())


def test_anchors_share_a_text_between_versions() -> None:
    text = """\
        task: t
        versions:
          default: &shared Be brief.
          gpt-4o: *shared
        """
    [task] = parse_prompt_yaml(textwrap.dedent(text), "p.yaml")
    assert task.versions["gpt-4o"].text == "Be brief."


def test_load_reads_yaml_files_recursively_in_path_order(tmp_path: Path) -> None:
    write(tmp_path, "support.yaml", SUPPORT)
    write(tmp_path, "sql/b.yml", "task: sql-b\nversions: {default: B}\n")
    write(tmp_path, "sql/a.yaml", "task: sql-a\nversions: {default: A}\n")
    write(tmp_path, "notes.md", "task: ignored")
    write(tmp_path, ".hidden.yaml", "not: valid: yaml: [")
    write(tmp_path, ".git/x.yaml", "not: valid: yaml: [")
    lib = PromptLibrary.load(tmp_path, display_dir="prompts")
    assert list(lib.tasks) == ["sql-a", "sql-b", "support-answer"]
    assert lib.tasks["sql-a"].path == "prompts/sql/a.yaml"
    assert lib.source == "prompts"
    assert "sql-a" in lib
    assert len(lib) == 3


def test_load_names_files_by_the_directory_as_given(tmp_path: Path) -> None:
    write(tmp_path, "s.yaml", SUPPORT)
    lib = PromptLibrary.load(str(tmp_path))
    assert lib.tasks["support-answer"].path == str(tmp_path / "s.yaml")


def test_empty_directory_gives_an_empty_library(tmp_path: Path) -> None:
    lib = PromptLibrary.load(tmp_path, display_dir="prompts")
    assert len(lib) == 0
    with pytest.raises(PromptError, match=r"^unknown prompt task 'x': no prompt files in prompts$"):
        lib.resolve("x", "gpt-4o")


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(PromptFileError) as info:
        PromptLibrary.load(tmp_path / "nope", display_dir="prompts")
    assert str(info.value) == "prompts: prompt directory does not exist"
    file = write(tmp_path, "f.yaml", SUPPORT)
    with pytest.raises(PromptFileError, match="is not a directory"):
        PromptLibrary.load(file)


def test_load_reports_every_problem_of_every_file_once(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", SUPPORT)
    write(tmp_path, "b.yaml", "task: b\nversions: {default: '{x'}\n")
    write(tmp_path, "c.yaml", "\n\n" + SUPPORT)
    (tmp_path / "d.yaml").write_bytes(b"task: \xff\n")
    write(tmp_path, "e.yaml", "task: [\n")
    with pytest.raises(PromptFileError) as info:
        PromptLibrary.load(tmp_path, display_dir="prompts")
    assert str(info.value).splitlines() == [
        "prompts/b.yaml:2: task 'b': key 'versions.default': unmatched '{'; write '{{' for a "
        "literal brace",
        "prompts/c.yaml:3: key 'task': duplicate task 'support-answer' (first in prompts/a.yaml:1)",
        "prompts/d.yaml: file is not valid UTF-8: invalid start byte at byte 6",
        "prompts/e.yaml:2: invalid YAML: expected the node content, but found '<stream end>'",
    ]
    assert info.value.problems[0] == PromptProblem(
        "prompts/b.yaml",
        2,
        "versions.default",
        "unmatched '{'; write '{{' for a literal brace",
        "b",
    )
    assert isinstance(info.value, PromptError)


def test_problems_are_capped(tmp_path: Path) -> None:
    text = "".join(f"- task: t{i}\n  versions: {{default: '}}'}}\n" for i in range(60))
    write(tmp_path, "many.yaml", text)
    with pytest.raises(PromptFileError) as info:
        PromptLibrary.load(tmp_path, display_dir="p")
    lines = str(info.value).splitlines()
    assert len(lines) == 51
    assert lines[-1] == "10 more prompt file problem(s) not shown"


BAD_FILES: list[tuple[str, list[str]]] = [
    ("", ["p.yaml: no prompt task in file"]),
    ("# only a comment\n", ["p.yaml: no prompt task in file"]),
    ("[]\n", ["p.yaml:1: no prompt task in file"]),
    (
        "just text\n",
        [
            "p.yaml:1: expected a task mapping (task, versions) or a list of them, got string "
            "'just text'"
        ],
    ),
    ("- 3\n", ["p.yaml:1: expected a task mapping, got integer 3"]),
    (
        "task: [\n",
        ["p.yaml:2: invalid YAML: expected the node content, but found '<stream end>'"],
    ),
    (
        "versions: {default: x}\n",
        ["p.yaml:1: missing 'task': every prompt task needs a name"],
    ),
    (
        "task: t\n",
        [
            "p.yaml:1: task 't': missing 'versions': a task needs at least one version (for "
            "example 'default')"
        ],
    ),
    (
        "task: a b\nversions: {default: x}\n",
        [
            "p.yaml:1: key 'task': invalid task name 'a b': it must start with a letter or digit "
            "and contain only letters, digits, '.', '_' and '-'"
        ],
    ),
    (
        "task: 5\nversions: {default: x}\n",
        ["p.yaml:1: key 'task': expected a task name, got integer 5"],
    ),
    (
        "task: t\nversion: {default: x}\n",
        [
            "p.yaml:1: task 't': missing 'versions': a task needs at least one version (for "
            "example 'default')",
            "p.yaml:2: task 't': unknown key 'version' (expected one of: task, description, "
            "variables, versions); did you mean 'versions'?",
        ],
    ),
    (
        "task: t\ntask: u\nversions: {default: x}\n",
        ["p.yaml:2: task 't': duplicate key 'task' in the task (first at line 1)"],
    ),
    (
        "task: t\ndescription: [1]\nversions: {default: x}\n",
        ["p.yaml:2: task 't': key 'description': expected a string, got a list"],
    ),
    (
        "task: t\nvariables: policy\nversions: {default: x}\n",
        [
            "p.yaml:2: task 't': key 'variables': expected a list of variable names, got string "
            "'policy'"
        ],
    ),
    (
        "task: t\nvariables:\n  - ok\n  - not ok\n  - 3\n  - ok\nversions: {default: x}\n",
        [
            "p.yaml:4: task 't': key 'variables[1]': invalid variable name 'not ok': it must "
            "start with a letter or '_' and contain only letters, digits and '_'",
            "p.yaml:5: task 't': key 'variables[2]': invalid variable name integer 3: it must "
            "start with a letter or '_' and contain only letters, digits and '_'",
            "p.yaml:6: task 't': key 'variables[3]': variable 'ok' is declared twice",
        ],
    ),
    (
        "task: t\nversions: [x]\n",
        [
            "p.yaml:2: task 't': key 'versions': expected a mapping of model id to prompt text, "
            "got a list"
        ],
    ),
    (
        "task: t\nversions: {}\n",
        ["p.yaml:2: task 't': key 'versions': expected at least one version, got an empty mapping"],
    ),
    (
        "task: t\nversions:\n  default: a\n  default: b\n",
        [
            "p.yaml:4: task 't': key 'versions': duplicate key 'default' in versions (first at "
            "line 3)"
        ],
    ),
    (
        "task: t\nversions:\n  claude sonnet: a\n  7: b\n",
        [
            "p.yaml:3: task 't': key 'versions': invalid version key 'claude sonnet': expected a "
            "model id or 'default'",
            "p.yaml:4: task 't': key 'versions': invalid version key integer 7: expected a model "
            "id or 'default'",
        ],
    ),
    (
        "task: t\nversions:\n  default:\n  gpt-4o: ''\n  o3: {text: x}\n  gpt-5: '   '\n",
        [
            "p.yaml:3: task 't': key 'versions.default': expected the prompt text (a non-empty "
            "string), got null",
            "p.yaml:4: task 't': key 'versions.gpt-4o': expected the prompt text (a non-empty "
            "string), got string ''",
            "p.yaml:5: task 't': key 'versions.o3': expected the prompt text (a non-empty "
            "string), got a mapping",
            "p.yaml:6: task 't': key 'versions.gpt-5': expected the prompt text (a non-empty "
            "string), got string '   '",
        ],
    ),
    (
        "task: t\nversions:\n  anthropic:claude-sonnet-4-6: a\n  claude-sonnet-4-6: b\n",
        [
            "p.yaml:4: task 't': key 'versions.claude-sonnet-4-6': versions "
            "'anthropic:claude-sonnet-4-6' and 'claude-sonnet-4-6' name the same model id "
            "'claude-sonnet-4-6'"
        ],
    ),
    (
        "base: &b {default: x}\n",
        [
            "p.yaml:1: unknown key 'base' (expected one of: task, description, variables, "
            "versions)",
            "p.yaml:1: missing 'task': every prompt task needs a name",
            "p.yaml:1: missing 'versions': a task needs at least one version (for example "
            "'default')",
        ],
    ),
    (
        "task: t\nversions:\n  <<: {gpt-4o: x}\n  default: y\n",
        ["p.yaml:3: task 't': key 'versions': merge keys ('<<') are not supported in versions"],
    ),
    (
        "task: t\nversions:\n  default: !python/name:os.system x\n",
        [
            "p.yaml:3: invalid YAML: could not determine a constructor for the tag "
            "'!python/name:os.system'"
        ],
    ),
    (
        "- task: t\n  versions: {default: x}\n- task: t\n  versions: {default: y}\n",
        ["p.yaml:3: key 'task': duplicate task 't' (first at line 1)"],
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD_FILES)
def test_bad_prompt_file(text: str, expected: list[str]) -> None:
    assert errors(text) == expected


def test_template_errors_point_at_the_line_inside_a_literal_block() -> None:
    text = """\
        task: t
        variables: [policy]
        versions:
          default: |-
            First line.

            Uses {policy} and {polcy}, then {a.b}
            and a lone } here.
          gpt-4o: "one {x} line"
        """
    assert errors(text) == [
        "p.yaml:7: task 't': key 'versions.default': invalid placeholder '{a.b}': a placeholder "
        "is a variable name in braces, like {policy}; write '{{' and '}}' for literal braces",
        "p.yaml:7: task 't': key 'versions.default': placeholder {polcy} is not a declared "
        "variable (variables: policy); did you mean 'policy'?",
        "p.yaml:8: task 't': key 'versions.default': unmatched '}'; write '}}' for a literal brace",
        "p.yaml:9: task 't': key 'versions.gpt-4o': placeholder {x} is not a declared variable "
        "(variables: policy)",
    ]


def test_every_malformed_brace_of_a_text_is_reported_where_it_is() -> None:
    # str.format reads `{a[}]}` as one field and stops at the first bad brace; a template
    # field ends at its first `}`, and scanning goes on behind each problem.
    text = """\
        task: t
        versions:
          default: |-
            {a[}]} then {ok}
            {x!r} {{fine}} {
            {y:{z}} and }
        """
    message = (
        "a placeholder is a variable name in braces, like {policy}; write '{{' and '}}' for "
        "literal braces"
    )
    where = "p.yaml:{}: task 't': key 'versions.default': "
    assert errors(text) == [
        where.format(4) + f"invalid placeholder '{{a[}}': {message}",
        where.format(4) + "unmatched '}'; write '}}' for a literal brace",
        where.format(5) + f"invalid placeholder '{{x!r}}': {message}",
        where.format(5) + "unmatched '{'; write '{{' for a literal brace",
        where.format(6) + "unmatched '{'; write '{{' for a literal brace",
        where.format(6) + "unmatched '}'; write '}}' for a literal brace",
        where.format(6) + "unmatched '}'; write '}}' for a literal brace",
    ]


def test_undeclared_placeholder_suggests_the_declared_name() -> None:
    text = "task: t\nvariables: [policy]\nversions:\n  default: Use {polcy} {polcy}.\n"
    assert errors(text) == [
        "p.yaml:4: task 't': key 'versions.default': placeholder {polcy} is not a declared "
        "variable (variables: policy); did you mean 'policy'?"
    ]


def test_empty_variables_declares_none() -> None:
    assert errors("task: t\nvariables:\nversions: {default: 'a {x}'}\n") == [
        "p.yaml:3: task 't': key 'versions.default': placeholder {x} is not a declared variable "
        "(variables: none)"
    ]
    [task] = parse_prompt_yaml("task: t\nvariables: []\nversions: {default: a}\n", "p.yaml")
    assert (task.variables, task.declared) == ((), True)


def test_duplicate_tasks_passed_to_the_constructor() -> None:
    [a] = parse_prompt_yaml("task: t\nversions: {default: a}\n", "a.yaml")
    [b] = parse_prompt_yaml("\ntask: t\nversions: {default: b}\n", "b.yaml")
    with pytest.raises(PromptFileError) as info:
        PromptLibrary([a, b])
    assert str(info.value) == "b.yaml:2: key 'task': duplicate task 't' (first in a.yaml:1)"


def test_yaml_is_imported_lazily() -> None:
    code = (
        "import sys, pytest_llmregress.prompts.library, pytest_llmregress.cases.golden; "
        "print('yaml' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


# --------------------------------------------------------------------------------------------
# Resolution
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "version", "match"),
    [
        ("claude-sonnet-4-6", "claude-sonnet-4-6", "exact"),
        ("gpt-5.5-2026-04-23", "gpt-5.5-2026-04-23", "exact"),
        ("anthropic:claude-sonnet-4-6", "claude-sonnet-4-6", "same id"),
        ("openai:gpt-5.5-2026-04-23", "gpt-5.5-2026-04-23", "same id"),
        ("  claude-sonnet-4-6 ", "claude-sonnet-4-6", "exact"),
        # the alias gpt-5.5 resolves to the snapshot gpt-5.5-2026-04-23
        ("gpt-5.5", "gpt-5.5-2026-04-23", "same model"),
        ("openai:gpt-5.5", "gpt-5.5-2026-04-23", "same model"),
        # a Bedrock profile of the same model
        ("us.anthropic.claude-sonnet-4-6-v1:0", "claude-sonnet-4-6", "same model"),
        ("claude-opus-4-6", "default", "default"),
        ("gpt-4o", "default", "default"),
        ("anthropic:local-test-model", "default", "default"),
        ("default", "default", "default"),
        ("", "default", "default"),
        # a fine-tune is not its base model
        ("ft:gpt-5.5-2026-04-23:acme::abc123", "default", "default"),
    ],
)
def test_resolution_order(model: str, version: str, match: str) -> None:
    resolved = library(SUPPORT).resolve("support-answer", model)
    assert (resolved.version_key, resolved.match) == (version, match)
    assert resolved.text == library(SUPPORT).tasks["support-answer"].versions[version].text


def test_snapshot_uses_the_version_written_for_its_alias() -> None:
    lib = library(task_with("claude-sonnet-4-5", "gpt-4o"))
    assert lib.resolve("t", "claude-sonnet-4-5-20250929").version_key == "claude-sonnet-4-5"
    assert lib.resolve("t", "anthropic:claude-sonnet-4-5-20250929").match == "same model"
    assert lib.resolve("t", "gpt-4o-2024-08-06").version_key == "gpt-4o"
    # a snapshot the alias does not point to is another model
    assert lib.resolve("t", "gpt-4o-2024-05-13").version_key == "default"


def test_a_first_party_key_beats_another_surface_of_the_same_model() -> None:
    lib = library(task_with("us.anthropic.claude-sonnet-4-6-v1:0", "claude-sonnet-4-6"))
    assert lib.resolve("t", "eu.anthropic.claude-sonnet-4-6-v1:0").version_key == (
        "claude-sonnet-4-6"
    )
    assert lib.resolve("t", "us.anthropic.claude-sonnet-4-6-v1:0").version_key == (
        "us.anthropic.claude-sonnet-4-6-v1:0"
    )


def test_two_equally_good_versions_are_an_error() -> None:
    data = LifecycleData(
        parse_lifecycle_csv(
            "provider,model_id,kind,alias_of_or_resolves_to,deprecated_on,retires_on,source\n"
            "openai,gpt-5.5,alias,gpt-5.5-2026-04-23,,,test\n"
            "openai,gpt-5.5-latest,alias,gpt-5.5-2026-04-23,,,test\n"
        )
    )
    tasks = library(task_with("gpt-5.5", "gpt-5.5-latest")).tasks.values()
    lib = PromptLibrary(tasks, lifecycle=data)
    with pytest.raises(PromptError) as info:
        lib.resolve("t", "gpt-5.5-2026-04-23")
    assert str(info.value) == (
        "prompt task 't': versions 'gpt-5.5', 'gpt-5.5-latest' all match model "
        "'gpt-5.5-2026-04-23' (prompts/p0.yaml:1); add a version for 'gpt-5.5-2026-04-23' itself"
    )
    # either alias itself is not ambiguous
    assert lib.resolve("t", "openai:gpt-5.5-latest").version_key == "gpt-5.5-latest"


def test_lifecycle_data_decides_what_an_alias_points_to() -> None:
    data = LifecycleData(
        parse_lifecycle_csv(
            "provider,model_id,kind,alias_of_or_resolves_to,deprecated_on,retires_on,source\n"
            "openai,gpt-4o,alias,gpt-4o-2024-05-13,,,test\n"
        )
    )
    tasks = library(task_with("gpt-4o-2024-05-13")).tasks.values()
    assert PromptLibrary(tasks).resolve("t", "gpt-4o").version_key == "default"
    resolved = PromptLibrary(tasks, lifecycle=data).resolve("t", "gpt-4o")
    assert (resolved.version_key, resolved.match) == ("gpt-4o-2024-05-13", "same model")


def test_unknown_model_keys_are_listed_for_warnings() -> None:
    lib = library(task_with("claude-sonnet-4-6", "gpt-5.5", "claud-sonnet-4-6", "acme-private-1"))
    assert [p.format() for p in lib.unknown_model_keys()] == [
        "prompts/p0.yaml:6: task 't': key 'versions.claud-sonnet-4-6': 'claud-sonnet-4-6' is "
        "not a known model id; if it is misspelled, no model matches it",
        "prompts/p0.yaml:7: task 't': key 'versions.acme-private-1': 'acme-private-1' is not a "
        "known model id; if it is misspelled, no model matches it",
    ]


def test_no_version_and_no_default_names_the_task_model_and_versions() -> None:
    lib = library(task_with("claude-sonnet-4-6", "gpt-4o", default=False))
    with pytest.raises(PromptError) as info:
        lib.resolve("t", "openai:gpt-5.5")
    assert str(info.value) == (
        "prompt task 't' has no version for model 'openai:gpt-5.5' and no 'default' "
        "(versions: claude-sonnet-4-6, gpt-4o; prompts/p0.yaml:1)"
    )


def test_unknown_task_names_the_tasks_that_exist() -> None:
    lib = library(SUPPORT, "task: sql\nversions: {default: x}\n")
    with pytest.raises(PromptError) as info:
        lib.resolve("support-answr", "gpt-4o")
    assert str(info.value) == (
        "unknown prompt task 'support-answr' in prompts (tasks: sql, support-answer); "
        "did you mean 'support-answer'?"
    )
    assert not isinstance(info.value, PromptFileError)


def test_resolution_is_cached_per_task_and_model() -> None:
    lib = library(SUPPORT)
    first = lib.resolve("support-answer", "gpt-5.5")
    assert lib.resolve("support-answer", "gpt-5.5") is first
    assert lib.resolve("support-answer", "gpt-4o") is not first


def test_resolved_prompt_summary() -> None:
    resolved = library(SUPPORT).resolve("support-answer", "openai:gpt-5.5")
    assert resolved.digest == ResolvedPrompt("x", "y", resolved.text).digest
    assert len(resolved.digest) == 12
    assert resolved.to_dict() == {
        "task": "support-answer",
        "version": "gpt-5.5-2026-04-23",
        "match": "same model",
        "digest": resolved.digest,
        "path": "prompts/p0.yaml",
        "line": 9,
    }
    assert json.loads(json.dumps(resolved.to_dict())) == resolved.to_dict()


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "variables", "expected"),
    [
        ("Policy: {policy}", {"policy": "30 days"}, "Policy: 30 days"),
        ("{a}{b}{a}", {"a": "x", "b": 2}, "x2x"),
        ('JSON {{"n": {n}}} ok', {"n": 1.5}, 'JSON {"n": 1.5} ok'),
        ("{{{a}}}", {"a": "v"}, "{v}"),
        ("}}{{", {}, "}{"),
        ("no placeholders", {}, "no placeholders"),
        (
            "value with braces: {v}",
            {"v": "{not a placeholder}"},
            "value with braces: {not a placeholder}",
        ),
        ("{_x1}", {"_x1": "ok"}, "ok"),
    ],
)
def test_render_matches_format_map(
    text: str, variables: dict[str, str | int | float], expected: str
) -> None:
    assert render(text, variables) == expected
    assert text.format_map(variables) == expected


def test_placeholders_in_order_of_first_use() -> None:
    assert placeholders("{b} {a} {b} {{c}}") == ("b", "a")
    with pytest.raises(PromptError, match=r"unmatched '\{'"):
        placeholders("a {b")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{}", "invalid placeholder '{}'"),
        ("{0}", "invalid placeholder '{0}'"),
        ("{a!r}", "invalid placeholder '{a!r}'"),
        ("{a:>5}", "invalid placeholder '{a:>5}'"),
        ("{a[0]}", "invalid placeholder '{a[0]}'"),
        ("{ a }", "invalid placeholder '{ a }'"),
        ("{a", "unmatched '{'; write '{{' for a literal brace"),
        ("a}", "unmatched '}'; write '}}' for a literal brace"),
        ("{a{b}}", "unmatched '{'"),
    ],
)
def test_render_rejects_malformed_templates(text: str, message: str) -> None:
    with pytest.raises(PromptError, match=message.replace("{", r"\{").replace("[", r"\[")):
        render(text, {"a": "x", "b": "y"})


def test_render_missing_and_unknown_variables() -> None:
    with pytest.raises(PromptError) as info:
        render("{policy} {tone}", {"tone": "warm"})
    assert str(info.value) == "missing variable(s) 'policy' (given: tone)"
    with pytest.raises(PromptError) as info:
        render("{policy}", {"policy": "p", "tone": "warm", "extra": 1})
    assert str(info.value) == "unknown variable(s) 'extra', 'tone' (expected: policy)"
    # declared variables a version does not use are fine
    assert render("{policy}", {"policy": "p", "tone": "warm"}, allowed=["policy", "tone"]) == "p"


def test_library_render_names_task_version_and_file() -> None:
    lib = library(SUPPORT)
    text, resolved = lib.render(PromptRef("support-answer", {"policy": "30 days"}), "gpt-5.5")
    assert text == 'Acme Outdoor support. Reply as JSON {"answer": ...}. Policy: 30 days'
    assert resolved.version_key == "gpt-5.5-2026-04-23"
    with pytest.raises(PromptError) as info:
        lib.render(PromptRef("support-answer"), "claude-sonnet-4-6")
    assert str(info.value) == (
        "prompt task 'support-answer', version 'claude-sonnet-4-6' (prompts/p0.yaml:7): "
        "missing variable(s) 'policy' (given: none)"
    )
    with pytest.raises(PromptError) as info:
        lib.render(PromptRef("support-answer", {"policy": "p", "tone": "x"}), "gpt-4o")
    assert str(info.value) == (
        "prompt task 'support-answer', version 'default' (prompts/p0.yaml:5): "
        "unknown variable(s) 'tone' (expected: policy)"
    )


def test_inferred_variables_allow_any_version_s_variables() -> None:
    lib = library("task: t\nversions:\n  default: '{a}'\n  gpt-4o: '{a} {b}'\n")
    assert lib.render(PromptRef("t", {"a": 1, "b": 2}), "gpt-5")[0] == "1"
    assert lib.render(PromptRef("t", {"a": 1, "b": 2}), "gpt-4o")[0] == "1 2"


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------


def case(**fields: object) -> GoldenCase:
    [parsed] = parse_jsonl(json.dumps({"id": "c1", "user": "hi", **fields}), "g.jsonl")
    return parsed


def test_resolve_system_renders_the_version_for_the_model() -> None:
    lib = library(SUPPORT)
    c = case(prompt={"task": "support-answer", "vars": {"policy": "30 days"}})
    assert resolve_system(c, lib, "anthropic:claude-sonnet-4-6") == (
        "You support Acme Outdoor customers. Policy: 30 days",
        lib.resolve("support-answer", "anthropic:claude-sonnet-4-6"),
    )
    system, resolved = resolve_system(c, lib, "gpt-4o")
    assert system == "You are the support assistant of Acme Outdoor. Use only this policy: 30 days"
    assert resolved is not None
    assert resolved.match == "default"


def test_resolve_system_of_a_literal_system_prompt() -> None:
    assert resolve_system(case(system="Be brief."), None, "gpt-4o") == ("Be brief.", None)
    assert resolve_system(case(), library(SUPPORT), "gpt-4o") == (None, None)


def test_resolve_system_errors() -> None:
    c = case(prompt="support-answer")
    with pytest.raises(PromptError) as info:
        resolve_system(c, None, "gpt-4o")
    assert str(info.value) == (
        "case 'c1' uses prompt task 'support-answer' but no prompt library is loaded"
    )
    with pytest.raises(PromptError, match="missing variable"):
        resolve_system(c, library(SUPPORT), "gpt-4o")
    with pytest.raises(PromptError, match="unknown prompt task 'nope'"):
        resolve_system(case(prompt="nope"), library(SUPPORT), "gpt-4o")


def test_check_cases_reports_what_fails_for_some_model() -> None:
    lib = library(SUPPORT, "task: mixed\nversions:\n  default: plain\n  gpt-4o: 'uses {x}'\n")
    cases = [
        case(system="literal"),
        case(prompt={"task": "support-answer", "vars": {"policy": "p"}}),
        case(prompt={"task": "support-answer", "vars": {"policy": "p", "tone": "t"}}),
        case(prompt="mixed"),
        case(prompt="gone"),
    ]
    assert check_cases(cases, lib) == [
        "g.jsonl:1: case 'c1': field 'prompt': unknown variable(s) 'tone' for prompt task "
        "'support-answer' (expected: policy)",
        "g.jsonl:1: case 'c1': field 'prompt': missing variable 'x': prompt task 'mixed' uses "
        "it in version(s) gpt-4o",
        "g.jsonl:1: case 'c1': field 'prompt': unknown prompt task 'gone' in prompts (tasks: "
        "mixed, support-answer)",
    ]
    assert check_cases(cases[:2], None) == [
        "g.jsonl:1: case 'c1': field 'prompt': uses prompt task 'support-answer' but no prompt "
        "library is loaded"
    ]


def test_resolve_system_of_a_case_built_in_code() -> None:
    c = GoldenCase("x", (Message("user", "hi"),), prompt=PromptRef("support-answer", {"policy": 3}))
    assert resolve_system(c, library(SUPPORT), "gpt-4o")[0] == (
        "You are the support assistant of Acme Outdoor. Use only this policy: 3"
    )


# --------------------------------------------------------------------------------------------
# A run's prompts: --llm-prompt-model and what results files record
# --------------------------------------------------------------------------------------------

SQL = """\
task: sql-query
versions:
  default: Write one PostgreSQL query. Output SQL only.
  gpt-5.5-2026-04-23: Output one PostgreSQL query and nothing else.
"""


@pytest.mark.parametrize(
    "model",
    [
        "claude-sonnet-4-6",
        "anthropic:claude-sonnet-4-6",
        "gpt-5.5",  # the alias of a snapshot with a version
        "us.anthropic.claude-sonnet-4-6-v1:0",
    ],
)
def test_a_prompt_model_with_a_version_is_accepted(model: str) -> None:
    check_prompt_model(library(SUPPORT, SQL), model, source="prompts")


def test_written_for_lists_the_tasks_with_a_version_for_the_model() -> None:
    lib = library(SUPPORT, SQL)
    assert lib.written_for("openai:gpt-5.5") == ["support-answer", "sql-query"]
    assert lib.written_for("claude-sonnet-4-6") == ["support-answer"]
    assert lib.written_for("gpt-4o") == []
    assert lib.written_for("default") == []
    assert lib.written_for("") == []


@pytest.mark.parametrize(
    ("model", "suggestion"),
    [
        ("claude-sonet-4-6", "claude-sonnet-4-6"),
        ("anthropic:claude-sonnet-4-7", "claude-sonnet-4-6"),
        ("gpt-5.5-2026-04-32", "gpt-5.5-2026-04-23"),
    ],
)
def test_a_prompt_model_typo_is_an_error_with_a_suggestion(model: str, suggestion: str) -> None:
    with pytest.raises(PromptError) as info:
        check_prompt_model(library(SUPPORT, SQL), model, source="prompts")
    assert str(info.value) == (
        f"{model!r} matches no prompt version in prompts, so every task would get its "
        "'default' (versions written for a model: claude-sonnet-4-6, gpt-5.5-2026-04-23); "
        f"did you mean {suggestion!r}?"
    )


def test_a_prompt_model_far_from_every_version_has_no_suggestion() -> None:
    with pytest.raises(PromptError) as info:
        check_prompt_model(library(SUPPORT), "mistral-large-2411")
    assert "did you mean" not in str(info.value)
    assert "matches no prompt version, so every task would get its 'default'" in str(info.value)


def test_a_prompt_model_without_model_versions_or_prompt_files(tmp_path: Path) -> None:
    with pytest.raises(PromptError, match="the prompt files in prompts have only 'default'"):
        check_prompt_model(library(task_with()), "claude-sonnet-4-6", source="prompts")
    with pytest.raises(
        PromptError, match=r"^'gpt-4o' matches no prompt version: no prompt files in prompts$"
    ):
        check_prompt_model(None, "gpt-4o", source="prompts")
    empty = PromptLibrary.load(tmp_path)
    with pytest.raises(PromptError, match="no prompt files"):
        check_prompt_model(empty, "gpt-4o")


def test_prompts_metadata_records_the_version_of_every_task() -> None:
    lib = library(SUPPORT, SQL)
    meta = prompts_metadata(lib, "openai:gpt-5.5", prompt_model="openai:gpt-5.5")
    sql = "Output one PostgreSQL query and nothing else."
    support = lib.tasks["support-answer"].versions["gpt-5.5-2026-04-23"].text
    assert meta == {
        "prompt_model": "openai:gpt-5.5",
        "prompts": {
            "model": "openai:gpt-5.5",
            "digest": prompts_digest({"sql-query": sql, "support-answer": support}),
            "source": "prompts",
            "tasks": {
                "sql-query": {
                    "version": "gpt-5.5-2026-04-23",
                    "match": "same model",
                    "digest": ResolvedPrompt("sql-query", "x", sql).digest,
                },
                "support-answer": {
                    "version": "gpt-5.5-2026-04-23",
                    "match": "same model",
                    "digest": ResolvedPrompt("support-answer", "x", support).digest,
                },
            },
        },
    }
    assert json.dumps(meta)
    assert re.fullmatch("[0-9a-f]{64}", meta["prompts"]["digest"])


def test_the_prompts_digest_is_over_the_texts_sent() -> None:
    lib = library(SUPPORT, SQL)

    def digest(model: str, lib: PromptLibrary = lib) -> str:
        return str(prompts_metadata(lib, model, prompt_model=None)["prompts"]["digest"])

    # the same texts, whichever id names the model
    assert digest("gpt-5.5") == digest("openai:gpt-5.5-2026-04-23")
    assert digest("claude-sonnet-4-6") == digest("us.anthropic.claude-sonnet-4-6-v1:0")
    # another model's versions are other texts
    assert len({digest("gpt-5.5"), digest("claude-sonnet-4-6"), digest("gpt-4o")}) == 3
    # a version key that shares the default's text (a YAML anchor) sends the same prompt
    shared = library("task: t\nversions:\n  default: &base Be brief.\n  gpt-4o: *base\n")
    assert digest("gpt-4o", shared) == digest("claude-sonnet-4-6", shared)
    # other files, other lines, the same texts: the same digest
    moved = library(SQL, "# moved\n" + SUPPORT)
    assert digest("gpt-4o", moved) == digest("gpt-4o")
    # one changed word is another digest
    edited = library(SUPPORT, SQL.replace("nothing else", "nothing more"))
    assert digest("gpt-5.5", edited) != digest("gpt-5.5")
    assert digest("gpt-4o", edited) == digest("gpt-4o")  # the default did not change
    assert prompts_digest({"a": "x", "b": "y"}) == prompts_digest({"b": "y", "a": "x"})


def test_prompts_metadata_of_a_task_without_a_version_and_of_no_prompt_files() -> None:
    lib = library(task_with("gpt-4o", default=False))
    meta = prompts_metadata(lib, "claude-sonnet-4-6", prompt_model=None)
    assert meta["prompt_model"] is None
    assert set(meta["prompts"]["tasks"]["t"]) == {"error"}
    assert "has no version for model 'claude-sonnet-4-6'" in meta["prompts"]["tasks"]["t"]["error"]
    assert meta["prompts"]["digest"] == prompts_digest({"t": None})
    none = prompts_metadata(None, "claude-sonnet-4-6", prompt_model=None)
    assert none["prompts"] == {
        "model": "claude-sonnet-4-6",
        "digest": prompts_digest({}),
        "source": None,
        "tasks": {},
    }


# --------------------------------------------------------------------------------------------
# The examples in the user docs
# --------------------------------------------------------------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs" / "prompts.md"


@pytest.mark.skipif(not DOCS.exists(), reason="docs are not shipped here")
def test_docs_examples_are_valid() -> None:
    text = DOCS.read_text("utf-8")
    blocks = re.findall(r"^```yaml\n(.*?)^```$", text, re.M | re.S)
    prompt_files = [b for b in blocks if "task:" in b and "versions:" in b]
    [case_file] = [b for b in blocks if "id:" in b]
    assert len(prompt_files) == 2
    tasks = [t for i, b in enumerate(prompt_files) for t in parse_prompt_yaml(b, f"p{i}.yaml")]
    lib = PromptLibrary(tasks, source="prompts")
    assert list(lib.tasks) == ["support-answer", "sql-query", "sql-explain"]
    assert lib.unknown_model_keys() == []

    table = re.findall(r"^\| `([^`]+)` +\| `([^`]+)` +\| ([a-z ]+?) +\|$", text, re.M)
    assert len(table) == 5
    for model, version, match in table:
        resolved = lib.resolve("support-answer", model)
        assert (resolved.version_key, resolved.match) == (version, match)

    [case] = parse_yaml(case_file, "g.yaml")
    system, _ = resolve_system(case, lib, "anthropic:claude-sonnet-4-6")
    assert system is not None
    assert system.startswith("You are Acme Outdoor's support assistant. Policy: Unworn items")


def test_a_text_of_stray_braces_stops_at_the_problem_limit() -> None:
    # Each problem resumes the scan behind it: a hostile text of four million braces would
    # take quadratic time, so the scan stops after MAX_PROBLEMS and says more may follow.
    from pytest_llmregress.cases.golden import MAX_PROBLEMS
    from pytest_llmregress.prompts.library import _scan

    names, issues = _scan("a}" * 2_000_000)

    assert names == []
    assert len(issues) == MAX_PROBLEMS + 1
    assert issues[-1].message == f"the scan stopped after {MAX_PROBLEMS} problems: more may follow"
