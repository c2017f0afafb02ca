"""The package's shape is a rule, not a habit: folders in layers, imports only downward, the map
in docs/architecture.md matching the folders, and every old module path still importing."""

from __future__ import annotations

import ast
import importlib
import re
import sys
import warnings
from pathlib import Path

import pytest

import pytest_llmregress
from pytest_llmregress._moved import MOVED

PACKAGE = Path(pytest_llmregress.__file__).parent
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"

LAYERS: list[set[str]] = [
    {"core"},
    {"testing"},
    {"models"},
    {"providers"},
    {"scoring"},
    {"cases"},
    {"settings"},
    {"prompts"},
    {"verdict"},
    {"report"},
    {"runtime"},
    {"engine"},
    {"authoring"},
    {"collect", "session", "plugin", "hookspecs"},
    {"cli"},
]
"""Bottom to top: a unit imports at run time only from its own layer or the layers before it."""

LEVEL = {unit: level for level, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str:
    """``pytest_llmregress.engine.runner`` -> ``engine``; the package itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(path: Path) -> list[tuple[int, str]]:
    """The package modules ``path`` imports when it runs (not under ``if TYPE_CHECKING:``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("pytest_llmregress"):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("pytest_ll")]
    return found


def package_units() -> set[str]:
    units = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    units |= {p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("_")}
    return units


def test_every_folder_and_module_has_a_layer() -> None:
    assert package_units() == set(LEVEL)


def test_imports_run_only_downward() -> None:
    wrong: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = unit_of(module_name(path))
        if source not in LEVEL:
            continue  # __init__, _moved: the package's own plumbing
        for line, target in runtime_imports(path):
            unit = unit_of(target)
            if unit in LEVEL and LEVEL[unit] > LEVEL[source]:
                rel = path.relative_to(PACKAGE.parent)
                wrong.append(f"{rel}:{line}: {source} imports {target} (a higher layer)")
    assert not wrong, "\n".join(wrong)


def test_libraries_for_application_code_do_not_import_pytest() -> None:
    for unit in ("core", "models", "providers", "scoring", "cases", "verdict", "runtime"):
        for path in (PACKAGE / unit).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else []
                )
                assert not any(n == "pytest" or n.startswith("_pytest") for n in names), path


def test_the_map_in_the_docs_names_the_folders_exactly() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    block = re.search(r"```\n(pytest_llmregress/\n.*?)```", text, re.S)
    assert block, "docs/architecture.md opens with the package map in a code block"
    named = set(re.findall(r"^\s{2}(\w+)(?:/|\.py)", block.group(1), re.M))
    assert named == package_units()


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_module_path_gives_the_moved_module_with_a_warning(old: str) -> None:
    new = importlib.import_module(MOVED[old])
    sys.modules.pop(old, None)  # imported by an earlier test: import it afresh
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert module is new
    assert module.__spec__ is not None
    assert module.__spec__.name == MOVED[old]
    assert [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)] == [
        f"{old} moved to {MOVED[old]}; import it from there"
    ]


@pytest.mark.parametrize(
    ("package", "module"),
    [("pytest_llmregress.cases", "cases.golden"), ("pytest_llmregress.prompts", "prompts.library")],
)
def test_a_module_that_became_a_package_gives_its_names(package: str, module: str) -> None:
    old = importlib.import_module(package)
    new = importlib.import_module(f"pytest_llmregress.{module}")
    names = [name for name in vars(new) if not name.startswith("__")]
    assert names
    for name in names:
        assert getattr(old, name) is getattr(new, name)
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        _ = old.nothing_here
