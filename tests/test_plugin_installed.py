"""The plugin can stay installed everywhere: projects that do not use it see nothing of it,
and runs that call no model never need an API key."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import CANDIDATE, JUDGE
from tests.test_plugin_e2e import qa_cases, write_cases

PLAIN_TESTS = "def test_one():\n    pass\n\ndef test_two():\n    pass\n"


@pytest.fixture
def no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_BASE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def model_in_pyproject(pytester: pytest.Pytester, no_keys: None) -> None:
    pytester.makepyprojecttoml(
        f"""
        [tool.pytest.ini_options]
        [tool.llmregress]
        model = "{CANDIDATE}"
        judge_model = "{JUDGE}"
        """
    )


def test_hooks_on_a_config_this_plugin_did_not_configure(pytester: pytest.Pytester) -> None:
    """pytest-xdist's own tests call hooks on configs made by ``parseconfig``."""
    config = pytester.parseconfig()
    hook = config.hook

    class Node:
        workerinput: dict[str, Any] = {}  # noqa: RUF012

    Node.config = config  # type: ignore[attr-defined]
    hook.pytest_configure_node(node=Node())
    assert hook.pytest_xdist_make_scheduler(config=config, log=None) is None
    hook.pytest_xdist_node_collection_finished(node=Node(), ids=["golden_cases/a.jsonl::x"])
    headers = hook.pytest_report_header(config=config, start_path=pytester.path)
    assert not [line for lines in headers for line in lines if "llmregress" in line]
    golden = pytester.path / "golden_cases" / "a.jsonl"
    golden.parent.mkdir()
    golden.write_text("")
    session = pytest.Session.from_config(config)
    assert hook.pytest_collect_file(file_path=golden, parent=session) == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--help"], pytest.ExitCode.OK),
        (["--collect-only", "-q"], pytest.ExitCode.OK),
        ([], pytest.ExitCode.OK),
        (["-n2"], pytest.ExitCode.OK),
    ],
    ids=["help", "collect-only", "plain-run", "plain-run-n2"],
)
def test_a_model_in_pyproject_needs_no_key_for_runs_without_model_calls(
    pytester: pytest.Pytester, model_in_pyproject: None, args: list[str], expected: int
) -> None:
    pytester.makepyfile(test_plain=PLAIN_TESTS)
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == expected, result.stderr.str()
    assert "API_KEY" not in result.stdout.str() + result.stderr.str()
    if not args:
        result.assert_outcomes(passed=2)


def test_collect_only_lists_golden_cases_without_a_key(
    pytester: pytest.Pytester, model_in_pyproject: None
) -> None:
    write_cases(pytester, "qa.jsonl", qa_cases(3))
    result = pytester.runpytest_subprocess("--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["golden_cases/qa.jsonl::case-000", "*3 tests collected*"])


@pytest.mark.parametrize("workers", [[], ["-n2"]], ids=["one-process", "n2"])
def test_a_missing_key_names_the_models_that_need_it(
    pytester: pytest.Pytester,
    model_in_pyproject: None,
    monkeypatch: pytest.MonkeyPatch,
    workers: list[str],
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-present-0001")
    write_cases(pytester, "qa.jsonl", qa_cases(3))
    result = pytester.runpytest_subprocess(*workers)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    output = result.stdout.str() + result.stderr.str()
    assert f"OPENAI_API_KEY is not set, and openai:{JUDGE} (judge) needs it" in " ".join(
        output.split()
    )
    assert "ANTHROPIC_API_KEY is not set" not in output
    assert "sk-ant-present-0001" not in output
    assert "_pytest" not in output


def test_a_test_using_the_llm_fixture_without_a_key_is_a_usage_error(
    pytester: pytest.Pytester, model_in_pyproject: None
) -> None:
    pytester.makepyfile(
        test_llm="def test_asks(llm):\n    llm.complete(user='hi')\n", test_plain=PLAIN_TESTS
    )
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ANTHROPIC_API_KEY is not set, and anthropic:*"])


def test_a_project_without_the_plugin_in_use_sees_nothing_of_it(
    pytester: pytest.Pytester, no_keys: None
) -> None:
    pytester.makepyfile(test_plain=PLAIN_TESTS)
    for args in ([], ["-n2"]):
        result = pytester.runpytest_subprocess(*args)
        result.assert_outcomes(passed=2)
        assert "llmregress:" not in result.stdout.str() + result.stderr.str()
        assert "= llmregress =" not in result.stdout.str()


def test_golden_cases_skipped_without_a_model_are_named_once_at_the_end(
    pytester: pytest.Pytester, no_keys: None
) -> None:
    write_cases(pytester, "qa.jsonl", qa_cases(3))
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(skipped=3)
    assert "llmregress:" not in result.stdout.str()  # no header line
    result.stdout.fnmatch_lines(
        ["*= llmregress =*", "3 golden cases skipped: no model under test*"]
    )


@pytest.mark.parametrize("ini", ["pytest.ini", "tox.ini"])
def test_a_pyproject_pytest_does_not_read_is_ignored(
    pytester: pytest.Pytester, no_keys: None, ini: str
) -> None:
    section = "[pytest]" if ini == "pytest.ini" else "[pytest]\n"
    (pytester.path / ini).write_text(section + "\n")
    pytester.makepyprojecttoml(
        """
        [tool.llmregress]
        modle = "typo"
        [tool.llmregress.models.chat]
        idd = "broken"
        """
    )
    pytester.makepyfile(test_plain=PLAIN_TESTS)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=2)
    assert "llmregress:" not in result.stdout.str() + result.stderr.str()


def test_a_pyproject_pytest_reads_is_still_checked(
    pytester: pytest.Pytester, no_keys: None
) -> None:
    pytester.makepyprojecttoml(
        """
        [tool.pytest.ini_options]
        [tool.llmregress]
        modle = "typo"
        """
    )
    pytester.makepyfile(test_plain=PLAIN_TESTS)
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown key(s) in ?tool.llmregress?: modle*"])


@pytest.mark.parametrize(
    ("config_file", "text"),
    [
        ("pytest.ini", "[pytest]\nllm_golden_files = suites/*.jsonl\n"),
        (
            "pyproject.toml",
            '[tool.pytest.ini_options]\n[tool.llmregress]\ngolden_files = ["suites/*.jsonl"]\n',
        ),
    ],
    ids=["ini", "pyproject"],
)
def test_golden_files_under_the_names_the_readme_gives(
    pytester: pytest.Pytester, no_keys: None, config_file: str, text: str
) -> None:
    (pytester.path / config_file).write_text(text)
    folder = pytester.path / "suites"
    folder.mkdir()
    (folder / "qa.jsonl").write_text('{"id": "only", "user": "hi", "reference": "hello"}\n')
    write_cases(pytester, "ignored.jsonl", qa_cases(2))  # golden_cases/ is not in the patterns
    result = pytester.runpytest_subprocess("--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["suites/qa.jsonl::only", "*1 test collected*"])


def test_sessionfinish_on_a_session_without_an_exit_status(pytester: pytest.Pytester) -> None:
    """pytest-xdist's looponfail finishes sessions its main loop never ran (syrupy 7.0.3
    itself fails there)."""
    config = pytester.parseconfigure("-p", "no:terminal", "-p", "no:syrupy")
    session = pytest.Session.from_config(config)
    config.hook.pytest_sessionstart(session=session)
    assert not hasattr(session, "exitstatus")
    config.hook.pytest_sessionfinish(session=session, exitstatus=0)
    assert not hasattr(session, "exitstatus")
