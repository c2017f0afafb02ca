"""The HTML report: the page's data and its safety, ``llmregress report``, ``--llm-html`` end
to end against the local server, and the page driven in headless Chromium (Playwright).

The browser tests skip when Playwright or ``/usr/bin/chromium`` is missing, unless
``LLMREGRESS_REQUIRE_BROWSER=1`` (``.ci/run``): then they fail.

``python -m tests.test_html_report DIR`` writes the docs' screenshots into DIR.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from pytest_llmregress.cli.dispatch import main as llmregress
from pytest_llmregress.report.html import (
    CaseInput,
    history_points,
    load_inputs,
    page_data,
    render_html,
)
from pytest_llmregress.scoring.score import Score
from pytest_llmregress.testing.server import LocalProviderServer
from pytest_llmregress.verdict.compare import compare_runs
from pytest_llmregress.verdict.results import CaseResult, RunResult, write_run
from tests.conftest import CANDIDATE, JUDGE
from tests.test_plugin_e2e import model_args, qa_cases, scenario, write_cases

MakeServer = Callable[[dict[str, Any]], LocalProviderServer]
PointEnv = Callable[[LocalProviderServer], None]
CHROMIUM = "/usr/bin/chromium"
HOSTILE = "</script><script>document.title='pwned'</script><img src=x onerror=alert(1)>"


# -- sample runs ---------------------------------------------------------------------------


def _case(
    i: int,
    outcome: str,
    *,
    output: str | None = None,
    tags: tuple[str, ...] = (),
    repeats: tuple[CaseResult, ...] = (),
    error: str | None = None,
) -> CaseResult:
    reference = f"The answer to question {i} is {i * 7}."
    passed = outcome == "passed"
    scores = ()
    if outcome != "error":
        scores = (
            Score(
                "judge",
                0.95 if passed else 0.2,
                passed,
                "matches the reference" if passed else f"the answer to question {i} is wrong",
                threshold=0.8,
                judge_model=f"openai:{JUDGE}",
            ),
        )
    return CaseResult(
        case_id=f"case-{i:04d}",
        nodeid=f"golden_cases/qa.jsonl::case-{i:04d}",
        path="golden_cases/qa.jsonl",
        line=i + 1,
        outcome=outcome,  # type: ignore[arg-type]
        threshold=0.8,
        scores=scores,
        output=(output if output is not None else reference) if outcome != "error" else None,
        reference=reference,
        error=error,
        tags=tags,
        duration_s=0.01 * (i % 7),
        repeats=repeats,
    )


def sample_run(count: int = 12, *, label: str = f"anthropic:{CANDIDATE}") -> RunResult:
    """Passes, failures (a changed word; a hostile output), an error, a flaky repeated case,
    tags; the gate's minimum at 90%."""
    cases = []
    for i in range(count):
        tags = ("math",) if i % 2 else ("geo",)
        if i == 1:
            cases.append(_case(i, "failed", output="The answer to question 1 is 8.", tags=tags))
        elif i == 2:
            cases.append(_case(i, "failed", output=HOSTILE, tags=tags))
        elif i == 3:
            cases.append(_case(i, "error", error="server: 500 from the model", tags=tags))
        elif i == 4:
            runs = (
                _case(i, "passed", tags=tags),
                _case(i, "failed", output="No idea.", tags=tags),
                _case(i, "passed", tags=tags),
            )
            cases.append(CaseResult.of_repeats(runs))
        else:
            cases.append(_case(i, "passed", tags=tags))
    metadata = {
        "candidate": label,
        "judge": f"openai:{JUDGE}",
        "started_at": "2026-12-01T10:00:00+00:00",
        "settings": {"min_pass_rate": 0.9, "max_error_rate": 0.2},
    }
    return RunResult(metadata, cases)


def baseline_run(count: int = 12) -> RunResult:
    """Every case passes: the sample's failures are pass->fail flips against it."""
    metadata = {"candidate": "anthropic:claude-sonnet-4-6", "started_at": "2026-11-30T10:00:00Z"}
    cases = [_case(i, "passed", output=f"Question {i}: {i * 7}.") for i in range(count)]
    return RunResult(metadata, cases)


def history_runs() -> list[RunResult]:
    runs = []
    for day, (model, failing) in enumerate(
        [("claude-sonnet-4-6", 1), ("claude-sonnet-4-6", 2), ("claude-sonnet-5", 4)]
    ):
        run = baseline_run(10)
        run.metadata.update(candidate=f"anthropic:{model}", started_at=f"2026-11-2{day}T10:00:00Z")
        run.cases[:failing] = [_case(i, "failed", output="wrong") for i in range(failing)]
        runs.append(run)
    return runs


def embedded(html: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="data">(.*?)</script>', html, re.S)
    assert found is not None
    data: dict[str, Any] = json.loads(found.group(1))
    return data


# -- the page, without a browser -----------------------------------------------------------


def test_the_page_is_self_contained() -> None:
    html = render_html(sample_run(), comparison=compare_runs(baseline_run(), sample_run()))
    assert html.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "<link" not in html
    assert "@import" not in html
    assert "url(" not in html
    assert "default-src 'none'" in html  # no request even if something slipped through
    assert len(html) < 60_000


def test_case_text_cannot_close_the_script() -> None:
    run = sample_run()
    html = render_html(run, title="</title><b>x</b>")
    # The only script ends are the page's own two; the hostile output is escaped inside JSON.
    assert html.count("</script>") == 2
    assert "pwned" in html
    assert "document.title='pwned'" not in html.split("<body>")[0]
    assert "<title>&lt;/title&gt;&lt;b&gt;x&lt;/b&gt;</title>" in html
    data = embedded(html)
    assert data["cases"][2]["out"] == HOSTILE  # the text itself survives, as text


def test_the_data_the_page_shows() -> None:
    run = sample_run()
    inputs = {run.cases[1].nodeid: CaseInput("Answer briefly.", (("user", "question 1?"),))}
    data = page_data(run, inputs=inputs, warnings=["candidate: alias x answered as y"])
    verdict = data["verdict"]
    assert verdict["ok"] is False
    assert verdict["errors"] == 1
    assert any("below the minimum 90.0%" in r for r in verdict["reasons"])
    assert data["warnings"] == ["candidate: alias x answered as y"]
    assert data["tags"] == ["geo", "math"]
    cases = {c["id"]: c for c in data["cases"]}
    assert cases["case-0001"]["sys"] == "Answer briefly."
    assert cases["case-0001"]["msgs"] == [["user", "question 1?"]]
    assert "msgs" not in cases["case-0000"]
    assert cases["case-0001"]["scores"][0]["vs"] == "0.20 < 0.80"
    assert cases["case-0001"]["scores"][0]["reason"] == "the answer to question 1 is wrong"
    assert cases["case-0004"]["rep"] == [2, 3]
    assert cases["case-0004"]["flaky"] is True
    assert cases["case-0003"]["err"] == "server: 500 from the model"
    assert data["noise"]
    assert data["noise"][0].startswith("repeats: each case 3 times")
    assert data["comparison"] is None
    assert data["history"] == []


def test_a_stored_verdict_wins_over_the_cases() -> None:
    run = sample_run()
    run.metadata["verdict"] = {"ok": True, "passed": 9, "failed": 2, "errors": 1, "reasons": []}
    data = page_data(run)
    assert data["verdict"]["ok"] is True
    assert data["verdict"]["reasons"] == []


def test_the_comparison_marks_flips() -> None:
    comparison = compare_runs(baseline_run(), sample_run())
    data = page_data(sample_run(), comparison=comparison)
    flips = {c["id"]: c.get("flip") for c in data["cases"]}
    assert flips["case-0001"] == flips["case-0002"] == "pass->fail"
    assert flips["case-0000"] is None
    assert flips["case-0003"] is None
    assert data["cases"][0]["base"]["out"] == "Question 0: 0."
    assert data["comparison"]["pass_to_fail"] == comparison.pass_to_fail


def test_history_marks_model_changes() -> None:
    runs = history_runs()
    points = history_points(runs)
    assert [p.flags for p in points][:2] == [(), ()]
    assert points[2].flags == (
        "model changed: anthropic:claude-sonnet-4-6 -> anthropic:claude-sonnet-5",
    )
    data = page_data(sample_run(), history=points)
    assert [h["rate"] for h in data["history"]][:3] == [0.9, 0.8, 0.6]
    assert data["history"][-1]["current"] is True
    assert data["history"][-1]["flags"] == [  # this run's model is not the run's before it
        f"model changed: anthropic:claude-sonnet-5 -> anthropic:{CANDIDATE}"
    ]


def test_rows_are_built_by_the_script_not_written_into_the_page() -> None:
    """5,000 cases: the page holds them as data; the table body is empty until the script
    fills the visible page (of 100 rows), and diffs are computed on expanding a row."""
    html = render_html(sample_run(5000))
    body = html.split('<tbody id="rows">')[1].split("</tbody>")[0]
    assert body == ""
    assert html.count("<tr") == 1  # the header row
    assert len(embedded(html)["cases"]) == 5000
    assert "const PAGE = 100;" in html


def test_inputs_come_from_the_golden_files(tmp_path: Path) -> None:
    folder = tmp_path / "golden_cases"
    folder.mkdir()
    (folder / "qa.jsonl").write_text(
        json.dumps({"id": "case-0000", "system": "Be brief.", "user": "What is 0*7?"}) + "\n"
    )
    inputs = load_inputs(sample_run(2).cases, tmp_path)
    assert inputs == {
        "golden_cases/qa.jsonl::case-0000": CaseInput("Be brief.", (("user", "What is 0*7?"),))
    }
    assert load_inputs(sample_run(2).cases, tmp_path / "nowhere") == {}


# -- llmregress report ---------------------------------------------------------------------


def test_report_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_run(tmp_path / "run.json", sample_run())
    write_run(tmp_path / "base.json", baseline_run())
    history = tmp_path / "history"
    for n, run in enumerate(history_runs()):
        write_run(history / f"{n}.json", run)
    write_run(history / "this.json", sample_run())  # the run itself: left out
    out = tmp_path / "site" / "report.html"
    status = llmregress(
        [
            "report",
            str(tmp_path / "run.json"),
            "-o",
            str(out),
            "--baseline",
            str(tmp_path / "base.json"),
            "--history",
            str(history),
        ]
    )
    assert status == 0
    assert f"wrote {out} (12 cases)" in capsys.readouterr().out
    data = embedded(out.read_text())
    assert data["comparison"]["pass_to_fail"] == 3  # cases 1, 2 and the flaky 4
    assert len(data["history"]) == 4
    assert data["history"][-1]["current"]


def test_report_command_compares_a_compare_model_run(tmp_path: Path) -> None:
    run = sample_run()
    run.metadata["compare"] = "anthropic:claude-sonnet-4-6"
    run.compare_cases = baseline_run().cases
    write_run(tmp_path / "run.json", run)
    assert llmregress(["report", str(tmp_path / "run.json"), "-o", str(tmp_path / "r.html")]) == 0
    data = embedded((tmp_path / "r.html").read_text())
    assert data["comparison"]["baseline"] == "anthropic:claude-sonnet-4-6"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (["missing.json"], "missing.json"),
        (["bad.json"], "bad.json:1:1: not valid JSON"),
        (["run.json", "--baseline", "missing.json"], "missing.json"),
        (["run.json", "--history", "nowhere"], "history folder nowhere does not exist"),
    ],
)
def test_report_command_refuses_what_it_cannot_read(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    files: list[str],
    expected: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    write_run(tmp_path / "run.json", sample_run())
    (tmp_path / "bad.json").write_text("nonsense")
    assert llmregress(["report", *files, "-o", "out.html"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llmregress report: ")
    assert expected in err
    assert not (tmp_path / "out.html").exists()


def test_report_command_needs_an_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert llmregress(["report", "run.json"]) == 2
    assert "-o/--output" in capsys.readouterr().err


# -- the browser ---------------------------------------------------------------------------


def _browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed"
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    return None


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = _browser_missing()
    if missing:
        if os.environ.get("LLMREGRESS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser tests required (LLMREGRESS_REQUIRE_BROWSER=1): {missing}")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def expect(locator: Any) -> Any:
    """Playwright's waiting assertions (imported here: Playwright may be missing)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


class Opened:
    """A report open in a page, and every console error and uncaught exception it raised."""

    def __init__(self, page: Any, errors: list[str]) -> None:
        self.page = page
        self.errors = errors

    def rows(self) -> list[str]:
        texts: list[str] = self.page.locator("#rows tr.case td:first-child").all_inner_texts()
        return texts

    def count(self) -> str:
        text: str = self.page.locator("#count").inner_text()
        return text


@pytest.fixture
def open_report(browser: Any, tmp_path: Path) -> Iterator[Callable[[str], Opened]]:
    pages: list[Any] = []

    def open_(html: str) -> Opened:
        path = tmp_path / f"report{len(pages)}.html"
        path.write_text(html, encoding="utf-8")
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        pages.append(page)
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(path.as_uri())
        page.wait_for_selector("body[data-ready='1']")
        assert [url for url in requests if not url.startswith("file:")] == []
        return Opened(page, errors)

    yield open_
    for page in pages:
        page.close()


def test_the_page_loads_without_errors_and_hostile_text_stays_text(
    open_report: Callable[[str], Opened],
) -> None:
    opened = open_report(render_html(sample_run(), history=history_points(history_runs())))
    page = opened.page
    assert page.title() == "LLM regression report"  # the hostile output did not run
    assert "failed" in page.locator("#verdict").inner_text()
    assert "below the minimum 90.0%" in page.locator("#reasons").inner_text()
    assert "repeats: each case 3 times" in page.locator("#noise").inner_text()
    assert page.locator("#trend circle").count() == 4
    assert page.locator("#trend .mark").count() == 2  # the model changes
    assert opened.count() == "12 of 12 cases"
    page.locator("tr.case[data-index='2']").click()
    assert page.locator("td.detail pre", has_text="</script>").count() >= 1
    assert page.locator("td.detail img").count() == 0
    assert opened.errors == []


def test_filters_and_search_change_the_rows(open_report: Callable[[str], Opened]) -> None:
    opened = open_report(render_html(sample_run()))
    page = opened.page
    page.select_option("#filter", "failed")
    assert opened.rows() == [
        "golden_cases/qa.jsonl::case-0001",
        "golden_cases/qa.jsonl::case-0002",
        "golden_cases/qa.jsonl::case-0004",
    ]
    page.select_option("#filter", "flaky")
    assert opened.rows() == ["golden_cases/qa.jsonl::case-0004"]
    page.select_option("#filter", "error")
    assert opened.rows() == ["golden_cases/qa.jsonl::case-0003"]
    page.select_option("#filter", "all")
    page.select_option("#tag", "geo")
    assert opened.count() == "6 of 12 cases"
    page.select_option("#tag", "")
    page.fill("#search", "case-0011")
    expect(page.locator("#count")).to_have_text("1 of 12 cases")
    assert opened.rows() == ["golden_cases/qa.jsonl::case-0011"]
    page.fill("#search", "")
    expect(page.locator("#count")).to_have_text("12 of 12 cases")
    page.click("th[data-key='outcome']")
    assert opened.rows()[0] == "golden_cases/qa.jsonl::case-0003"  # errors first
    assert opened.errors == []


def test_a_failed_case_shows_its_word_diff(open_report: Callable[[str], Opened]) -> None:
    run = sample_run()
    inputs = {run.cases[1].nodeid: CaseInput("Answer briefly.", (("user", "question 1?"),))}
    opened = open_report(render_html(run, inputs=inputs))
    page = opened.page
    assert page.locator("pre.diff").count() == 0  # diffs are made on expanding
    page.locator("tr.case[data-index='1']").click()
    diff = page.locator("td.detail pre.diff").first
    assert diff.locator("del").all_inner_texts() == ["7"]
    assert diff.locator("ins").all_inner_texts() == ["8"]
    detail = page.locator("td.detail").inner_text()
    assert "Answer briefly." in detail
    assert "question 1?" in detail
    assert "0.20 < 0.80" in detail
    assert "the answer to question 1 is wrong" in detail
    page.locator("tr.case[data-index='1']").click()
    assert page.locator("td.detail").count() == 0
    assert opened.errors == []


def test_the_comparison_view_marks_flips(open_report: Callable[[str], Opened]) -> None:
    run = sample_run()
    opened = open_report(render_html(run, comparison=compare_runs(baseline_run(), run)))
    page = opened.page
    assert "Comparison: within noise" in page.locator("#comparison").inner_text()
    flipped = page.locator("tr.flip-pass-fail")
    assert flipped.count() == 3
    assert flipped.first.inner_text().count("pass→fail") == 1
    page.select_option("#filter", "regressed")
    assert opened.rows() == [
        "golden_cases/qa.jsonl::case-0001",
        "golden_cases/qa.jsonl::case-0002",
        "golden_cases/qa.jsonl::case-0004",
    ]
    page.locator("tr.case[data-index='1']").click()
    side = page.locator("td.detail .side")
    assert "Question 1: 7." in side.inner_text()
    assert "The answer to question 1 is 8." in side.inner_text()
    assert opened.errors == []


def test_five_thousand_cases_open_and_filter(open_report: Callable[[str], Opened]) -> None:
    opened = open_report(render_html(sample_run(5000)))
    page = opened.page
    assert opened.count() == "5000 of 5000 cases"
    assert page.locator("#rows tr").count() == 100  # one page is built, not 5,000 rows
    page.select_option("#filter", "failed")
    assert opened.count() == "3 of 5000 cases"
    page.select_option("#filter", "all")
    page.fill("#search", "case-4999")
    expect(page.locator("#count")).to_have_text("1 of 5000 cases")
    assert opened.rows() == ["golden_cases/qa.jsonl::case-4999"]
    page.fill("#search", "")
    expect(page.locator("#count")).to_have_text("5000 of 5000 cases")
    page.click("#next")
    assert opened.rows()[0] == "golden_cases/qa.jsonl::case-0100"
    assert opened.errors == []


# -- --llm-html end to end -----------------------------------------------------------------


def test_llm_html_end_to_end(
    pytester: pytest.Pytester,
    make_server: MakeServer,
    provider_env: PointEnv,
    open_report: Callable[[str], Opened],
) -> None:
    cases = qa_cases(6)
    write_cases(pytester, "qa.jsonl", cases)
    scripted = scenario(cases)
    scripted["models"][CANDIDATE]["answers"][0]["reply"] = "The answer is " + HOSTILE
    provider_env(make_server(scripted))
    earlier = history_runs()[0]  # a run of the same model, kept by --llm-history
    write_run(pytester.path / "hist" / "20261120T100000Z_earlier.json", earlier)
    result = pytester.runpytest(*model_args("--llm-html=out/report.html", "--llm-history=hist"))
    result.assert_outcomes(passed=5, failed=1)
    html = (pytester.path / "out/report.html").read_text()
    data = embedded(html)
    assert data["candidate"] == f"anthropic:{CANDIDATE}"
    assert data["verdict"]["failed"] == 1
    assert data["verdict"]["ok"] is False
    by_id = {c["id"]: c for c in data["cases"]}
    assert by_id["case-000"]["out"] == "The answer is " + HOSTILE
    assert by_id["case-001"]["msgs"] == [["user", cases[1]["user"]]]
    assert by_id["case-001"]["sys"] == "Answer briefly."
    assert [h["current"] for h in data["history"]] == [False, True]  # not this run twice
    assert [h["rate"] for h in data["history"]] == [0.9, 5 / 6]
    # What the run cost, as the summary says it (both models have a bundled price).
    cost_line = next(line for line in result.outlines if line.startswith("cost: candidate $"))
    assert data["cost"][0] == cost_line

    opened = open_report(html)
    opened.page.select_option("#filter", "failed")
    assert opened.rows() == ["golden_cases/qa.jsonl::case-000"]
    opened.page.locator("#rows tr.case").first.click()
    assert opened.page.locator("td.detail pre.diff ins").count() >= 1
    assert opened.errors == []


def test_llm_html_with_a_compare_model(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = [{**case, "scorers": ["exact"]} for case in qa_cases(4)]
    write_cases(pytester, "qa.jsonl", cases)
    scripted = scenario(cases)
    production, candidate = CANDIDATE, "claude-sonnet-5"
    scripted["models"][candidate] = {
        "answers": [
            {**a, "reply": "wrong"} if n == 0 else a
            for n, a in enumerate(scripted["models"][production]["answers"])
        ]
    }
    provider_env(make_server(scripted))
    result = pytester.runpytest(
        f"--llm-model={candidate}", f"--llm-compare-model={production}", "--llm-html=r.html"
    )
    result.assert_outcomes(passed=3, failed=1)
    data = embedded((pytester.path / "r.html").read_text())
    assert data["comparison"]["pass_to_fail"] == 1
    assert [c["id"] for c in data["cases"] if c.get("flip") == "pass->fail"] == ["case-000"]
    # claude-sonnet-5 has no bundled price: said, never guessed.
    assert "cost per case: unknown price for anthropic:claude-sonnet-5" in data["cost"]
    # The same page from the stored results says the same cost.
    result = pytester.runpytest(
        f"--llm-model={candidate}", f"--llm-compare-model={production}", "--llm-report=r.json"
    )
    assert (
        llmregress(
            [
                "report",
                str(pytester.path / "r.json"),
                "-o",
                str(pytester.path / "s.html"),
                "--root",
                str(pytester.path),
            ]
        )
        == 0
    )
    stored = embedded((pytester.path / "s.html").read_text())
    assert [line.split(" (")[0] for line in stored["cost"]][:1] == [
        line.split(" (")[0] for line in data["cost"]
    ][:1]


# -- the docs' screenshots -----------------------------------------------------------------


def take_screenshots(folder: Path) -> list[Path]:
    """The docs' images of the sample run: the overview, a failed case, the comparison."""
    from playwright.sync_api import sync_playwright

    run = sample_run(40)
    inputs = {
        r.nodeid: CaseInput("Answer briefly.", (("user", f"What is {i} times 7?"),))
        for i, r in enumerate(run.cases)
    }
    html = render_html(
        run,
        comparison=compare_runs(baseline_run(40), run),
        history=history_points(history_runs()),
        inputs=inputs,
    )
    folder.mkdir(parents=True, exist_ok=True)
    source = folder.resolve() / "_report.html"
    source.write_text(html, encoding="utf-8")
    shots = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1000, "height": 760})
        page.goto(source.as_uri())
        page.wait_for_selector("body[data-ready='1']")
        shots.append(folder / "html-report-overview.png")
        page.screenshot(path=str(shots[-1]))
        page.select_option("#filter", "regressed")
        page.locator("tr.case[data-index='1']").click()
        page.locator("td.detail").scroll_into_view_if_needed()
        shots.append(folder / "html-report-case.png")
        page.locator("#cases").screenshot(path=str(shots[-1]))
        browser.close()
    source.unlink()
    return shots


if __name__ == "__main__":  # pragma: no cover
    for shot in take_screenshots(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img")):
        print(shot)


@pytest.mark.parametrize("compared", [False, True])
@pytest.mark.parametrize("count", [0, 1, 12])
def test_a_results_document_is_written_a_case_at_a_time_as_json_dumps_writes_it(
    tmp_path: Path, count: int, compared: bool
) -> None:
    run = sample_run(count) if count else RunResult({"candidate": "x"}, [])
    if compared:
        run = RunResult(run.metadata, run.cases, baseline_run(count).cases)
    write_run(tmp_path / "run.json", run)
    text = (tmp_path / "run.json").read_text(encoding="utf-8")
    assert text == json.dumps(run.to_dict(), indent=2) + "\n"


def test_a_results_document_whose_head_is_larger_than_one_piece_is_the_same_bytes(
    tmp_path: Path,
) -> None:
    # The head is encoded a piece at a time and written in slices; a cost per case for
    # thousands of cases makes it many slices long, and it is a mapping read as it is written
    # (not a dict), as the run's cost per case is.
    per_case = {f"x.jsonl::case-{n}": {"candidate": n / 7, "calls": [n]} for n in range(3000)}
    cost = {"per_case": MappingProxyType(per_case), "empty": {}, "none": [], "after": (1, 2.5)}
    run = RunResult({"candidate": "x", "cost": cost, "ok": True}, sample_run(2).cases)
    write_run(tmp_path / "run.json", run)
    text = (tmp_path / "run.json").read_text(encoding="utf-8")
    assert text == json.dumps(run.to_dict(), indent=2) + "\n"
