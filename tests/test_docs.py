"""The docs stay in step with the code: every option documented, no option invented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pytest_llmregress.settings import OPTIONS

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "docs").rglob("*.yml")])
KNOWN = {option.flag for option in OPTIONS}


def test_readme_documents_every_option() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [o.flag for o in OPTIONS if o.cli and o.flag not in readme]
    missing += [o.name for o in OPTIONS if not o.cli and f"`{o.name}`" not in readme]
    assert missing == []


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_name_only_options_that_exist(path: Path) -> None:
    named = set(re.findall(r"--llm-[a-z][a-z-]*[a-z]", path.read_text()))
    assert sorted(named - KNOWN) == []
