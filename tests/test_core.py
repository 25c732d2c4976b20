"""`ocr_assets.core` sits below every layer, and the import graph runs one way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ocr_assets.core import PageFailure, PageRequest, PageSuccess, SyncEngine
from ocr_assets.schema import ErrorClass

PACKAGE = Path(__file__).resolve().parents[1] / "ocr_assets"


def _imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at module level or inside a function (relative imports resolved)."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            names.add(module)
    return names


def test_core_imports_nothing_of_the_package_but_the_schema() -> None:
    ours = {name for name in _imported_modules(PACKAGE / "core.py") if name.startswith("ocr_assets")}
    assert ours == {"ocr_assets.schema"}


def test_no_module_of_the_package_imports_pytest() -> None:
    importers = [str(path.relative_to(PACKAGE)) for path in sorted(PACKAGE.rglob("*.py"))
                 if any(name == "pytest" or name.startswith(("pytest.", "_pytest")) for name in _imported_modules(path))]
    assert importers == []


@pytest.mark.parametrize("module", ["batches", "inference", "server"])
def test_emulator_state_imports_none_of_the_modules_built_on_it(module: str) -> None:
    imported = _imported_modules(PACKAGE / "engines" / "emulator" / "state.py")
    assert f"ocr_assets.engines.emulator.{module}" not in imported


def test_an_object_with_a_name_a_pricing_mode_and_infer_is_a_sync_engine() -> None:
    class Echo:
        name = "echo"
        pricing_mode = "local"

        def infer(self, requests: list[PageRequest]) -> list[PageSuccess | PageFailure]:
            return [PageFailure(key=r.key, error_class=ErrorClass.FATAL, error_type="empty", message="no text") for r in requests]

    assert isinstance(Echo(), SyncEngine)
    assert not isinstance(object(), SyncEngine)
