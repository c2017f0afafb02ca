"""``llmregress schema``: the golden-file JSON Schema agrees with what ``load_cases`` accepts."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from pytest_llmregress.cases.golden import CASE_FIELDS, PARAM_NAMES, CaseFileError, load_cases
from pytest_llmregress.cases.json_schema import case_schema, golden_file_schema
from pytest_llmregress.cli import main as cli_main
from pytest_llmregress.scoring.scorers import SCORER_NAMES

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "golden_cases").iterdir())


def validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def documents(path: Path) -> list[tuple[dict[str, Any], Any]]:
    """``(schema, data)`` pairs of a golden file: the file for YAML, each line for JSONL."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        lines = [line for line in text.splitlines() if line.strip() and not line.startswith("//")]
        return [(case_schema(), json.loads(line)) for line in lines]
    return [(golden_file_schema(), yaml.safe_load(text))]


def schema_errors(path: Path) -> list[str]:
    found: list[str] = []
    for schema, data in documents(path):
        found += [error.message for error in validator(schema).iter_errors(data)]
    return found


def test_the_schemas_are_valid_draft_2020_12() -> None:
    for schema in (golden_file_schema(), case_schema()):
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        validator(schema)


def test_the_schema_is_built_from_the_validators_facts() -> None:
    case = golden_file_schema()["$defs"]["case"]
    assert tuple(case["properties"]) == CASE_FIELDS
    assert tuple(case["properties"]["params"]["properties"]) == PARAM_NAMES
    names = case["properties"]["scorers"]["items"]["anyOf"]
    assert names[0]["enum"] == list(SCORER_NAMES)
    for name, field in case["properties"].items():
        assert field["title"], name
        assert field["description"], name


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_golden_file_validates(path: Path) -> None:
    assert load_cases(path)
    assert schema_errors(path) == []


VALID: dict[str, str] = {
    "every_field.yaml": """
        defaults:
          system: Be brief.
          threshold: 0.8
          scorers: [judge]
          tags: [smoke]
          params: {temperature: 0, max_tokens: 200, stop: ["\\n\\n"], seed: 7, top_p: 1, top_k: 5}
          metadata: {owner: team-a}
        cases:
          - id: a.1
            user: Hi
            reference: Hello
            threshold: 1
            scorers:
              - exact
              - {exact: {value: Hello, ignore_case: true, normalize_whitespace: true}}
              - {contains: [hel, lo]}
              - {contains: hel}
              - {regex: '^H'}
              - {regex: {pattern: '^h', flags: i}}
              - {json: {fields: {a: 1}}}
              - {similarity: {threshold: 0.5}}
              - {judge: null}
            tags: [_x, y-z]
            metadata: {nested: {list: [1, 2.5, null, true]}}
          - id: b
            messages:
              - {role: user, content: Hi}
              - {role: assistant, content: Hello}
              - {role: user, content: Bye}
            prompt: {task: support-answer, vars: {policy: strict, days: 30}}
          - id: c
            user: Hi
            prompt: small-talk
    """,
    "list.yaml": """
        - id: one
          user: Hi
        - {id: "2", user: Hello, reference: null, system: null, scorers: [{exact: null}]}
    """,
    "null_defaults.yaml": """
        defaults:
        cases:
          - {id: x, user: Hi}
    """,
    "line.jsonl": '{"id": "j", "user": "Hi", "params": {"stop": "x"}, "tags": ["a"]}\n',
    "rubric.yaml": """
        defaults:
          rubric: Answers in French.
        cases:
          - id: listed
            user: Refund?
            rubric:
              - {name: cites_policy, weight: 2, description: names the refund policy section}
              - {name: _polite, weight: 0.5, description: no blame on the customer}
          - {id: shorthand, user: Hi, rubric: Greets back.}
    """,
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_fixtures_validate(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(textwrap.dedent(VALID[name]), encoding="utf-8")
    assert load_cases(path)
    assert schema_errors(path) == []


# Cases load_cases rejects for a type or field reason; the schema must reject them too.
INVALID: dict[str, dict[str, Any]] = {
    "unknown field": {"id": "a", "user": "Hi", "tgas": ["x"]},
    "no id": {"user": "Hi"},
    "id not a string": {"id": 3, "user": "Hi"},
    "id with a space": {"id": "a b", "user": "Hi"},
    "id too long": {"id": "a" * 201, "user": "Hi"},
    "user and messages": {"id": "a", "user": "Hi", "messages": [{"role": "user", "content": "x"}]},
    "neither user nor messages": {"id": "a"},
    "blank user": {"id": "a", "user": "  "},
    "user not a string": {"id": "a", "user": 3},
    "empty messages": {"id": "a", "messages": []},
    "system role": {"id": "a", "messages": [{"role": "system", "content": "x"}]},
    "message key": {"id": "a", "messages": [{"role": "user", "content": "x", "name": "n"}]},
    "message without content": {"id": "a", "messages": [{"role": "user"}]},
    "system and prompt": {"id": "a", "user": "Hi", "system": "s", "prompt": "t"},
    "system not a string": {"id": "a", "user": "Hi", "system": 3},
    "reference not a string": {"id": "a", "user": "Hi", "reference": ["x"]},
    "prompt key": {"id": "a", "user": "Hi", "prompt": {"task": "t", "var": {}}},
    "prompt without task": {"id": "a", "user": "Hi", "prompt": {"vars": {}}},
    "prompt task name": {"id": "a", "user": "Hi", "prompt": "a task"},
    "prompt variable name": {"id": "a", "user": "Hi", "prompt": {"task": "t", "vars": {"1x": 1}}},
    "prompt variable value": {"id": "a", "user": "Hi", "prompt": {"task": "t", "vars": {"x": []}}},
    "threshold above 1": {"id": "a", "user": "Hi", "threshold": 2},
    "threshold a string": {"id": "a", "user": "Hi", "threshold": "high"},
    "threshold a boolean": {"id": "a", "user": "Hi", "threshold": True},
    "scorers not a list": {"id": "a", "user": "Hi", "scorers": "judge"},
    "no scorers": {"id": "a", "user": "Hi", "scorers": []},
    "scorer with two keys": {"id": "a", "user": "Hi", "scorers": [{"exact": None, "regex": "x"}]},
    "scorer option": {"id": "a", "user": "Hi", "scorers": [{"exact": {"ignorecase": True}}]},
    "scorer a number": {"id": "a", "user": "Hi", "scorers": [3]},
    "tags not a list": {"id": "a", "user": "Hi", "tags": "smoke"},
    "tag with a space": {"id": "a", "user": "Hi", "tags": ["a b"]},
    "tag a keyword": {"id": "a", "user": "Hi", "tags": ["not"]},
    "tag a pytest marker": {"id": "a", "user": "Hi", "tags": ["skip"]},
    "tag a number": {"id": "a", "user": "Hi", "tags": [3]},
    "unknown param": {"id": "a", "user": "Hi", "params": {"temprature": 0}},
    "temperature above 2": {"id": "a", "user": "Hi", "params": {"temperature": 3}},
    "top_p above 1": {"id": "a", "user": "Hi", "params": {"top_p": 1.5}},
    "max_tokens 0": {"id": "a", "user": "Hi", "params": {"max_tokens": 0}},
    "top_k a string": {"id": "a", "user": "Hi", "params": {"top_k": "5"}},
    "seed a number": {"id": "a", "user": "Hi", "params": {"seed": 1.5}},
    "empty stop": {"id": "a", "user": "Hi", "params": {"stop": ""}},
    "stop list empty": {"id": "a", "user": "Hi", "params": {"stop": []}},
    "metadata a list": {"id": "a", "user": "Hi", "metadata": [1]},
    "rubric empty": {"id": "a", "user": "Hi", "rubric": []},
    "rubric blank": {"id": "a", "user": "Hi", "rubric": " "},
    "rubric a number": {"id": "a", "user": "Hi", "rubric": 3},
    "rubric criterion name": {
        "id": "a",
        "user": "Hi",
        "rubric": [{"name": "a b", "description": "x"}],
    },
    "rubric criterion reason": {
        "id": "a",
        "user": "Hi",
        "rubric": [{"name": "reason", "description": "x"}],
    },
    "rubric no description": {"id": "a", "user": "Hi", "rubric": [{"name": "x"}]},
    "rubric no name": {"id": "a", "user": "Hi", "rubric": [{"description": "x"}]},
    "rubric weight 0": {
        "id": "a",
        "user": "Hi",
        "rubric": [{"name": "x", "description": "x", "weight": 0}],
    },
    "rubric key": {"id": "a", "user": "Hi", "rubric": [{"name": "x", "description": "x", "w": 1}]},
    "rubric too long": {
        "id": "a",
        "user": "Hi",
        "rubric": [{"name": f"c{i}", "description": "x"} for i in range(21)],
    },
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_cases_are_rejected_by_both(tmp_path: Path, name: str) -> None:
    case = INVALID[name]
    path = tmp_path / "g.jsonl"
    path.write_text(json.dumps(case) + "\n", encoding="utf-8")
    with pytest.raises(CaseFileError):
        load_cases(path)
    assert not validator(case_schema()).is_valid(case)
    assert not validator(golden_file_schema()).is_valid([case])


INVALID_FILES: dict[str, Any] = {
    "empty list": [],
    "unknown section": {"cases": [{"id": "a", "user": "Hi"}], "default": {}},
    "no cases section": {"defaults": {}},
    "defaults with an id": {"defaults": {"id": "x"}, "cases": [{"id": "a", "user": "Hi"}]},
    "defaults not a mapping": {"defaults": [], "cases": [{"id": "a", "user": "Hi"}]},
    "a case not a mapping": ["a"],
    "a scalar": "cases",
}


@pytest.mark.parametrize("name", sorted(INVALID_FILES))
def test_invalid_yaml_files_are_rejected_by_both(tmp_path: Path, name: str) -> None:
    data = INVALID_FILES[name]
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(CaseFileError):
        load_cases(path)
    assert not validator(golden_file_schema()).is_valid(data)


def test_schema_command_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == golden_file_schema()
    assert cli_main(["schema", "--case"]) == 0
    assert json.loads(capsys.readouterr().out) == case_schema()


def test_schema_command_writes_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "golden.schema.json"
    assert cli_main(["schema", "-o", str(target)]) == 0
    assert json.loads(target.read_text(encoding="utf-8")) == golden_file_schema()
    assert capsys.readouterr().out == f"wrote the golden-file schema to {target}\n"
    assert cli_main(["schema", "-o", str(tmp_path / "missing" / "x.json")]) == 1
    assert "cannot write" in capsys.readouterr().err


def test_schema_command_is_listed(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["--help"]) == 0
    assert "schema" in capsys.readouterr().out


def test_schema_command_as_a_process(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest_llmregress.cli", "schema"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    schema = json.loads(done.stdout)
    assert schema == golden_file_schema()
    for path in EXAMPLES:
        if path.suffix == ".yaml":
            assert validator(schema).is_valid(yaml.safe_load(path.read_text(encoding="utf-8")))
